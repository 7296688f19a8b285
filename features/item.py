"""Family ``item`` (prefix ``i_``): what the candidate item is, the same in every session.

Popularity in its locale (overall share and rank, in the recent window, as a next item), how often
it is a next item against a previous item, price and its percentile in the locale, brand and
colour frequencies. Shares rather than counts: the valid history holds 90% of train and the test
history all of it, and the ranker trained on one is applied to the other.
"""

from __future__ import annotations

import polars as pl

from features.base import Chunk, FeaturesConfig, Inputs, with_target_flag


def fit(inputs: Inputs, cfg: FeaturesConfig) -> pl.DataFrame:
    """item, i_*: one row per item of the items table.

    The "recent window" is the test sessions' prev_items: on Amazon-M2 the test sessions follow the
    train sessions in time, and both splits hold them in their history.
    """
    return table(inputs.items, item_counts(inputs.history, inputs.sessions), cfg)


def item_counts(history: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """item, n, n_next, n_recent: per-session counts, so those of disjoint session sets add up (the Dask
    path sums them over session partitions)."""
    recent = sessions.filter(pl.col("dataset") != "train").select("session")
    hist = with_target_flag(history, sessions).with_columns(
        is_recent=pl.col("session").is_in(recent["session"].implode())
    )
    return hist.group_by("item").agg(
        n=pl.len(),
        n_next=pl.col("is_target").sum(),
        n_recent=pl.col("is_recent").sum(),
    )


ITEM_COLUMNS = ("item", "id", "locale", "price", "brand", "color")  # what :func:`table` reads


def table(items: pl.DataFrame, counts: pl.DataFrame, cfg: FeaturesConfig) -> pl.DataFrame:
    """item, i_*: the family's state from the items table (:data:`ITEM_COLUMNS`) and :func:`item_counts`."""
    items = items.select(
        "item", "locale", "price", "brand", "color", family=pl.col("id").str.slice(0, cfg.prefix_chars)
    )
    share = {
        c: pl.col(c) / pl.col(c).sum().over("locale").clip(lower_bound=1) for c in ("n", "n_next", "n_recent")
    }
    table = (
        items.join(counts, on="item", how="left")
        .with_columns(pl.col("n", "n_next", "n_recent").fill_null(0))
        .with_columns(
            i_pop_share=share["n"].cast(pl.Float32),
            i_next_share=share["n_next"].cast(pl.Float32),
            i_recent_share=share["n_recent"].cast(pl.Float32),
            i_pop_rank=pl.col("n").rank("min", descending=True).over("locale").cast(pl.Int32),
            i_recent_rank=pl.col("n_recent").rank("min", descending=True).over("locale").cast(pl.Int32),
            i_next_vs_prev=(pl.col("n_next") / pl.col("n").clip(lower_bound=1)).cast(pl.Float32),
            i_price=pl.col("price").cast(pl.Float32),
            i_price_pct=(
                pl.col("price").rank("average").over("locale") / pl.col("price").count().over("locale")
            ).cast(pl.Float32),
            i_brand_share=(pl.len().over("locale", "brand") / pl.len().over("locale")).cast(pl.Float32),
            i_color_share=(pl.len().over("locale", "color") / pl.len().over("locale")).cast(pl.Float32),
            # Variants of one family are issued together (shared ASIN prefix); which variant
            # follows a sibling depends on its share of the family's views.
            i_family_size=pl.len().over("locale", "family").cast(pl.Int32),
            i_family_share=(
                pl.col("n") / pl.col("n").sum().over("locale", "family").clip(lower_bound=1)
            ).cast(pl.Float32),
            i_brand_pop_share=(
                pl.col("n").sum().over("locale", "brand")
                / pl.col("n").sum().over("locale").clip(lower_bound=1)
            ).cast(pl.Float32),
        )
    )
    # A null brand/colour is not one big brand: its frequency is unknown.
    table = table.with_columns(
        pl.when(pl.col("brand").is_null()).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("i_brand_share", "i_brand_pop_share")
    )
    table = table.with_columns(
        pl.when(pl.col("color").is_null())
        .then(None)
        .otherwise(pl.col("i_color_share"))
        .alias("i_color_share")
    )
    return table.select("item", pl.col("^i_.*$"))


def add(frame: pl.DataFrame, chunk: Chunk, state: pl.DataFrame, cfg: FeaturesConfig) -> pl.DataFrame:
    return frame.join(state, on="item", how="left", maintain_order="left")
