"""What a smaller candidate union costs the ranker: retrain on the valid features cut to each cap.

    python benchmarks/union_cap.py --workspace /tmp/m2_scale/default_0.02 --caps 300 200 150 100

At full scale every stage after candidates (features, ranker, predict, the per-source submissions)
costs time per candidate row, so ``candidates.max_per_session`` is the knob that moves the test path
most. This reads a workspace's valid feature parts (built with the cap it ran with), keeps each
session's first ``cap`` candidates in the union's own order (best rank in any source, then more
sources, then item index: what candidates.union keeps), retrains the ranker with that workspace's
params and reports the eval-fold MRR@100 and the union's recall of the targets. Writes
benchmarks/results/union_cap.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]


def capped(frame: pl.DataFrame, cap: int) -> pl.DataFrame:
    ranks = [c for c in frame.columns if re.fullmatch(r"cand_.+_rank", c)]
    return (
        frame.with_columns(_best=pl.min_horizontal(ranks))
        .sort(["session", "_best", "n_sources", "item"], descending=[False, False, True, False])
        .filter(pl.int_range(pl.len()).over("session") < cap)
        .drop("_best")
        .sort("session", "item")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--caps", type=int, nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "union_cap.json")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    os.chdir(args.workspace)
    sys.path.insert(0, str(REPO))
    from core import config
    from features.parts import part_paths
    from pipeline.train_ranker import evaluate, fit, load_training
    from rankers import lgbm

    cfg = config.load_section(lgbm.RankerConfig, "ranker")
    seed = config.seed()
    queries = pl.read_parquet("data/split/valid/queries.parquet")
    targets = pl.read_parquet("data/split/valid/targets.parquet")
    history = pl.read_parquet("data/split/valid/history.parquet")
    items = pl.read_parquet("data/prepared/items.parquet")
    folds = lgbm.assign_folds(queries["session"], cfg.eval_fraction, seed)
    eval_queries = queries.join(folds.filter(pl.col("is_eval")), on="session", how="semi")
    parts = part_paths(Path("data/features/valid"))
    results = {}
    for cap in args.caps:
        with tempfile.TemporaryDirectory() as tmp:
            cut = []
            for path in parts:
                out = Path(tmp) / path.name
                capped(pl.read_parquet(path), cap).write_parquet(out)
                cut.append(out)
            rows = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in cut)
            hits = sum(
                pl.read_parquet(p, columns=["session", "item"]).join(targets, on=["session", "item"]).height
                for p in cut
            )
            train_rows, stop_rows = load_training(cut, targets, folds, cfg, seed)
            models = fit(train_rows, stop_rows, cfg, seed)
            with tempfile.TemporaryDirectory() as model_dir:
                lgbm.save(models, Path(model_dir), cfg, seed)
                report = evaluate(cut, lgbm.load(Path(model_dir)), eval_queries, targets, history, items)
        results[str(cap)] = {
            "rows_per_session": round(rows / queries.height, 1),
            "union_recall": round(hits / targets.height, 4),
            "ranker_eval_mrr": round(report["ranker"]["all"]["mrr@100"], 4),
        }
        print(cap, results[str(cap)], flush=True)
    record = {"workspace": str(args.workspace), "eval_sessions": eval_queries.height, "caps": results}
    args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
