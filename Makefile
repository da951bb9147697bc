# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv if missing and installs the package editable with its dev extras.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1
# Extra arguments of `depthnb demo`, e.g. `make demo DEMO_ARGS="--steps 20"` (the fresh-clone test does this).
DEMO_ARGS ?=

.PHONY: demo test test-fresh export clean-nbs bench venv lab

venv: $(STAMP)

$(STAMP): settings.ini setup.py pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/depthnb demo --out demo_out $(DEMO_ARGS)

# JupyterLab from .venv on the notebooks (nbs/); it prints its URL with the login token. Listens on
# LAB_HOST:LAB_PORT (127.0.0.1:8888; the next free port if taken), e.g. `make lab LAB_HOST=0.0.0.0` on a remote
# workstation; LAB_ARGS passes more options to `jupyter lab`.
LAB_HOST ?= 127.0.0.1
LAB_PORT ?= 8888
LAB_ARGS ?=

lab: $(STAMP)
	@echo "JupyterLab on nbs/ at http://$(LAB_HOST):$(LAB_PORT)/lab (open the URL with ?token= printed below)"
	$(BIN)/jupyter lab --no-browser --ServerApp.root_dir=nbs --ServerApp.ip=$(LAB_HOST) \
		--ServerApp.port=$(LAB_PORT) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2
	$(BIN)/python -m pytest -q tests/

# A fresh clone of HEAD, `make demo` in it (fewer steps), its outputs checked; logs in test-logs/fresh-clone/.
test-fresh: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests/test_fresh_clone.py

export: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ops.py
	$(BIN)/python benchmarks/bench_data.py
