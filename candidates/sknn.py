"""Session-kNN (SKNN): items of the past sessions most similar to the query session.

Similarity is the cosine overlap |s ∩ t| / sqrt(|s| |t|) between the query session's last
``max_session_items`` distinct items (optionally recency-weighted, V-SKNN style) and a past session's
distinct items, found through an inverted index item -> sessions holding it. The index keeps only
the ``sample_size`` most recent sessions per item (highest session index = latest in file order;
the files carry no timestamps), which bounds the work per query on popular items. The
``neighbors`` most similar sessions vote for their items with their similarity.

A query session present in the history (its prev_items) is never its own neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import polars as pl

from candidates.base import CandidateSource, catalogue_items, finalize
from candidates.session_items import ordered_sum, recent_items


@dataclass(frozen=True)
class SknnConfig:
    sample_size: int  # most recent sessions kept per item in the inverted index
    neighbors: int  # most similar past sessions kept per query session
    max_session_items: int  # query items matched
    recency_decay: float  # weight of the r-th most recent query item (1.0 = plain cosine)


class Sknn(CandidateSource):
    name = "sknn"
    Config = SknnConfig

    def __init__(self, cfg: SknnConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.sets: pl.DataFrame | None = None

    def fit(self, history: pl.DataFrame, items: pl.DataFrame) -> Self:
        """Keeps ``sets`` (t:Int32, item:Int32), ``sizes`` (t, t_len) and ``index`` (item, t)."""
        self._items = catalogue_items(items)
        self.sets = history.select(t="session", item="item").unique().sort("t", "item")
        self.sizes = self.sets.group_by("t").agg(t_len=pl.len().cast(pl.Float64))
        self.index = (self.sets.sort(["item", "t"], descending=[False, True])
                      .group_by("item", maintain_order=True).head(self.cfg.sample_size))
        return self

    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame:
        assert self.sets is not None, "fit first"
        q = recent_items(sessions, self.cfg.max_session_items, self.cfg.recency_decay)
        q_len = q.group_by("session").agg(s_len=pl.col("weight").sum())
        nbrs = (
            q.join(self.index, on="item")
            .filter(pl.col("t") != pl.col("session"))
            .pipe(ordered_sum, ["session", "t"], ["recency"], "weight").rename({"weight": "overlap"})
            .join(q_len, on="session").join(self.sizes, on="t")
            .with_columns(sim=(pl.col("overlap") / (pl.col("s_len") * pl.col("t_len")).sqrt()))
            .sort(["session", "sim", "t"], descending=[False, True, True])
            .group_by("session", maintain_order=True).head(self.cfg.neighbors)
        )
        scores = ordered_sum(nbrs.join(self.sets, on="t").select("session", "item", "t", score="sim"),
                             ["session", "item"], ["t"])
        return finalize(scores, sessions, self._items, k, summed=True)
