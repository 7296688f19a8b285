"""Helpers shared by the sources: the query session's recent items with recency weights."""

from __future__ import annotations

import polars as pl


def recent_items(sessions: pl.DataFrame, max_items: int, decay: float) -> pl.DataFrame:
    """The last ``max_items`` distinct items of each session, weighted by recency.

    Args:
        sessions: session:Int32, locale:String, position:Int32, item:Int32 (null item allowed).
        max_items: how many distinct most-recent items to keep per session.
        decay: weight of the r-th most recent distinct item is ``decay ** r`` (last item = 1).

    Returns:
        session:Int32, item:Int32, recency:Int32 (0 = last item), weight:Float64.
    """
    return (
        sessions.drop_nulls("item")
        # A repeated item counts once, at its most recent position.
        .group_by("session", "item").agg(pl.col("position").max())
        .sort(["session", "position"], descending=[False, True])
        .with_columns(recency=pl.int_range(0, pl.len(), dtype=pl.Int32).over("session"))
        .filter(pl.col("recency") < max_items)
        .select("session", "item", "recency", weight=pl.lit(decay, pl.Float64).pow(pl.col("recency")))
    )


def catalogue_locale(items: pl.DataFrame) -> pl.DataFrame:
    """item:Int32, locale:String of the items that may be recommended (``in_catalog``)."""
    return items.filter(pl.col("in_catalog")).select("item", "locale")


def ordered_sum(frame: pl.DataFrame, keys: list[str], order: list[str], value: str = "score") -> pl.DataFrame:
    """Sum ``value`` per ``keys`` in a fixed row order (``keys`` then ``order``).

    Float addition is not associative and join outputs come in no fixed order, so summing straight
    after a join can differ in the last bit between runs, enough to swap two tied ranks. Sorting
    first makes the result identical for identical inputs.
    """
    return frame.sort([*keys, *order]).group_by(keys, maintain_order=True).agg(pl.col(value).sum())
