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
DEV_STAMP := $(VENV)/.installed-dev

SOURCE ?=
FORMAT ?= native
DRUGS ?=
PERSISTENCE_DAYS ?=
STOCKPILING ?=
MIN_CELL_COUNT ?=
SET ?=
HOST ?= 127.0.0.1
PORT ?= 8050
SITES ?=
SIZES ?= 1M,10M
# ENGINE=spark: the SQL stages on Apache Spark (docs/spark.md); empty = engine.name in the config (duckdb).
ENGINE ?=

# No make variable's value reaches a shell command line: each is handed to the
# recipes through the environment ($(value X): never expanded by make either)
# and used there only inside double quotes ("$$BENZO_X"), so `make DRUGS='x;id'`
# passes the text x;id to the pipeline, which refuses it as an unknown drug.
# Make would otherwise export command-line variables itself, expanding them.
USER_VARIABLES := PYTHON SOURCE FORMAT DRUGS PERSISTENCE_DAYS STOCKPILING MIN_CELL_COUNT SET HOST PORT SITES ENGINE SIZES
$(foreach name,$(USER_VARIABLES),$(eval export BENZO_$(name) := $$(value $(name))))
unexport $(USER_VARIABLES)

# The pipeline's arguments, built by bash from the environment (an empty
# variable adds no argument). Make variables -> configuration overrides,
# checked before any work and printed with every result.
SOURCE_ARG = $${BENZO_SOURCE:+--source "$$BENZO_SOURCE"}
FORMAT_ARG = $${BENZO_FORMAT:+--format "$$BENZO_FORMAT"}
SET_ARGS = $${BENZO_DRUGS:+--set "drugs.ingredients=$$BENZO_DRUGS"} \
       $${BENZO_PERSISTENCE_DAYS:+--set "episodes.persistence_window_days=$$BENZO_PERSISTENCE_DAYS"} \
       $${BENZO_STOCKPILING:+--set "episodes.stockpiling=$$BENZO_STOCKPILING"} \
       $${BENZO_MIN_CELL_COUNT:+--set "disclosure.min_cell_count=$$BENZO_MIN_CELL_COUNT"}
# $(call WITH_ARGS,<arguments>): sets "$$@" to <arguments>, the variables' --set
# overrides, then `--set WORD` for each word of SET="section.key=value ..."
# (split by `read` on blanks: never globbed, expanded or evaluated; last wins).
WITH_ARGS = words=(); IFS=$$' \t\n' read -r -d '' -a words <<< "$$BENZO_SET" || true; \
       set -- $(1) $(SET_ARGS); for word in "$${words[@]}"; do set -- "$$@" --set "$$word"; done
# $(call PIPELINE,<command>,<arguments>): run a pipeline command, echoing it as the shell sees it.
PIPELINE = $(call WITH_ARGS,$(2)); echo "$(PY) -m pipeline $(1) $${*@Q}"; $(PY) -m pipeline $(1) "$$@"
EXTRACT_ARGS = $(SOURCE_ARG) $(FORMAT_ARG)
# --engine: run, check and stamp. The single-stage commands run on DuckDB: they get ENGINE as a
# setting, so `make transform ENGINE=spark` stops with one line instead of running on DuckDB.
ENGINE_ARG = $${BENZO_ENGINE:+--engine "$$BENZO_ENGINE"}
ENGINE_SET = $${BENZO_ENGINE:+--set "engine.name=$$BENZO_ENGINE"}
# The demo extract unless SOURCE names one.
EXTRACT = $(if $(value SOURCE),,$(DEMO)/truth.json)

DEMO := data/demo
PACKAGE_FILES := $(shell find pipeline expectations config -type f \( -name '*.py' -o -name '*.sql' -o -name '*.json' -o -name '*.toml' \) 2>/dev/null)
# What the report is built from: the settings and the extract's file names,
# sizes and sha256 (python -m pipeline stamp), rewritten only when they change.
# Content, not modification times: copies that keep old times (cp -p, rsync -a,
# tar) and symlinked folders or files rerun the pipeline; a second make does not.
SOURCE_STAMP := data/.source-stamp

