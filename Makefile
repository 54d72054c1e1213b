# ifmsan: the two commands a newcomer runs are `make demo` and `make test`; CI runs `make lint` and `make test-all`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# torch/torchvision pins that install offline on this project's machines; any release in pyproject's ranges works elsewhere.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.ifmsan-installed
# the rules call the `ifmsan` command: put the venv's tools first on PATH for every recipe
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all setup demo real test test-all lint report bench bench-dag clean-venv help

all: help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed -E 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install ifmsan with its dev extras

demo: $(STAMP)  ## set up and run the whole offline demo DAG (alexnet_mini)
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml

real: $(STAMP)  ## set up and run the whole DAG offline on a real ImageNet network (efficientnet_lite0, 5 photos)
	$(BIN)/snakemake --cores $(CORES) --configfile config/real.yaml

# Caches that tools write while the tests run (matplotlib's font list, Snakemake's source cache, Jupyter's runtime
# files) stay inside the checkout: the tests change nothing outside it and the temp dir.
TEST_ENV := XDG_CACHE_HOME=$(CURDIR)/.cache MPLCONFIGDIR=$(CURDIR)/.cache/matplotlib \
	JUPYTER_RUNTIME_DIR=$(CURDIR)/.cache/jupyter IPYTHONDIR=$(CURDIR)/.cache/ipython

test: $(STAMP)  ## set up and run the quick suite (minutes): every module, the tiny DAG once, no apt, no daemons
	$(TEST_ENV) $(BIN)/python -m pytest

test-all: $(STAMP)  ## set up and run the whole suite: slow tests, full hypothesis runs, SLURM cluster (root, apt)
	$(TEST_ENV) $(BIN)/python -m pytest --run-slow --run-cluster --hypothesis-profile=full

lint: $(STAMP)  ## ruff, ruff format, mypy, snakefmt and snakemake --lint (config in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/snakefmt --check Snakefile workflow/
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakemake --lint --configfile config/real.yaml
	$(BIN)/snakemake --lint --configfile config/attacks.yaml

bench: $(STAMP)  ## run the performance harness (benchmarks/)
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_attacks.py
	$(BIN)/python benchmarks/bench_certify.py

bench-dag: $(STAMP)  ## time whole DAGs from local files (paper, 16 images): wall, efficiency; BEFORE=REV compares
	$(BIN)/python benchmarks/bench_dag.py $(if $(BEFORE),--before $(BEFORE))

clean-venv:  ## remove the virtual environment
	rm -rf $(VENV)
