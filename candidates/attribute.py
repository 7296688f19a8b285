"""Shared attribute: the catalogue items that share a key with the session's last items.

The key is the first ``prefix_chars`` characters of the ASIN (``key: prefix``: a family's variants
get their ids issued together, so a shared prefix means "another colour/size of this model"; on real
Amazon-M2 14% of next items share it with the last item against ~0% for random pairs) or any
attribute column of the items table (``key: brand``, ``model``, ``author``...). Items with a null or
empty key share nothing.

A candidate j of key g scores
    sum_r decay**r * [key(i_r) == g] * (views_j + 1) / (views_g + n_g)
over the session's last ``max_session_items`` distinct items i_r: the recency-weighted share of the
key's views that j holds (add-one smoothed, so never-viewed variants are still proposed). Only the
``items_per_key`` most viewed items of a key are kept, which bounds the work on large keys (brands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import polars as pl

from candidates.base import CandidateSource, catalogue_items, finalize
from candidates.session_items import ordered_sum, recent_items


@dataclass(frozen=True)
class AttributeConfig:
    key: str  # prefix (ASIN prefix) or an items column (brand, model, ...)
    prefix_chars: int  # characters of the id that make the prefix key
    items_per_key: int  # most viewed catalogue items kept per key
    max_session_items: int
    recency_decay: float

    def __post_init__(self) -> None:
        if self.prefix_chars < 1 or self.items_per_key < 1:
            raise ValueError("attribute: prefix_chars and items_per_key must be >= 1")


def item_keys(items: pl.DataFrame, cfg: AttributeConfig) -> pl.DataFrame:
    """item:Int32, locale:String, in_catalog:Boolean, key:String (non-empty) of every item that has one."""
    if cfg.key == "prefix":
        key = pl.col("id").str.slice(0, cfg.prefix_chars)
    elif cfg.key in items.columns:
        key = pl.col(cfg.key).cast(pl.String)
    else:
        raise ValueError(f"attribute: items have no column {cfg.key!r}")
    return (items.select("item", "locale", "in_catalog", key=key)
            .filter(pl.col("key").is_not_null() & (pl.col("key").str.len_chars() > 0)))


class SharedAttribute(CandidateSource):
    name = "attribute"
    Config = AttributeConfig

    def __init__(self, cfg: AttributeConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.index: pl.DataFrame | None = None

    def fit(self, history: pl.DataFrame, items: pl.DataFrame) -> Self:
        """Keeps ``keys`` (item -> locale, key) and ``index`` (locale, key, cand, share)."""
        return self.fit_counts(history.group_by("item").len(), items)

    def fit_counts(self, counts: pl.DataFrame, items: pl.DataFrame) -> Self:
        """:meth:`fit` from the events per item (item, len), which the Dask path sums over session ranges."""
        self._items = catalogue_items(items)
        self.keys = item_keys(items, self.cfg).select("item", "locale", "key")
        views = counts.select("item", views=pl.col("len").cast(pl.Float64))
        self.index = (
            item_keys(items, self.cfg).filter(pl.col("in_catalog"))
            .join(views, on="item", how="left").with_columns(pl.col("views").fill_null(0.0) + 1.0)
            .with_columns(share=pl.col("views") / pl.col("views").sum().over("locale", "key"))
            .sort(["locale", "key", "views", "item"], descending=[False, False, True, False])
            .group_by("locale", "key", maintain_order=True).head(self.cfg.items_per_key)
            .select("locale", "key", cand="item", share="share")
        )
        return self

    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame:
        assert self.index is not None, "fit first"
        recent = recent_items(sessions, self.cfg.max_session_items, self.cfg.recency_decay)
        # The key is looked up in the session's locale: the same ASIN prefix names another
        # locale's items too, and those are not recommendable here.
        locale_of = sessions.select("session", "locale").unique("session")
        scores = (
            recent.join(self.keys.select("item", "key"), on="item").join(locale_of, on="session")
            .join(self.index, on=["locale", "key"])
            .select("session", item="cand", score=pl.col("weight") * pl.col("share"), _r="recency")
            .pipe(ordered_sum, ["session", "item"], ["_r"])
        )
        return finalize(scores, sessions, self._items, k, summed=True)
