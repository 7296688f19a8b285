"""Stage ``split``: the local validation split and the test fold, as one parameterised layout.

    python -m pipeline.split --prepared data/prepared --out data/split

Writes data/split/{valid,test}/ (schemas in core.schemas):
  valid: ``valid_fraction`` of train sessions (at most ``max_valid_sessions``) are held out as
         queries with their targets; sources are fitted on the other train sessions (prev_items +
         next_item) plus the prev_items of the held-out and test sessions (known at prediction
         time), never on a held-out target.
  test:  queries are the test sessions of ``test_datasets``; sources are fitted on all train
         sessions with their targets plus every test session's prev_items.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from core import config
from core.errors import exit_on_error
from core.io import setup_logging, timed, write_parquet

log = logging.getLogger(__name__)

SPLITS = ("valid", "test")


@dataclass(frozen=True)
class SplitConfig:
    valid_fraction: float
    max_valid_sessions: int         # cap on the held-out sessions (0: none); the rest stay in the history
    test_datasets: tuple[str, ...]


@dataclass
class Fold:
    history: pl.DataFrame
    queries: pl.DataFrame
    targets: pl.DataFrame | None


def with_targets(events: pl.DataFrame, sessions: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Append each target as the event after its session's last prev_item."""
    tail = (targets.join(sessions.select("session", "length"), on="session")
            .select("session", pl.col("length").alias("position"), "item"))
    return pl.concat([events, tail]).sort("session", "position")


def held_out(sessions: pl.DataFrame, fraction: float, seed: int, cap: int = 0) -> pl.Series:
    """Session ids of a seeded random ``fraction`` of the non-empty train sessions, at most ``cap`` (0: all).

    The cap keeps the valid queries (and so the valid candidates, features and ranker rows) bounded
    by params however large the train file is; the sessions it drops stay in the history.
    """
    train = sessions.filter((pl.col("dataset") == "train") & (pl.col("length") > 0))["session"].sort()
    rng = np.random.default_rng(seed)
    picked = train.filter(pl.Series(rng.random(len(train)) < fraction)).alias("session")
    if cap and len(picked) > cap:
        log.info("split.max_valid_sessions: %d of %d held-out sessions kept", cap, len(picked))
        keep = np.sort(rng.permutation(len(picked))[:cap])
        picked = picked.gather(keep)
    return picked


def make_folds(sessions: pl.DataFrame, events: pl.DataFrame, targets: pl.DataFrame,
               cfg: SplitConfig, seed: int) -> dict[str, Fold]:
    query_cols = ["session", "locale", "dataset", "row"]
    valid_ids = held_out(sessions, cfg.valid_fraction, seed, cfg.max_valid_sessions)
    fit_targets = targets.filter(~pl.col("session").is_in(valid_ids.implode()))
    valid = Fold(
        history=with_targets(events, sessions, fit_targets),
        queries=sessions.filter(pl.col("session").is_in(valid_ids.implode())).select(query_cols),
        targets=targets.filter(pl.col("session").is_in(valid_ids.implode())),
    )
    unknown = set(cfg.test_datasets) - set(sessions["dataset"].unique())
    if unknown:
        raise ValueError(f"split.test_datasets names datasets absent from the prepared data: "
                         f"{sorted(unknown)}")
    test = Fold(
        history=with_targets(events, sessions, targets),
        queries=sessions.filter(pl.col("dataset").is_in(list(cfg.test_datasets))).select(query_cols),
        targets=None,
    )
    return {"valid": valid, "test": test}


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    cfg = config.load_section(SplitConfig, "split")
    with timed("split"):
        sessions = pl.read_parquet(args.prepared / "sessions.parquet")
        events = pl.read_parquet(args.prepared / "events.parquet")
        targets = pl.read_parquet(args.prepared / "targets.parquet")
        for name, fold in make_folds(sessions, events, targets, cfg, config.seed()).items():
            write_parquet(fold.history, args.out / name / "history.parquet")
            write_parquet(fold.queries, args.out / name / "queries.parquet")
            if fold.targets is not None:
                write_parquet(fold.targets, args.out / name / "targets.parquet")
            log.info("%s: %d queries, %d history events", name, fold.queries.height, fold.history.height)


if __name__ == "__main__":
    main()
