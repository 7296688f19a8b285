"""Family ``session`` (prefix ``s_``): what the session looks like, the same for all its candidates.

Length, distinct items, repeats, consecutive duplicates, locale, price statistics of its items, and
how many candidates the sources found for it.
"""

from __future__ import annotations

import polars as pl

from features.base import Chunk, FeaturesConfig, Inputs, locale_code


def fit(inputs: Inputs, cfg: FeaturesConfig) -> pl.DataFrame:
    """item, price: what the session price statistics need."""
    return inputs.items.select("item", "price")


def session_table(chunk: Chunk, prices: pl.DataFrame) -> pl.DataFrame:
    """session, s_*: one row per query session of the chunk (sessions with no events included)."""
    ev = chunk.events.sort("session", "position").join(prices, on="item", how="left", maintain_order="left")
    stats = ev.group_by("session").agg(
        s_length=pl.len().cast(pl.Int32),
        s_distinct=pl.col("item").n_unique().cast(pl.Int32),
        s_consec_dup=(pl.col("item") == pl.col("item").shift(1)).sum().cast(pl.Int32),
        s_price_mean=pl.col("price").mean().cast(pl.Float32),
        s_price_min=pl.col("price").min().cast(pl.Float32),
        s_price_max=pl.col("price").max().cast(pl.Float32),
        s_last_price=pl.col("price").last().cast(pl.Float32),
    )
    return (chunk.queries.select("session", s_locale=locale_code())
            .join(stats, on="session", how="left")
            .with_columns(pl.col("s_length", "s_distinct", "s_consec_dup").fill_null(0))
            .with_columns(s_repeats=pl.col("s_length") - pl.col("s_distinct"),
                          s_price_range=pl.col("s_price_max") - pl.col("s_price_min")))


def add(frame: pl.DataFrame, chunk: Chunk, state: pl.DataFrame, cfg: FeaturesConfig) -> pl.DataFrame:
    table = session_table(chunk, state)
    return (frame.join(table, on="session", how="left", maintain_order="left")
            .with_columns(s_n_cands=pl.len().over("session").cast(pl.Int32)))
