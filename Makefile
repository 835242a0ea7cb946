# gis_planner — set-up, demo and tests. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	bash .ci/system-deps.sh
	$(BIN)/gis-planner run --layers layers/sample_district.gpkg -o outputs/sample_district

test: $(STAMP)
	bash .ci/system-deps.sh
	$(BIN)/ruff check gis_planner tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python benchmarks/coverage.py
	$(BIN)/python benchmarks/bundling.py
	$(BIN)/python benchmarks/siting.py
	$(BIN)/python benchmarks/map_scale.py

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache .ruff_cache
