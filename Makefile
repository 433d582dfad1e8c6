# polypseg: the two commands of the README's quick start are `make demo` and `make test`.
# `make setup` is idempotent: it creates .venv once and re-installs only when pyproject.toml or
# constraints.txt changed. torch is pinned to the CPU build on disk through constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1
export ALBUMENTATIONS_DISABLE_VERSION_CHECK := 1

.PHONY: setup test lint demo docker-smoke bench-layers clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/polypseg demo

docker-smoke: setup
	bash docker/smoke.sh

bench-layers: setup
	$(BIN)/python scripts/bench_layers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
