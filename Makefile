# Two commands do everything on a fresh machine:
#   make run   - create .venv, install, run the whole DVC pipeline on the embedded synthetic data
#   make test  - create .venv, install with the dev extra, run ruff, the deps check and the test suite
#   make real REAL_DIR=DIR - the same graph on the KDD Cup 2023 files in DIR (params.yaml files_overrides apply);
#                params.yaml is left as it was, so a later `make run` runs the synthetic world again
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REAL_DIR ?=

export OPENBLAS_NUM_THREADS ?= 1

.PHONY: run real test install lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	. $(BIN)/activate && dvc repro
	@cat metrics/leaderboard.md

# REAL_DIR is checked before anything runs (one line naming the missing or misnamed file, exit 2).
# dvc exp run writes its -S values into params.yaml (and reformats it): the copy puts the file back.
real: $(STAMP)
	$(if $(REAL_DIR),,$(error make real: REAL_DIR is not set; run make real REAL_DIR=<folder holding sessions_train.csv, products_train.csv and sessions_test_task*_phase*.csv>))
	$(eval REAL_CHECK := $(shell $(BIN)/m2 check-files $(REAL_DIR) 2>&1 >/dev/null | tail -n 1))
	$(if $(REAL_CHECK),$(error make real: $(REAL_CHECK)))
	@cp params.yaml .params.yaml.make-real
	. $(BIN)/activate && dvc exp run -S data.source=files -S data.raw_dir=$(abspath $(REAL_DIR)); \
	  rc=$$?; mv .params.yaml.make-real params.yaml; exit $$rc
	@cat metrics/leaderboard.md

# lint, then the dvc.yaml deps against the stages' imports (fast, static), then the suite
test: lint $(STAMP)
	$(BIN)/python -m tests.depcheck
	$(BIN)/python -m pytest -p no:cacheprovider tests

lint: $(STAMP)
	$(BIN)/ruff check core pipeline candidates features rankers titles tests benchmarks

clean:
	rm -rf data/prepared data/split data/candidates data/features models metrics plots reports
