"""The dataset paper's session baselines, each alone, trained on one split at one shared budget.

    python benchmarks/paper_baselines.py --workspace ../realdata --real --set passes_per_item=2 \
        --label real_ppi2 --record benchmarks/results/paper_baselines.json
    python benchmarks/paper_baselines.py --workspace . --datasets task1_phase1 task2_phase1 \
        --set passes_per_item=2 --label synthetic_ppi2

Every encoder of ``--models`` (default: all six, gru4rec sasrec narm stamp srgnn core) is trained by
:func:`benchmarks.encoders.evaluate` exactly as stage train_deep trains it (its ``deep.models.<name>``
knobs, then the shared ``--set`` overrides: the common budget), one after the other, and scored alone:
MRR@100 and Recall@100 on the valid split and on each test file of ``--datasets`` against
``data/raw/gt``, each also on cold targets (the scoring split's history, train sessions and test
prefixes, never shows them) and warm ones; training seconds and session passes per item. Each run is
appended to the record the moment it finishes, so a long sweep that is stopped keeps what it measured.

The RecBole figures (:data:`RECBOLE`) are RecBole's own implementations run with their defaults on
the shared real files under a 15-minute CPU budget (issue 32); docs/paper_baselines.md prints them
beside the real task2_phase1 rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.encoders import append_record, evaluate  # noqa: E402
from core.io import setup_logging  # noqa: E402

log = logging.getLogger(__name__)

MODELS = ("gru4rec", "sasrec", "narm", "stamp", "srgnn", "core")

# RecBole (defaults, 15 min CPU) MRR@100 on the shared real task2_phase1, as issue 32 reports them.
RECBOLE = {"narm": 0.0286, "stamp": 0.0019, "srgnn": 0.0022}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a knob override shared by every encoder (the common budget)")
    parser.add_argument("--workspace", type=Path, default=Path("."))
    parser.add_argument("--datasets", nargs="+", default=["task2_phase1"],
                        help="test files scored with data/raw/gt (phase 1 only on the real files)")
    parser.add_argument("--real", action="store_true",
                        help="the workspace holds the shared real files (the RecBole figures apply)")
    parser.add_argument("--label", required=True, help="names the sweep; each run is labelled <label>")
    parser.add_argument("--record", type=Path, default=Path("benchmarks/results/paper_baselines.json"))
    args = parser.parse_args()
    setup_logging()
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    for model in args.models:
        log.info("paper baselines: %s (%s) on %s", model, overrides, args.workspace)
        result = {**evaluate(model, overrides, args.workspace, args.datasets, args.label),
                  "datasets": args.datasets, "real_files": args.real}
        print(json.dumps(result), flush=True)
        append_record(result, args.record)
        gc.collect()


if __name__ == "__main__":
    main()
