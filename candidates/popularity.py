"""Popularity: the most viewed items of the session's locale, over all history or a recent window.

The raw files carry no timestamps, so "recent" means the last ``recent_fraction`` of the fit
sessions in file order (session indices are assigned in file order by the prepare stage, and the
competition files are roughly chronological). ``recent_fraction: 1.0`` is plain locale popularity.
Query sessions present in the history (their prev_items) count like any other session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import polars as pl

from candidates.base import CandidateSource, catalogue_items, finalize, own_counts
from candidates.session_items import catalogue_locale


@dataclass(frozen=True)
class PopularityConfig:
    recent_fraction: float  # share of the most recent sessions (by index) counted


class Popularity(CandidateSource):
    name = "popularity"
    Config = PopularityConfig

    def __init__(self, cfg: PopularityConfig, seed: int = 0):
        if not 0.0 < cfg.recent_fraction <= 1.0:
            raise ValueError(f"recent_fraction must be in (0, 1], got {cfg.recent_fraction}")
        self.cfg, self.seed = cfg, seed
        self.counts: pl.DataFrame | None = None

    def fit(self, history: pl.DataFrame, items: pl.DataFrame) -> Self:
        """history: session, position, item. Keeps counts: item:Int32, locale:String, score:Float32."""
        sessions = history.get_column("session").unique().sort()
        cutoff = sessions[self.cutoff_position(len(sessions))] if len(sessions) else 0
        return self.fit_counts(history.filter(pl.col("session") >= cutoff).group_by("item").len(), items)

    def cutoff_position(self, n_sessions: int) -> int:
        """Counted sessions start at this position of the sorted distinct history sessions."""
        return int((1.0 - self.cfg.recent_fraction) * n_sessions)

    def fit_counts(self, counts: pl.DataFrame, items: pl.DataFrame) -> Self:
        """:meth:`fit` from the events per item of the counted sessions (item, len): counts of disjoint
        session sets add up, so the Dask path sums them over session ranges."""
        self.counts = (
            counts.select("item", score=pl.col("len").cast(pl.Float32))
            .join(catalogue_locale(items), on="item")
            .sort(["locale", "score", "item"], descending=[False, True, False])
        )
        self._items = catalogue_items(items)
        return self

    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame:
        assert self.counts is not None, "fit first"
        # Own items are removed in finalize: each session takes its locale's top k + (its distinct items),
        # which always leaves k (the counts are in finalize's order: score descending, then item).
        need = sessions.select("session", "locale").unique("session").join(own_counts(sessions), on="session")
        top = (
            self.counts.group_by("locale", maintain_order=True)
            .head(k + int(need.get_column("n_own").max() or 0))
            .with_columns(_r=pl.int_range(pl.len()).over("locale"))
        )
        scores = (
            need.join(top, on="locale")
            .filter(pl.col("_r") < k + pl.col("n_own"))
            .select("session", "item", "score")
        )
        return finalize(scores, sessions, self._items, k, summed=True)
