# make run   - the demo store on this machine (Ctrl-C stops it)
# make test  - the whole test suite
# make bench - every benchmark in bench/, one table
# make soak  - a compressed store day checking every promise (MINUTES=20, SEED=1)
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench check clean soak

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[mirror,test]'
	touch $(STAMP)

run: $(STAMP)
	scripts/system-packages.sh run
	$(PY) -m edge_agent.demo

test: $(STAMP) lint
	scripts/system-packages.sh test
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check edge_core edge_agent drivers sync ar_mirror bench tests
	$(VENV)/bin/lint-imports --no-cache --no-logo

bench: $(STAMP)
	$(PY) bench/harness.py

MINUTES ?= 20
SEED    ?= 1
soak: $(STAMP)
	scripts/system-packages.sh run
	PYTHONPATH=.:tests $(PY) -m soak --minutes $(MINUTES) --seed $(SEED)

check: $(STAMP)
	$(VENV)/bin/edge-agent check --config devices.yaml

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis *.egg-info
