"""Whether the deep encoders know something the ranker does not, measured on a test file's answers.

    python benchmarks/complementarity.py --workspace ../real --label real
    python benchmarks/complementarity.py --workspace ../real --ranker ../real-noenc/models/ranker \
        --label real_ranker_without_encoders --record benchmarks/results/complementarity.json

``--workspace`` is a checkout where the graph ran to ``train_ranker`` and ``features@test`` with deep
encoders in ``features.deep_models`` (run from that checkout's code, which this script imports). For the
sessions of test file ``--dataset``, every candidate of the union is ranked four ways, and MRR@100 is
taken against ``data/raw/gt``:

- **alone**: by each source's own rank (``cand_<source>_rank``; a candidate the source did not propose
  comes last) and by each encoder's score over the whole union (``si_deep_<type>_score``);
- **fusion**: reciprocal-rank fusion of the best classical source alone and the encoders' summed
  scores, ``1/(60 + r_source) + w/(60 + r_deep)``, for each ``w`` of ``--weights``;
- **on the ranker**: the ranker's score (``--ranker``, default the workspace's ``models/ranker``) plus
  ``w`` times the encoders' summed score, both standardised within the session.

If the encoders carried information the ranker lacks, some ``w > 0`` would beat ``w = 0`` on the
ranker; if they carry information the best co-visitation lacks, the fusion beats that source alone.
With ``--ranker`` pointing at a ranker trained without the encoder features (its feature columns must
exist in the workspace, which holds a superset), the first question is asked of a ranker that never saw
them. Prints one JSON line; ``--record`` appends it to ``{"runs": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import polars as pl

RRF_K = 60  # the constant of reciprocal-rank fusion (Cormack et al. 2009)
MISSING = 10**6  # the rank of a candidate a source did not propose


def _mrr(frame: pl.DataFrame, score: pl.Expr, n: int) -> float:
    """MRR@100 over ``n`` sessions of ranking each session's candidates by ``score`` (nulls last)."""
    ranks = (frame.select("session", "y", s=score.fill_null(float("-inf")))
             .with_columns(rank=pl.col("s").rank("ordinal", descending=True).over("session"))
             .filter(pl.col("y") & (pl.col("rank") <= 100))["rank"])
    return round(float((1.0 / ranks).sum()) / n, 4)


def _z(column: str) -> pl.Expr:
    """``column`` standardised within the session."""
    c = pl.col(column)
    return (c - c.mean().over("session")) / (c.std().over("session").fill_null(0.0) + 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--ranker", type=Path, help="a ranker model folder (default: the workspace's)")
    parser.add_argument("--dataset", default="task2_phase1", help="the test file scored with data/raw/gt")
    parser.add_argument("--weights", type=float, nargs="+",
                        default=[0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 3.0])
    parser.add_argument("--label", default="")
    parser.add_argument("--record", type=Path, help="append the result to this JSON record")
    args = parser.parse_args()
    record = args.record.resolve() if args.record else None
    ranker_dir = args.ranker.resolve() if args.ranker else None
    workspace = args.workspace.resolve()
    sys.path.insert(0, str(workspace))  # the workspace's code reads the workspace's params and data
    os.chdir(workspace)
    from benchmarks.encoders import append_record, test_targets
    from benchmarks.scale import code_of
    from features.parts import part_paths
    from rankers import lgbm

    start = time.perf_counter()
    items = pl.read_parquet("data/prepared/items.parquet")
    queries = pl.read_parquet("data/split/test/queries.parquet")
    answers = test_targets(Path("."), args.dataset, queries, items)
    n = answers.height
    ids = answers["session"].implode()
    frame = pl.concat([pl.read_parquet(path).filter(pl.col("session").is_in(ids))
                       for path in part_paths("data/features/test")], how="vertical_relaxed")
    models = lgbm.load(ranker_dir or Path("models/ranker"))
    frame = (frame.join(lgbm.score_models(models, frame).select("session", "item", ranker="score"),
                        on=["session", "item"], how="left")
             .join(answers.select("session", item="target", y=pl.lit(True)), on=["session", "item"],
                   how="left")
             .with_columns(pl.col("y").fill_null(False)))

    deep = sorted(c for c in frame.columns if c.startswith("si_deep_") and c.endswith("_score"))
    if not deep:
        raise SystemExit(f"{workspace}: its features hold no si_deep_*_score column (features.deep_models)")
    sources = sorted(c[len("cand_"):-len("_rank")] for c in frame.columns
                     if c.startswith("cand_") and c.endswith("_rank") and c != "cand_n_sources")
    alone = {s: _mrr(frame, -pl.col(f"cand_{s}_rank").cast(pl.Float64), n) for s in sources}
    alone |= {c: _mrr(frame, pl.col(c), n) for c in deep}
    deep_names = {c[len("si_deep_"):-len("_score")] for c in deep}
    best = max((s for s in sources if s not in deep_names), key=alone.get)

    frame = frame.with_columns(
        deep=pl.sum_horizontal(deep),
        best_rank=pl.col(f"cand_{best}_rank").fill_null(MISSING).cast(pl.Float64))
    frame = frame.with_columns(deep_rank=pl.col("deep").rank("ordinal", descending=True).over("session"))
    alone["deep_sum"] = _mrr(frame, pl.col("deep"), n)
    fusion = {str(w): _mrr(frame, 1 / (RRF_K + pl.col("best_rank")) + w / (RRF_K + pl.col("deep_rank")), n)
              for w in [0.0, *args.weights]}
    on_ranker = {str(w): _mrr(frame, _z("ranker") + w * _z("deep"), n) for w in [0.0, *args.weights]}
    result = {
        "label": args.label, "dataset": args.dataset, "n": n, "ranker": str(ranker_dir or "models/ranker"),
        "deep": deep, "best_source": best, "alone": alone, "fusion": fusion, "on_ranker": on_ranker,
        "seconds": round(time.perf_counter() - start, 1), "workspace": workspace.name, "code": code_of(),
    }
    print(json.dumps(result), flush=True)
    if record is not None:
        append_record(result, record)


if __name__ == "__main__":
    main()
