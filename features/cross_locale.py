"""Family ``cross_locale`` (prefixes ``si_xl_``, ``i_xl_``): what the other locales say.

The same ASIN in several locales is the same product (items.parquet ``product``). Task 2's small
locales share most of their catalogue with DE, so a product pair co-visited in DE sessions is
evidence for ES/FR/IT sessions. Features: product transitions from the last item pooled over every
locale (si_xl_tr_last1: more data than any one locale's), product co-visitation with each of the last k
distinct
items counted in the *other* locales only, the product's popularity share outside the locale, and in
how many locales' catalogues it is listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from features.base import Chunk, FeaturesConfig, Inputs, covisit_pairs, last_distinct, transition_counts


@dataclass(frozen=True)
class State:
    total: pl.DataFrame  # src, dst (products), n_all: co-visits in every locale
    transitions: (
        pl.DataFrame
    )  # src, dst (products), si_xl_tr_last1, si_xl_tr_last1_share: dst right after src
    per_locale: pl.DataFrame  # src, dst, locale, n: co-visits in one locale
    item: pl.DataFrame  # item, product, i_xl_pop_share, i_xl_n_locales


def fit(inputs: Inputs, cfg: FeaturesConfig) -> State:
    products = inputs.items.select("item", "product", "locale")
    hist = inputs.history.join(products, on="item", how="left")
    per_locale = covisit_pairs(hist, cfg.covisit_window, key="product", by=("locale",)).collect()
    total = per_locale.group_by("src", "dst").agg(n_all=pl.col("n").sum())
    transitions = (
        transition_counts(hist, key="product")
        .rename({"n": "si_xl_tr_last1", "share": "si_xl_tr_last1_share"})
        .collect()
    )
    return State(total, transitions, per_locale, item_table(products, locale_counts(hist), inputs.items))


def locale_counts(hist: pl.DataFrame) -> pl.DataFrame:
    """product, locale, n: events per product and (item) locale; counts of disjoint sessions add up."""
    return hist.group_by("product", "locale").agg(n=pl.len())


def item_table(products: pl.DataFrame, counts: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """item, product, i_xl_pop_share, i_xl_n_locales from :func:`locale_counts` and the items table."""
    other_total = (
        counts.group_by("locale")
        .agg(n=pl.col("n").sum())
        .select("locale", events_other=pl.col("n").sum() - pl.col("n"))
    )
    listed = (
        items.filter(pl.col("in_catalog"))
        .group_by("product")
        .agg(i_xl_n_locales=pl.col("locale").n_unique().cast(pl.Int32))
    )
    # n_other: every other locale's events of the product, as its total less its own locale's count
    # (integers: exactly the sum over the other locales, without a product x locale cross join).
    item = (
        products.join(counts.group_by("product").agg(n_all=pl.col("n").cast(pl.Int64).sum()), on="product",
                      how="left")
        .join(counts.select("product", "locale", n_own=pl.col("n").cast(pl.Int64)), on=["product", "locale"],
              how="left")
        .with_columns(n_other=pl.col("n_all") - pl.col("n_own").fill_null(0))
        .join(other_total, on="locale", how="left")
        .join(listed, on="product", how="left")
        .select(
            "item",
            "product",
            i_xl_pop_share=(pl.col("n_other").fill_null(0) / pl.col("events_other").clip(lower_bound=1)).cast(
                pl.Float32
            ),
            i_xl_n_locales=pl.col("i_xl_n_locales").fill_null(0),
        )
    )
    return item


def restrict(state: State, chunk: Chunk, cfg: FeaturesConfig) -> State:
    """``state`` cut to the pairs from this chunk's last ``last_k`` products: only those can match
    (``add`` cuts once per chunk; the Dask path ships each chunk's task only its cut)."""
    product = state.item.select("item", "product")
    srcs = (
        last_distinct(chunk.events, cfg.last_k)
        .join(product, on="item", how="left")
        .get_column("product")
        .drop_nulls()
        .unique()
        .implode()
    )
    def cut(table: pl.DataFrame) -> pl.DataFrame:
        return table.filter(pl.col("src").is_in(srcs))

    return State(cut(state.total), cut(state.transitions), cut(state.per_locale), state.item)


def add(frame: pl.DataFrame, chunk: Chunk, state: State, cfg: FeaturesConfig) -> pl.DataFrame:
    product = state.item.select("item", "product")
    last = (
        last_distinct(chunk.events, cfg.last_k)
        .join(product, on="item", how="left")
        .join(chunk.queries.select("session", "locale"), on="session")
    )
    pairs = (
        frame.select("session", "item")
        .join(product, on="item", how="left", maintain_order="left")
        .join(chunk.queries.select("session", "locale"), on="session", how="left", maintain_order="left")
    )
    cut = restrict(state, chunk, cfg)
    total, per_locale, transitions = cut.total, cut.per_locale, cut.transitions
    for lag in range(1, cfg.last_k + 1):
        src = last.filter(pl.col("lag") == lag).select("session", src=pl.col("product"))
        pairs = (
            pairs.join(src, on="session", how="left", maintain_order="left")
            .join(
                total, left_on=["src", "product"], right_on=["src", "dst"], how="left", maintain_order="left"
            )
            .join(
                per_locale,
                left_on=["src", "product", "locale"],
                right_on=["src", "dst", "locale"],
                how="left",
                maintain_order="left",
            )
            # co-visits outside the session's locale = all locales - its own
            .with_columns(
                (pl.col("n_all").fill_null(0) - pl.col("n").fill_null(0))
                .cast(pl.Int32)
                .alias(f"si_xl_cv_last{lag}")
            )
            .drop("src", "n_all", "n")
        )
    last1 = last.filter(pl.col("lag") == 1).select("session", src=pl.col("product"))
    pairs = (
        pairs.with_columns(si_xl_cv_sum=pl.sum_horizontal(pl.col("^si_xl_cv_last\\d$")).cast(pl.Int32))
        .join(last1, on="session", how="left", maintain_order="left")
        .join(
            transitions,
            left_on=["src", "product"],
            right_on=["src", "dst"],
            how="left",
            maintain_order="left",
        )
        .with_columns(pl.col("si_xl_tr_last1").fill_null(0), pl.col("si_xl_tr_last1_share").fill_null(0.0))
    )
    return frame.hstack(pairs.select(pl.col("^si_xl_.*$"))).join(
        state.item.drop("product"), on="item", how="left", maintain_order="left"
    )
