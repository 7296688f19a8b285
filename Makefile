# Two commands do everything on a fresh machine:
#   make run   - create .venv, install, run the whole DVC pipeline on the embedded synthetic data
#   make test  - create .venv, install with the dev extra, run ruff, the deps check and the test suite
#   make real  - the same graph on the real Amazon-M2 files in REAL_DIR (../shared/amazon_m2_real)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REAL_DIR ?= ../shared/amazon_m2_real
# Real-data settings (README "Real data: settings"): measured on the local valid split and task2_phase1
REAL_SETS ?= -S candidates.sources.covisit_product.distance_weight=1.0 -S candidates.sources.covisit_product.recency_decay=0.3 \
             -S candidates.sources.covisit_product.hops=2 -S ranker.neg_sample_rate=0.3

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

real: $(STAMP)
	. $(BIN)/activate && dvc exp run -S data.source=files -S data.raw_dir=$(REAL_DIR) $(REAL_SETS)
	@cat metrics/leaderboard.md

# lint, then the dvc.yaml deps against the stages' imports (fast, static), then the suite
test: lint $(STAMP)
	$(BIN)/python -m tests.depcheck
	$(BIN)/python -m pytest -p no:cacheprovider tests

lint: $(STAMP)
	$(BIN)/ruff check pipeline candidates features rankers titles tests benchmarks

clean:
	rm -rf data/prepared data/split data/candidates data/features models metrics plots reports
