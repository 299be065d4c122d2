# Two commands set everything up on a fresh machine with Python 3.11 and make:
#   make run-pipeline   and   make test
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed

COHORT ?=
PARAMS ?=
N_PATIENTS ?=
OUT ?= runs/local

.PHONY: venv test test-fast lint format run-pipeline compile synth clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==26.3 setuptools==84.2.1 wheel==0.48.0
	# PyRadiomics builds from source against the environment's numpy (no 3.11 wheel exists).
	$(PIP) install --quiet -c $(CONSTRAINTS) numpy versioneer
	$(PIP) install --quiet --no-build-isolation -c $(CONSTRAINTS) pyradiomics-bhklab
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dl,pipeline,serving,dev]"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not pipeline" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

run-pipeline: $(STAMP)
	$(PY) -m pipelines.run --out $(OUT) $(if $(COHORT),--cohort $(COHORT)) $(if $(PARAMS),--params $(PARAMS)) $(if $(N_PATIENTS),--n-patients $(N_PATIENTS))

compile: $(STAMP)
	$(PY) -m pipelines.compile

synth: $(STAMP)
	$(VENV)/bin/lungsurv synth --out data/synthetic-default

clean:
	rm -rf runs local_outputs .pytest_cache
