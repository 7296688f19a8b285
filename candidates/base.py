"""The one interface every candidate source implements.

    source = SomeSource(cfg, seed).fit(history, items)
    cands = source.generate(sessions, k)

``history``: session:Int32, position:Int32, item:Int32 (long form; see core.schemas).
``items``: the prepared item table (item, locale, product, in_catalog, ...).
``sessions``: the query sessions in long form with their locale:
session:Int32, locale:String, position:Int32, item:Int32 (a session with no events may appear
once with a null item).
Returns session:Int32, item:Int32, score:Float32, rank:Int32: at most ``k`` rows per session,
items of the session's locale catalogue only (``in_catalog``), none of the session's own items,
ranked by score descending with ties broken by item index (so output is deterministic).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

import numpy as np
import polars as pl


class CandidateSource(ABC):
    name: str = "base"

    @abstractmethod
    def fit(self, history: pl.DataFrame, items: pl.DataFrame) -> Self: ...

    @abstractmethod
    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame: ...


def own_counts(sessions: pl.DataFrame) -> pl.DataFrame:
    """session, n_own:Int32: the distinct items of each query session (0 for a session without events)."""
    return sessions.group_by("session").agg(n_own=pl.col("item").drop_nulls().n_unique().cast(pl.Int32))


def depth(sessions: pl.DataFrame, ids: np.ndarray, k: int) -> np.ndarray:
    """How many items to retrieve for each session of ``ids`` so that ``finalize`` still keeps ``k``.

    ``finalize`` drops a session's own items, so a source that ranks the catalogue without looking at
    the session asks for k plus the session's distinct item count: per session, not the chunk's
    longest session (which would make every session pay for the one with 400 events).
    """
    counts = pl.DataFrame({"session": np.asarray(ids, dtype=np.int32)}).join(
        own_counts(sessions), on="session", how="left", maintain_order="left"
    )
    return k + counts.get_column("n_own").fill_null(0).to_numpy().astype(np.int64)


CATALOGUE_COLUMNS = ("item", "product", "locale", "in_catalog")


def catalogue_items(items: pl.DataFrame) -> pl.DataFrame:
    """What a fitted source keeps of the items table: the columns :func:`finalize` and the product
    expansions read (the titles and attributes are a hundred times larger, and the Dask path sends every
    fitted source to every union task)."""
    return items.select(CATALOGUE_COLUMNS)


def finalize(
    scores: pl.DataFrame, sessions: pl.DataFrame, items: pl.DataFrame, k: int, summed: bool = False
) -> pl.DataFrame:
    """Turn raw (session, item, score) rows into the contract's top-k frame.

    Keeps items in the session's locale catalogue, drops the session's own items, sums duplicate
    (session, item) scores (``summed=True``: the caller's rows are already one per pair, e.g. after
    :func:`candidates.session_items.ordered_sum` or a faiss search), and ranks by score descending,
    ties by item index.
    """
    locale_of = sessions.select("session", "locale").unique("session")
    catalogue = items.filter(pl.col("in_catalog")).select("item", pl.col("locale").alias("_item_locale"))
    own = sessions.select("session", "item").drop_nulls()
    if not summed:
        scores = scores.group_by("session", "item").agg(pl.col("score").sum())
    kept = (
        scores.select("session", "item", "score")
        .join(locale_of, on="session")
        .join(catalogue, on="item")
        .filter(pl.col("locale") == pl.col("_item_locale"))
        .join(own, on=["session", "item"], how="anti")
    )
    # Each session's k best (score descending, then item) first, then a sort of those rows only:
    # the same rows and order as sorting everything, at a fraction of the cost when rows >> k.
    return (
        kept.group_by("session")
        .agg(pl.col("item", "score").top_k_by(["score", "item"], k, reverse=[False, True]))
        .explode("item", "score", empty_as_null=True)
        .sort(["session", "score", "item"], descending=[False, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session"))
        .select(
            pl.col("session").cast(pl.Int32),
            pl.col("item").cast(pl.Int32),
            pl.col("score").cast(pl.Float32),
            "rank",
        )
    )


def query_sessions(queries: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The ``sessions`` frame of the interface from a queries table and their events.

    Args:
        queries: session:Int32, locale:String (and any other columns, ignored).
        events: session:Int32, position:Int32, item:Int32 (the queries' prev_items).
    Returns:
        session:Int32, locale:String, position:Int32, item:Int32, sorted by session and position; a
        session without events keeps one row with null position/item so that it is still scored.
    """
    return (
        queries.select("session", "locale")
        .join(events.select("session", "position", "item"), on="session", how="left")
        .sort("session", "position", nulls_last=True)
    )
