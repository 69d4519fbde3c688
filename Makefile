# The two commands of the README: `make demo` and `make test`. Both create the
# environment on first use (.venv, Python 3.11) and reinstall when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint format bench-env clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned inside pyproject.toml; installing everything in one call keeps pip
	# from ever resolving another torch build.
	$(BIN)/python -m pip install -q -e '.[test]' torch==2.13.0
	@$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else f'wrong torch {v}: expected 2.13.0')"
	@touch $(STAMP)

demo: install
	$(BIN)/curvsketch demo

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

# A scratch environment for benchmarks against the neighbours: each neighbour is installed
# with --no-deps beside the torch pin so that pip never replaces torch.
BENCH := .venv-bench
bench-env: $(BENCH)/.installed

$(BENCH)/.installed: pyproject.toml Makefile
	@test -x $(BENCH)/bin/python || $(PYTHON) -m venv $(BENCH)
	$(BENCH)/bin/python -m pip install -q -e '.[test]' torch==2.13.0
	$(BENCH)/bin/python -m pip install -q --no-deps curvlinops-for-pytorch==3.0.1 \
	    backpack-for-pytorch einops einconv opt-einsum tqdm linear_operator jaxtyping wadler-lindig \
	    skerch==1.2.0 torch-dct h5py \
	    hessian-eigenthings==1.0.0a5 PyHessian==0.1
	@$(BENCH)/bin/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else f'wrong torch {v}')"
	@touch $(BENCH)/.installed

# The comparison suite against the neighbours (benchmarks/REPORT.md); not run by CI. Full
# size takes hours on 2 cores; `make bench BENCH_ARGS=--quick` is a smoke run of minutes.
BENCH_ARGS ?=
.PHONY: bench
bench: bench-env
	$(BENCH)/bin/python -m benchmarks.suite.problems $(BENCH_ARGS)
	$(BENCH)/bin/python -m benchmarks.suite.accuracy_cost $(BENCH_ARGS)
	$(BENCH)/bin/python -m benchmarks.suite.scaling_k $(BENCH_ARGS)
	$(BENCH)/bin/python -m benchmarks.suite.scaling_d $(BENCH_ARGS)
	$(BENCH)/bin/python -m benchmarks.suite.make_report $(BENCH_ARGS)
