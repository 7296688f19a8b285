"""How much recall a smarter union could keep under the 300-per-session cap, on the valid split.

    python benchmarks/union_fusion.py [--k 300] [--cap 300]

Fits every source of params.yaml ``candidates.sources`` on the valid split's history (as stage
candidates@valid does), generates the top ``--k`` of each for the valid queries, and prints the
union's recall (target anywhere in it) overall, on task-1 locales and on task-2 locales for:
  - best-rank: the pipeline's union (each source capped at its params k, then the best ranks kept);
  - uncapped: every source at ``--k``, no cap (what any selection from these lists can reach);
  - rrf: reciprocal-rank fusion sum 1/(60 + rank) over sources, top ``--cap``;
  - learned: a LightGBM binary model on every source's rank (null where absent), the number of
    sources and the locale, trained on one half of the sessions and applied to the other (two folds),
    top ``--cap`` by its raw score.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from candidates.base import query_sessions  # noqa: E402
from candidates.union import (  # noqa: E402
    CandidatesConfig,  # noqa: E402
    build_sources,
    load_source_defaults,
    union,
    with_defaults,
)
from core import config  # noqa: E402
from core.raw import TASK_LOCALES  # noqa: E402

CHUNK = 10_000


def generate_all(split: Path, prepared: Path, k: int) -> tuple[pl.DataFrame, dict[str, int]]:
    """Long frame source, session, item, rank (top k of every source) and the params k per source."""
    cfg = config.load_section(CandidatesConfig, "candidates")
    specs = build_sources(with_defaults(cfg.sources, load_source_defaults()), config.seed())
    history = pl.read_parquet(split / "history.parquet")
    queries = pl.read_parquet(split / "queries.parquet")
    items = pl.read_parquet(prepared / "items.parquet")
    events = (pl.scan_parquet(prepared / "events.parquet")
              .join(queries.lazy().select("session"), on="session").collect())
    sessions = query_sessions(queries, events)
    ids = sessions.get_column("session").unique().sort()
    parts = []
    for spec in specs:
        t0 = time.perf_counter()
        spec.source.fit(history, items)
        for start in range(0, len(ids), CHUNK):
            chunk = sessions.filter(pl.col("session").is_in(ids.slice(start, CHUNK).implode()))
            parts.append(spec.source.generate(chunk, k)
                         .select("session", "item", "rank", source=pl.lit(spec.name)))
        print(f"  {spec.name}: fit + generate top {k} in {time.perf_counter() - t0:.1f}s", flush=True)
    return pl.concat(parts), {spec.name: spec.k for spec in specs}


def recall(selected: pl.DataFrame, targets: pl.DataFrame) -> dict[str, float]:
    selected = selected.select("session", "item").unique()
    hit = targets.join(selected.with_columns(_hit=pl.lit(True)),
                       on=["session", "item"], how="left").with_columns(pl.col("_hit").fill_null(False))
    out = {"all": hit["_hit"].mean()}
    for task in (1, 2):
        part = hit.filter(pl.col("locale").is_in(list(TASK_LOCALES[task])))
        out[f"task{task}"] = part["_hit"].mean() if part.height else float("nan")
    out["per_session"] = selected.group_by("session").len()["len"].mean()
    return out


def top_by(scored: pl.DataFrame, cap: int) -> pl.DataFrame:
    return (scored.sort(["session", "score", "item"], descending=[False, True, False])
            .filter(pl.int_range(pl.len()).over("session") < cap))


def learned(wide: pl.DataFrame, names: list[str], targets: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Two-fold LightGBM binary scores for every (session, item) of ``wide``."""
    feats = [*names, "n_sources", "locale_code"]
    frame = (wide.join(targets.select("session", pl.col("item").alias("_target")), on="session", how="left")
             .with_columns(y=(pl.col("item") == pl.col("_target")).fill_null(False).cast(pl.Int8),
                           fold=pl.col("session") % 2))
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 200,
              "lambda_l2": 10.0, "verbose": -1, "num_threads": 2, "seed": seed}
    scored = []
    for fold in (0, 1):
        train = frame.filter(pl.col("fold") != fold)
        keep = (pl.col("y") == 1) | (pl.int_range(pl.len()).hash(seed) % 10 == 0)  # 10% of negatives
        train = train.filter(keep)
        model = lgb.train(params,
                          lgb.Dataset(train.select(feats).to_numpy().astype(np.float32),
                                      train["y"].to_numpy()),
                          300)
        test = frame.filter(pl.col("fold") == fold)
        raw = model.predict(test.select(feats).to_numpy().astype(np.float32), raw_score=True)
        scored.append(test.select("session", "item").with_columns(score=pl.Series(raw)))
    return pl.concat(scored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=300, help="candidates generated per source and session")
    parser.add_argument("--cap", type=int, default=300, help="union cap per session")
    parser.add_argument("--splitdir", type=Path, default=Path("data/split/valid"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    args = parser.parse_args()
    t0 = time.perf_counter()
    queries = pl.read_parquet(args.splitdir / "queries.parquet")
    targets = (pl.read_parquet(args.splitdir / "targets.parquet")
               .join(queries.select("session", "locale"), on="session"))
    long, k_of = generate_all(args.splitdir, args.prepared, args.k)
    names = list(k_of)

    # union() keeps the best ranks; the scores only become columns, so the rank stands in for them.
    capped = {n: long.filter((pl.col("source") == n) & (pl.col("rank") <= k_of[n]))
              .select("session", "item", pl.col("rank").cast(pl.Float32).alias("score"), "rank")
              for n in names}
    rows = {"best-rank (params k)": union(capped, args.cap), "uncapped": long}
    rows["rrf"] = top_by(long.group_by("session", "item").agg(score=(1.0 / (60.0 + pl.col("rank"))).sum()),
                         args.cap)
    wide = (long.pivot(on="source", index=["session", "item"], values="rank")
            .with_columns([pl.col(n).cast(pl.Float32) for n in names])
            .with_columns(n_sources=pl.sum_horizontal(pl.col(n).is_not_null() for n in names))
            .join(queries.select("session", locale_code=pl.col("locale").cast(pl.Categorical).to_physical()),
                  on="session"))
    rows["learned (2-fold LightGBM)"] = top_by(learned(wide, names, targets, config.seed()), args.cap)
    print(f"\nvalid split, {targets.height} sessions with a target; every source at top {args.k}, "
          f"cap {args.cap}")
    print(f"{'union':28s} {'recall':>7s} {'task1':>7s} {'task2':>7s} {'per session':>12s}")
    for label, frame in rows.items():
        r = recall(frame, targets)
        print(f"{label:28s} {r['all']:7.4f} {r['task1']:7.4f} {r['task2']:7.4f} {r['per_session']:12.1f}")
    print(f"({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
