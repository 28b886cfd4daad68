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

# Make variables -> configuration overrides (printed with every result).
OVERRIDES := $(if $(DRUGS),--set drugs.ingredients=$(DRUGS)) \
             $(if $(PERSISTENCE_DAYS),--set episodes.persistence_window_days=$(PERSISTENCE_DAYS)) \
             $(if $(STOCKPILING),--set episodes.stockpiling=$(STOCKPILING)) \
             $(if $(MIN_CELL_COUNT),--set disclosure.min_cell_count=$(MIN_CELL_COUNT))
SOURCE_ARG := $(if $(SOURCE),--source $(SOURCE))
DEMO := data/demo
PACKAGE_FILES := $(shell find pipeline expectations config -type f \( -name '*.py' -o -name '*.sql' -o -name '*.json' -o -name '*.toml' \) 2>/dev/null)
INPUT_FILES := $(if $(SOURCE),$(shell find $(SOURCE) -maxdepth 1 -type f 2>/dev/null),$(DEMO)/truth.json)
# The settings of the last run: the report is rebuilt when they change.
SETTINGS := data/.settings
SETTINGS_TEXT := $(SOURCE)|$(FORMAT)|$(OVERRIDES)

.DEFAULT_GOAL := all
.PHONY: all help setup demo run test bench simulate clean

all: reports/index.html ## Set up, build the demo extract if no SOURCE is given, run every stage, write reports/

help: ## List the targets
	@grep -E '^[a-zA-Z_./-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	touch $@

setup: $(STAMP) ## Create .venv with the pinned dependencies (requirements.lock)

$(DEMO)/truth.json: $(STAMP) $(wildcard pipeline/demo/*.py) config/default.toml
	$(PY) -m pipeline demo --out $(DEMO)

demo: $(DEMO)/truth.json ## Build the synthetic demo extract (seeded) and its truth.json

$(SETTINGS): FORCE
	@mkdir -p data
	@[ "$$(cat $@ 2>/dev/null)" = "$(SETTINGS_TEXT)" ] || echo "$(SETTINGS_TEXT)" > $@

reports/index.html: $(STAMP) $(INPUT_FILES) $(PACKAGE_FILES) $(SETTINGS)
	$(PY) -m pipeline run $(SOURCE_ARG) --format $(FORMAT) $(OVERRIDES)

run: $(STAMP) ## Run every stage again, even if nothing changed
	$(PY) -m pipeline run $(SOURCE_ARG) --format $(FORMAT) $(OVERRIDES)

test: $(STAMP) ## Set up and run the tests (unit, fixtures, end to end, browser)
	GX_ANALYTICS_ENABLED=false $(PY) -m pytest

bench: $(STAMP) ## Benchmark every stage at 1M and 10M prescriptions against DuckDB's bare load
	$(PY) -m pipeline.bench

simulate: $(STAMP) ## Simulation study: bias and CI coverage of primary vs complete-case estimates
	$(PY) -m pipeline.estimate.simulate --source demo --sims 400 --persons 5000 --out docs/simulation_demo.csv

# Network study: each site in its own warehouse (data/sites/<name>/) and reports (reports/sites/<name>/),
# packaged (reports/packages/<name>/) and pooled into reports/network/. Without SITES: the demo split by region.
SITES ?=
NETWORK_DEMO := data/network
.PHONY: network
network: $(STAMP) $(if $(SITES),,$(DEMO)/truth.json) ## Network study: run each of SITES="path/a path/b ..." on its own, package each, pool into reports/network/
	@set -e; sites="$(SITES)"; \
	if [ -z "$$sites" ]; then $(PY) -m pipeline.network.split --source $(DEMO) --out $(NETWORK_DEMO); \
	  sites=$$(ls -d $(NETWORK_DEMO)/*/ | sed 's:/*$$::'); fi; \
	seen=""; packages=""; \
	for site in $$sites; do name=$$(basename "$$site"); \
	  case " $$seen " in *" $$name "*) echo "error: two sites share the folder name '$$name': rename one" >&2; exit 2;; esac; \
	  seen="$$seen $$name"; \
	  echo "== site $$name ($$site)"; \
	  $(PY) -m pipeline run --source "$$site" --format $(FORMAT) $(OVERRIDES) \
	    --warehouse $(CURDIR)/data/sites/$$name/warehouse.duckdb --reports $(CURDIR)/reports/sites/$$name; \
	  $(PY) -m pipeline package --reports reports/sites/$$name --out reports/packages/$$name; \
	  packages="$$packages reports/packages/$$name"; \
	done; \
	$(PY) -m pipeline pool $$packages --out reports/network

clean: ## Remove data/, reports/ and the environment
	rm -rf $(VENV) data/warehouse.duckdb* data/demo data/.settings reports/*

FORCE:
