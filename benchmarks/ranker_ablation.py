"""The ranker retrained without some features or with other knobs, scored on a test file's answers.

    python benchmarks/ranker_ablation.py --workspace ../real --label base
    python benchmarks/ranker_ablation.py --workspace ../real --drop '(deep|gru4rec|sasrec)' --label no_deep \
        --set num_leaves=31 --record benchmarks/results/ranker_ablation.json

``--workspace`` is a checkout where the graph ran up to ``features@test`` (its params, split and feature
parts kept; run from that checkout's code, which this script imports). The ranker is trained exactly as
stage train_ranker trains it (its ``ranker`` params, ``files_overrides`` applied on real files, then
``--set`` overrides), on the valid features less every column matching the ``--drop`` regular
expression, and ranks the sessions of test file ``--dataset`` from the test features, completed with
popularity as stage predict does. The candidates are the workspace's: dropping a source's columns
measures what its *features* add to the same union, not what its candidates add (for that, rerun the
graph without the source). Prints one JSON line (MRR@100 and Recall@100 against ``data/raw/gt``, the
best iteration, the dropped columns) and, with ``--record``, appends it to ``{"runs": [...]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path

import polars as pl
import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--drop", default="", help="regular expression: feature columns left out")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a ranker knob")
    parser.add_argument("--dataset", default="task2_phase1", help="the test file scored with data/raw/gt")
    parser.add_argument("--label", default="")
    parser.add_argument("--record", type=Path, help="append the result to this JSON record")
    args = parser.parse_args()
    record = args.record.resolve() if args.record else None
    workspace = args.workspace.resolve()
    sys.path.insert(0, str(workspace))  # the workspace's code reads the workspace's params and data
    os.chdir(workspace)
    from benchmarks.encoders import append_record, test_targets
    from benchmarks.scale import code_of
    from core import config
    from core.io import setup_logging
    from core.metrics import ranking_metrics_from_ranks
    from features.parts import part_paths
    from pipeline.ranking import completion, ranked_top
    from pipeline.train_ranker import fit, load_training
    from rankers import lgbm

    setup_logging()
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    cfg = dataclasses.replace(config.load_section(lgbm.RankerConfig, "ranker"), **overrides)
    seed = config.seed()
    start = time.perf_counter()
    queries = pl.read_parquet("data/split/valid/queries.parquet")
    targets = pl.read_parquet("data/split/valid/targets.parquet")
    folds = lgbm.assign_folds(queries["session"], cfg.eval_fraction, seed)
    train_rows, stop_rows = load_training(part_paths("data/features/valid"), targets, folds, cfg, seed)
    dropped = [c for c in train_rows.columns if args.drop and re.search(args.drop, c)]
    models = fit(train_rows.drop(dropped), stop_rows.drop(dropped), cfg, seed)
    groups = lgbm.model_groups(cfg)
    boosters = {name: (booster, tuple(groups[name])) for name, booster in models.items()}

    items = pl.read_parquet("data/prepared/items.parquet")
    test_queries = pl.read_parquet("data/split/test/queries.parquet")
    scored = test_queries.filter(pl.col("dataset") == args.dataset)
    ids = scored["session"].implode()
    frames = (pl.read_parquet(path).filter(pl.col("session").is_in(ids))
              for path in part_paths("data/features/test"))
    fill = completion(scored, pl.read_parquet("data/split/test/history.parquet"), items)
    top = fill(ranked_top(frames, lambda frame: lgbm.score_models(boosters, frame)))
    ranked = (scored.select("session").join(test_targets(Path("."), args.dataset, test_queries, items),
                                            on="session", how="left")
              .join(top, left_on=["session", "target"], right_on=["session", "item"], how="left"))
    metrics = ranking_metrics_from_ranks(ranked["rank"])
    result = {
        "label": args.label, "drop": args.drop, "dropped": dropped, "overrides": overrides,
        args.dataset: {"mrr@100": round(metrics["mrr@100"], 4), "recall@100": round(metrics["recall@100"], 4),
                       "n": ranked.height},
        "best_iteration": {name: b.best_iteration for name, b in models.items()},
        "seconds": round(time.perf_counter() - start, 1), "workspace": workspace.name, "code": code_of(),
    }
    print(json.dumps(result), flush=True)
    if record is not None:
        append_record(result, record)


if __name__ == "__main__":
    main()
