"""Ranking candidate frames into top-k lists and scoring them: what the ranker stages share.

``train_ranker`` evaluates with these on its eval fold and ``predict`` writes the submissions with
them, so the reported MRR and the leaderboard come from the same code.

Frames: a candidate frame holds session, item and feature columns (``cand_<source>_score`` among
them); a ranking is session, item, score, rank (1 = best); a top list is session, item, rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl

from candidates.columns import score_col
from core import submission
from core.metrics import ranking_metrics_from_ranks
from core.raw import TASK_LOCALES
from pipeline.predictions import fill_with_popular, locale_popularity
from rankers import lgbm

K = submission.N_PREDICTIONS


def ranked_top(frames: Iterable[pl.DataFrame], rank: Callable[[pl.DataFrame], pl.DataFrame],
               k: int = K) -> pl.DataFrame:
    """session, item, rank: the best ``k`` of every chunk's ranking (``rank`` returns session, item,
    score, rank); only k rows per session outlive their chunk."""
    tops = [rank(frame).filter(pl.col("rank") <= k).select("session", "item", "rank") for frame in frames]
    if not tops:
        return pl.DataFrame(schema={"session": pl.Int32, "item": pl.Int32, "rank": pl.Int32})
    return pl.concat(tops)


def source_ranker(name: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """Rank a candidate frame by source ``name``'s own score (items it did not propose are left out)."""
    column = score_col(name)

    def rank(frame: pl.DataFrame) -> pl.DataFrame:
        if column not in frame.columns:
            raise ValueError(f"no column {column!r} in the candidate frame: "
                             f"is {name!r} in candidates.sources?")
        return lgbm.rank_by(frame, column)

    return rank


def model_ranker(model_dir: str | Path) -> Callable[[pl.DataFrame], pl.DataFrame]:
    models = lgbm.load(model_dir)
    return lambda frame: lgbm.score_models(models, frame)


def completion(queries: pl.DataFrame, history: pl.DataFrame, items: pl.DataFrame,
               k: int = K) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """:func:`complete` for many rankings of the same queries: the own items and the popularity are
    computed once."""
    own = history.join(queries.select("session"), on="session", how="semi").select("session", "item")
    return completion_from(queries, own, locale_popularity(history, items), k)


def completion_from(queries: pl.DataFrame, own: pl.DataFrame, popular: pl.DataFrame,
                    k: int = K) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """:func:`completion` from its parts: ``own`` (session, item: at least the queries' prev_items) and
    ``popular`` (predictions.locale_popularity); the Dask path computes them on the workers."""
    return lambda ranked: fill_with_popular(ranked, queries, own, popular, k=k)


def complete(ranked: pl.DataFrame, queries: pl.DataFrame, history: pl.DataFrame, items: pl.DataFrame,
             k: int = K) -> pl.DataFrame:
    """session, item, rank (1..k) for every query: ``ranked`` first, then locale popularity.

    ``history`` (the split's) gives both the sessions' own items (never predicted: the next item
    never repeats one) and the popularity the gaps are filled from.
    """
    return completion(queries, history, items, k)(ranked)


def mrr_report(top: pl.DataFrame, queries: pl.DataFrame, targets: pl.DataFrame) -> dict[str, dict]:
    """MRR/Recall/NDCG@100 overall, per task and per locale. top: session, item, rank;
    queries: session, locale; targets: session, item."""
    ranks = (queries.select("session", "locale")
             .join(targets, on="session", how="left")
             .join(top, on=["session", "item"], how="left"))
    groups = {"all": ranks}
    for task, locales in TASK_LOCALES.items():
        if task in (1, 2):
            groups[f"task{task}"] = ranks.filter(pl.col("locale").is_in(locales))
    for (locale,), part in ranks.sort("locale").group_by("locale", maintain_order=True):
        groups[locale] = part
    return {name: ranking_metrics_from_ranks(part["rank"]) for name, part in groups.items() if part.height}
