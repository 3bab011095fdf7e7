# Customer segmentation & personas -- run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KERNEL := segmentation
CONFIG ?= configs/default.yaml
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (segmentation)" >/dev/null
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv (if missing), install the package and the Jupyter kernel

report: setup ## Run every notebook on the bundled synthetic store; HTML reports under reports/
	$(BIN)/segmentation run --config $(CONFIG)

test: setup ## Run the whole test suite (unit tests, notebooks, real-data checks)
	$(BIN)/python -m pytest -q

lab: setup ## Open JupyterLab on the notebooks (works as root, e.g. in containers)
	$(BIN)/jupyter lab notebooks/ $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

benchmark: setup ## Time features (few and many customers), rules, and the main job against one in-process pass (prints figures)
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_run.py

benchmark-scaling: setup ## The scaling curve: 1M/10M/50M lines on DuckDB and Spark (about 40 min; figures in reports/benchmarks)
	$(BIN)/python benchmarks/bench_scaling.py --sizes 1000000 10000000 50000000 --customers 1000000 5000000

clean: ## Remove the virtual environment and caches (keeps reports/)
	rm -rf $(VENV) .pytest_cache .hypothesis src/*.egg-info

.PHONY: help setup report test lab benchmark benchmark-scaling clean
