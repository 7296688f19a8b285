"""Family ``session_item`` (prefix ``si_``): how the candidate relates to this session.

Co-visitation with each of the last k distinct items separately (count, and share of that item's
co-visits), the forward transition count from the last item, whether it shares brand, colour,
model or ASIN prefix (listed-together variants) with the last item, how many session items share
its brand, and its price gap and ratio to the last item and to the session mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from features.base import Chunk, FeaturesConfig, Inputs, covisit_pairs, last_distinct, transition_counts

ATTRIBUTES = ("brand", "color", "model")


@dataclass(frozen=True)
class State:
    covisit: pl.DataFrame  # src, dst, n, share (n / all co-visits of src)
    transitions: pl.DataFrame  # src, dst, n: dst directly after src
    attrs: pl.DataFrame  # item, price, brand, color, model, prefix


def fit(inputs: Inputs, cfg: FeaturesConfig) -> State:
    covisit = (
        covisit_pairs(inputs.history, cfg.covisit_window)
        .with_columns(share=(pl.col("n") / pl.col("n").sum().over("src")).cast(pl.Float32))
        .collect()
    )
    transitions = transition_counts(inputs.history).collect()
    attrs = inputs.items.select(
        "item", "price", *ATTRIBUTES, prefix=pl.col("id").str.slice(0, cfg.prefix_chars)
    )
    return State(covisit, transitions, attrs)


def restrict(state: State, chunk: Chunk, cfg: FeaturesConfig) -> State:
    """``state`` cut to the pairs this chunk can join: those from its sessions' last ``last_k`` items.

    The fitted tables hold every co-visited pair of the history (tens of millions of rows at full
    scale); ``add`` cuts them once per chunk so each join hashes a small table, and the Dask path
    ships each chunk's task only its cut (pipeline/engine/features.py).
    """
    srcs = last_distinct(chunk.events, cfg.last_k).get_column("item").drop_nulls().unique().implode()
    return State(
        state.covisit.filter(pl.col("src").is_in(srcs)),
        state.transitions.filter(pl.col("src").is_in(srcs)),
        state.attrs,
    )


def add(frame: pl.DataFrame, chunk: Chunk, state: State, cfg: FeaturesConfig) -> pl.DataFrame:
    last = last_distinct(chunk.events, cfg.last_k).pivot(
        on="lag", index="session", values="item", sort_columns=True
    )
    last = last.rename({c: f"_last{c}" for c in last.columns if c != "session"})
    for lag in range(1, cfg.last_k + 1):  # sessions shorter than k have no such column yet
        if f"_last{lag}" not in last.columns:
            last = last.with_columns(pl.lit(None, dtype=pl.Int32).alias(f"_last{lag}"))
    pairs = frame.select("session", "item").join(last, on="session", how="left", maintain_order="left")

    state = restrict(state, chunk, cfg)
    cv = state.covisit.rename({"n": "_n", "share": "_share"})
    transitions = state.transitions
    for lag in range(1, cfg.last_k + 1):
        pairs = pairs.join(
            cv, left_on=[f"_last{lag}", "item"], right_on=["src", "dst"], how="left", maintain_order="left"
        ).rename({"_n": f"si_cv_last{lag}", "_share": f"si_cv_last{lag}_share"})
    pairs = (
        pairs.join(
            transitions.rename({"n": "si_tr_last1", "share": "si_tr_last1_share"}),
            left_on=["_last1", "item"],
            right_on=["src", "dst"],
            how="left",
            maintain_order="left",
        )
        .with_columns(
            pl.col("^si_cv_last\\d$", "si_tr_last1").fill_null(0),
            pl.col("^si_cv_last\\d_share$", "si_tr_last1_share").fill_null(0.0),
        )
        .with_columns(si_cv_share_sum=pl.sum_horizontal(pl.col("^si_cv_last\\d_share$")).cast(pl.Float32))
    )

    attrs = state.attrs
    last_attrs = attrs.rename({c: f"_l_{c}" for c in attrs.columns if c != "item"})
    pairs = pairs.join(attrs, on="item", how="left", maintain_order="left").join(
        last_attrs, left_on="_last1", right_on="item", how="left", maintain_order="left"
    )
    same = [
        (pl.col(c) == pl.col(f"_l_{c}")).cast(pl.Int8).alias(f"si_same_{c}_last")
        for c in (*ATTRIBUTES, "prefix")
    ]

    sess = chunk.events.join(attrs.select("item", "price", "brand"), on="item", how="left")
    mean_price = sess.group_by("session").agg(_mean_price=pl.col("price").mean())
    brands = (
        sess.drop_nulls("brand").group_by("session", "brand").agg(si_brand_in_session=pl.len().cast(pl.Int32))
    )
    pairs = (
        pairs.with_columns(
            *same,
            si_price_diff_last=(pl.col("price") - pl.col("_l_price")).cast(pl.Float32),
            si_price_ratio_last=(pl.col("price") / pl.col("_l_price")).cast(pl.Float32),
        )
        .join(mean_price, on="session", how="left", maintain_order="left")
        .join(brands, on=["session", "brand"], how="left", maintain_order="left")
        .with_columns(
            si_price_ratio_mean=(pl.col("price") / pl.col("_mean_price")).cast(pl.Float32),
            si_brand_in_session=pl.col("si_brand_in_session").fill_null(0),
        )
    )
    return frame.hstack(pairs.select(pl.col("^si_.*$")))
