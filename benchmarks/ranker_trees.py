"""The ranker's eval-fold MRR@100 truncated at k trees: what a cap on trees would cost.

    python benchmarks/ranker_trees.py --workspace /tmp/m2_scale/scale_1 \
        [--out benchmarks/results/ranker_trees.json]

``--workspace`` is a workspace where stage train_ranker ran (its features, split and model kept). The
eval fold is train_ranker's (``ranker.eval_fraction`` of the valid sessions, by seed). A LightGBM
ranker's score is the sum of its trees' outputs, so each tree range is predicted once and the raw
scores are summed. MRR@100 here ranks the candidates only (no popularity completion), all locales and
the task-2 locales.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.parts import part_paths  # noqa: E402
from pipeline.ranking import mrr_report  # noqa: E402
from rankers import lgbm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--trees", type=int, nargs="+", default=[50, 100, 150, 200, 250, 300, 350, 400])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    ws = args.workspace
    params = yaml.safe_load((ws / "params.yaml").read_text())
    queries = pl.read_parquet(ws / "data/split/valid/queries.parquet")
    targets = pl.read_parquet(ws / "data/split/valid/targets.parquet").select("session", "item")
    folds = lgbm.assign_folds(queries["session"], params["ranker"]["eval_fraction"], int(params["seed"]))
    eval_ids = folds.filter(pl.col("is_eval"))["session"]
    eval_queries = queries.filter(pl.col("session").is_in(eval_ids.implode()))
    booster = lgb.Booster(model_file=str(ws / "models/ranker/model.txt"))
    features = booster.feature_name()
    frame = pl.concat(
        pl.scan_parquet(p).filter(pl.col("session").is_in(eval_ids.implode()))
        .select("session", "item", *features).collect()
        for p in part_paths(ws / "data/features/valid")
    )
    matrix = frame.select(pl.col(features).cast(pl.Float32)).to_numpy()
    raw, done, result = np.zeros(frame.height), 0, {}
    for k in sorted({k for k in args.trees if k < booster.num_trees()} | {booster.num_trees()}):
        raw += booster.predict(matrix, start_iteration=done, num_iteration=k - done, raw_score=True)
        done = k
        ranked = lgbm.rank_by(frame.select("session", "item").with_columns(s=pl.Series(raw)), "s")
        report = mrr_report(ranked.filter(pl.col("rank") <= 100), eval_queries, targets)
        result[k] = {group: round(report[group]["mrr@100"], 4) for group in ("all", "task2")}
        print(k, json.dumps(result[k]), flush=True)
    record = {"workspace": str(ws), "eval_sessions": len(eval_ids),
              "task2_eval_sessions": report["task2"]["n"],
              "trees": booster.num_trees(), "mrr@100_by_trees": result}
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