.DEFAULT_GOAL := all
.PHONY: all help setup setup-spark demo run test bench simulate clean clean-results distclean
.PHONY: ingest validate transform sensitivity estimate report

all: reports/index.html ## Set up, build the demo extract if no SOURCE is given, run every stage, write reports/

help: ## List the targets
	@grep -E '^[a-zA-Z_./-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

# The environment is rebuilt when the dependency files' content changes (their
# sha256 is kept in the stamp), not when a checkout merely gives them new times.
# Runtime: requirements.lock and the project itself (editable, with its console
# command .venv/bin/benzo-outcomes); tests add requirements-dev.lock.
$(STAMP): pyproject.toml requirements.lock
	@if [ -x $(PY) ] && sha256sum pyproject.toml requirements.lock | cmp -s - $@; then touch $@; else \
	  set -x && "$$BENZO_PYTHON" -m venv $(VENV) && \
	  $(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock && \
	  $(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e . && \
	  sha256sum pyproject.toml requirements.lock > $@; fi

$(DEV_STAMP): $(STAMP) requirements-dev.lock
	@if sha256sum pyproject.toml requirements.lock requirements-dev.lock | cmp -s - $@; then touch $@; else \
	  set -x && $(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.lock && \
	  sha256sum pyproject.toml requirements.lock requirements-dev.lock > $@; fi

setup: $(STAMP) ## Create .venv with the pinned runtime dependencies (requirements.lock) and the benzo-outcomes command

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
	@$(call WITH_ARGS,$(EXTRACT_ARGS)); $(PY) -m pipeline check "$$@" > /dev/null  # a wrong setting stops make before any work
	$(PY) -m pipeline demo --out $(DEMO)

demo: $(DEMO)/truth.json ## Build the synthetic demo extract (seeded) and its truth.json

$(SOURCE_STAMP): $(STAMP) $(ENGINE_DEPS) $(EXTRACT) FORCE
	@$(call WITH_ARGS,$(EXTRACT_ARGS) $(ENGINE_ARG)); $(PY) -m pipeline stamp "$$@" --out $@

reports/index.html: $(STAMP) $(ENGINE_DEPS) $(PACKAGE_FILES) $(SOURCE_STAMP)
	@$(call PIPELINE,run,$(EXTRACT_ARGS) $(ENGINE_ARG))

run: $(STAMP) $(ENGINE_DEPS) $(EXTRACT) ## Run every stage again, even if nothing changed (ENGINE=spark: on Spark)
	@$(call PIPELINE,run,$(EXTRACT_ARGS) $(ENGINE_ARG))

# One stage at a time (each after the one before it has run; SET=... and the
# variables above apply). `make ingest` takes SOURCE and FORMAT; the others read the warehouse.
ingest: $(STAMP) $(EXTRACT) ## Stage 1: load SOURCE (default: the demo) into data/warehouse.duckdb
	@$(call PIPELINE,ingest,$(EXTRACT_ARGS) $(ENGINE_SET))

validate transform estimate report: $(STAMP)
	@$(call PIPELINE,$@,$(ENGINE_SET))
validate: ## Stage 2: data-quality checks; bad rows quarantined, errors stop
transform: ## Stage 3: staging, episodes, cohort, outcomes (SQL)
estimate: ## Stage 4: estimates (then `make sensitivity` for the sensitivity analyses; `make` runs both)
report: ## Stage 5: publish reports/index.html and reports/exports/

test: $(DEV_STAMP) ## Set up (with the test packages) and run the tests (unit, fixtures, end to end, browser)
	GX_ANALYTICS_ENABLED=false $(PY) -m pytest

bench: $(STAMP) $(ENGINE_DEPS) ## Benchmark every stage against DuckDB's bare load (SIZES=1M,10M; ENGINE=spark: one `run --engine spark`)
	@set -- --sizes "$$BENZO_SIZES" $${BENZO_ENGINE:+--engine "$$BENZO_ENGINE"}; echo "$(PY) -m bench $${*@Q}"; $(PY) -m bench "$$@"

simulate: $(STAMP) ## Simulation study: bias and CI coverage of primary vs complete-case estimates
	$(PY) -m bench.simulate --source demo --sims 400 --persons 5000 --out docs/simulation_demo.csv

# Sensitivity analyses again on the current warehouse (`make` runs them inside the pipeline);
# the settings' make variables as for `make`, the format (an ingest setting) left out.
sensitivity: $(STAMP) ## Sensitivity analyses on the warehouse built by make: the headline with one setting varied at a time
	@$(call PIPELINE,sensitivity,$(ENGINE_SET))

# Dashboard over the results store (every run's published summarised result).
.PHONY: serve
serve: $(STAMP) ## Dashboard over results/ (every run's published results) on 127.0.0.1:8050 (HOST=, PORT= change it)
	@$(PY) -m pipeline serve --host "$$BENZO_HOST" --port "$$BENZO_PORT"

# Network study: each site in its own warehouse (data/sites/<name>/) and reports (reports/sites/<name>/),
# packaged (reports/packages/<name>/) and pooled into reports/network/. Without SITES: the demo split by region.
# SITES is split on spaces (no globbing); every other value stays inside double quotes.
NETWORK_DEMO := data/network
.PHONY: network
network: $(STAMP) $(if $(value SITES),,$(DEMO)/truth.json) ## Network study: run each of SITES="path/a path/b ..." on its own, package each, pool into reports/network/
	@set -ef; sites=$$BENZO_SITES; \
	if [ -z "$$sites" ]; then $(PY) -m pipeline split --source $(DEMO) --out $(NETWORK_DEMO); \
	  sites=$$(find $(NETWORK_DEMO) -mindepth 1 -maxdepth 1 -type d | sort); fi; \
	seen=""; packages=(); \
	for site in $$sites; do name=$$(basename -- "$$site"); \
	  case " $$seen " in *" $$name "*) echo "error: two sites share the folder name '$$name': rename one" >&2; exit 2;; esac; \
	  seen="$$seen $$name"; \
	  echo "== site $$name ($$site)"; \
	  $(call WITH_ARGS,$(FORMAT_ARG)); \
	  $(PY) -m pipeline run --source "$$site" "$$@" \
	    --warehouse "$(CURDIR)/data/sites/$$name/warehouse.duckdb" --reports "$(CURDIR)/reports/sites/$$name"; \
	  $(PY) -m pipeline package --reports "reports/sites/$$name" --out "reports/packages/$$name"; \
	  packages+=("reports/packages/$$name"); \
	done; \
	$(PY) -m pipeline pool "$${packages[@]}" --out reports/network

# What make builds, and only that: the demo extract, the warehouse and its
# stamps, the analyst's quality folder, the network study's site extracts and
# warehouses, and everything publish writes into reports/ (its README.md is kept).
# A user's own extract (SOURCE=..., even inside data/) and the results store
# (results/: the history of every run, which `make clean-results` removes) stay.
BUILT_DATA := $(DEMO) data/warehouse.duckdb data/warehouse.duckdb.wal $(SOURCE_STAMP) $(SOURCE_STAMP).cache \
	data/quality-internal data/sites $(NETWORK_DEMO) data/spark-warehouse

clean: ## Remove what make built: the demo, the warehouse, the network study's data, reports/ (not results/, not .venv)
	rm -rf $(BUILT_DATA) reports.tmp-* reports.old-*
	find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

clean-results: ## Remove the results store (results/results.duckdb: every run's published results)
	rm -f results/results.duckdb results/results.duckdb.wal

distclean: clean ## clean, and remove the environment (.venv)
	rm -rf $(VENV)

FORCE:
