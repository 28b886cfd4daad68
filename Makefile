# benzo-outcomes: `make` runs the whole pipeline on the demo extract (or SOURCE=...),
# `make test` runs the tests. Targets are real files where that is cheap, so a
# rerun redoes only what changed.

SHELL := /bin/bash
export OPENBLAS_NUM_THREADS := 1
export GX_ANALYTICS_ENABLED := false
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SOURCE ?=
FORMAT ?= native
DRUGS ?=
PERSISTENCE_DAYS ?=
STOCKPILING ?=
MIN_CELL_COUNT ?=
HOST ?= 127.0.0.1
PORT ?= 8050
SITES ?=
# ENGINE=spark: the SQL stages on Apache Spark (docs/spark.md); empty = engine.name in the config (duckdb).
ENGINE ?=

# No make variable's value reaches a shell command line: each is handed to the
# recipes through the environment ($(value X): never expanded by make either)
# and used there only inside double quotes ("$$BENZO_X"), so `make DRUGS='x;id'`
# passes the text x;id to the pipeline, which refuses it as an unknown drug.
# Make would otherwise export command-line variables itself, expanding them.
USER_VARIABLES := PYTHON SOURCE FORMAT DRUGS PERSISTENCE_DAYS STOCKPILING MIN_CELL_COUNT HOST PORT SITES ENGINE
$(foreach name,$(USER_VARIABLES),$(eval export BENZO_$(name) := $$(value $(name))))
unexport $(USER_VARIABLES)

# The pipeline's arguments, built by the shell from the environment (bash: an
# empty variable adds no argument). Make variables -> configuration overrides,
# checked before any work and printed with every result.
ARGS = $${BENZO_SOURCE:+--source "$$BENZO_SOURCE"} $(SITE_ARGS)
# The same without the source (each site of a network study names its own).
SITE_ARGS = $${BENZO_FORMAT:+--format "$$BENZO_FORMAT"} \
       $${BENZO_ENGINE:+--engine "$$BENZO_ENGINE"} \
       $${BENZO_DRUGS:+--set "drugs.ingredients=$$BENZO_DRUGS"} \
       $${BENZO_PERSISTENCE_DAYS:+--set "episodes.persistence_window_days=$$BENZO_PERSISTENCE_DAYS"} \
       $${BENZO_STOCKPILING:+--set "episodes.stockpiling=$$BENZO_STOCKPILING"} \
       $${BENZO_MIN_CELL_COUNT:+--set "disclosure.min_cell_count=$$BENZO_MIN_CELL_COUNT"}
# Run a pipeline command with ARGS, echoing it as the shell sees it.
PIPELINE = set -- $(ARGS); echo "$(PY) -m pipeline $(1) $${*@Q}"; $(PY) -m pipeline $(1) "$$@"

DEMO := data/demo
PACKAGE_FILES := $(shell find pipeline expectations config -type f \( -name '*.py' -o -name '*.sql' -o -name '*.json' -o -name '*.toml' \) 2>/dev/null)
# What the report is built from: the settings and the extract's file names,
# sizes and sha256 (python -m pipeline stamp), rewritten only when they change.
# Content, not modification times: copies that keep old times (cp -p, rsync -a,
# tar) and symlinked folders or files rerun the pipeline; a second make does not.
SOURCE_STAMP := data/.source-stamp

.DEFAULT_GOAL := all
.PHONY: all help setup setup-spark demo run test bench simulate clean

all: reports/index.html ## Set up, build the demo extract if no SOURCE is given, run every stage, write reports/

help: ## List the targets
	@grep -E '^[a-zA-Z_./-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

# The environment is rebuilt when the dependency files' content changes (their
# sha256 is kept in the stamp), not when a checkout merely gives them new times.
$(STAMP): pyproject.toml requirements.lock
	@if [ -x $(PY) ] && sha256sum pyproject.toml requirements.lock | cmp -s - $@; then touch $@; else \
	  set -x && "$$BENZO_PYTHON" -m venv $(VENV) && \
	  $(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock && \
	  sha256sum pyproject.toml requirements.lock > $@; fi

setup: $(STAMP) ## Create .venv with the pinned dependencies (requirements.lock)

# The optional Spark group (requirements-spark.lock), installed only when ENGINE=spark is asked for,
# with its own stamp; Java 17 is checked first and named when missing.
SPARK_STAMP := $(VENV)/.installed-spark
ENGINE_DEPS = $(if $(filter spark,$(value ENGINE)),$(SPARK_STAMP))
$(SPARK_STAMP): $(STAMP) requirements-spark.lock
	@command -v java >/dev/null 2>&1 || [ -n "$$JAVA_HOME" ] || { echo "error: ENGINE=spark needs Java 17, and no java is on PATH (install a JDK 17, e.g. apt-get install openjdk-17-jre-headless, or set JAVA_HOME)" >&2; exit 2; }
	@if sha256sum requirements-spark.lock | cmp -s - $@; then touch $@; else \
	  set -x && $(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-spark.lock && \
	  sha256sum requirements-spark.lock > $@; fi

setup-spark: $(SPARK_STAMP) ## Install the optional Spark group (pyspark, sqlglot; needs Java 17)

$(DEMO)/truth.json: $(STAMP) $(wildcard pipeline/demo/*.py) config/default.toml
	@set -- $(ARGS); $(PY) -m pipeline check "$$@" > /dev/null  # a wrong setting stops make before any work
	$(PY) -m pipeline demo --out $(DEMO)

demo: $(DEMO)/truth.json ## Build the synthetic demo extract (seeded) and its truth.json

$(SOURCE_STAMP): $(STAMP) $(ENGINE_DEPS) $(if $(value SOURCE),,$(DEMO)/truth.json) FORCE
	@$(PY) -m pipeline stamp $(ARGS) --out $@

reports/index.html: $(STAMP) $(ENGINE_DEPS) $(PACKAGE_FILES) $(SOURCE_STAMP)
	@$(call PIPELINE,run)

run: $(STAMP) $(ENGINE_DEPS) $(if $(value SOURCE),,$(DEMO)/truth.json) ## Run every stage again, even if nothing changed (ENGINE=spark: on Spark)
	@$(call PIPELINE,run)

test: $(STAMP) ## Set up and run the tests (unit, fixtures, end to end, browser)
	GX_ANALYTICS_ENABLED=false $(PY) -m pytest

bench: $(STAMP) ## Benchmark every stage at 1M and 10M prescriptions against DuckDB's bare load
	$(PY) -m pipeline.bench

simulate: $(STAMP) ## Simulation study: bias and CI coverage of primary vs complete-case estimates
	$(PY) -m pipeline.estimate.simulate --source demo --sims 400 --persons 5000 --out docs/simulation_demo.csv

# Dashboard over the results store (every run's published summarised result).
.PHONY: serve
serve: $(STAMP) ## Dashboard over results/ (every run's published results) on 127.0.0.1:8050 (HOST=, PORT= change it)
	@$(PY) -m pipeline.dashboard --host "$$BENZO_HOST" --port "$$BENZO_PORT"

# Network study: each site in its own warehouse (data/sites/<name>/) and reports (reports/sites/<name>/),
# packaged (reports/packages/<name>/) and pooled into reports/network/. Without SITES: the demo split by region.
# SITES is split on spaces (no globbing); every other value stays inside double quotes.
NETWORK_DEMO := data/network
.PHONY: network
network: $(STAMP) $(if $(value SITES),,$(DEMO)/truth.json) ## Network study: run each of SITES="path/a path/b ..." on its own, package each, pool into reports/network/
	@set -ef; sites=$$BENZO_SITES; \
	if [ -z "$$sites" ]; then $(PY) -m pipeline.network.split --source $(DEMO) --out $(NETWORK_DEMO); \
	  sites=$$(find $(NETWORK_DEMO) -mindepth 1 -maxdepth 1 -type d | sort); fi; \
	seen=""; packages=(); \
	for site in $$sites; do name=$$(basename -- "$$site"); \
	  case " $$seen " in *" $$name "*) echo "error: two sites share the folder name '$$name': rename one" >&2; exit 2;; esac; \
	  seen="$$seen $$name"; \
	  echo "== site $$name ($$site)"; \
	  set -- $(SITE_ARGS); \
	  $(PY) -m pipeline run --source "$$site" "$$@" \
	    --warehouse "$(CURDIR)/data/sites/$$name/warehouse.duckdb" --reports "$(CURDIR)/reports/sites/$$name"; \
	  $(PY) -m pipeline package --reports "reports/sites/$$name" --out "reports/packages/$$name"; \
	  packages+=("reports/packages/$$name"); \
	done; \
	$(PY) -m pipeline pool "$${packages[@]}" --out reports/network

clean: ## Remove data/, reports/ and the environment
	rm -rf $(VENV) data/warehouse.duckdb* data/spark-warehouse data/demo data/.source-stamp data/.source-stamp.cache reports/*

FORCE:
