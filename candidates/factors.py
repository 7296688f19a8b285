"""Implicit-feedback item factors (implicit's CPU ALS and BPR) as item-to-item similarity.

Both models are fitted on a session x item csr matrix of view counts (history sessions are rows,
item indices are columns). A query session is the recency-weighted sum of the L2-normalised factors
of its last ``max_session_items`` distinct items (last item weight 1, then ``recency_decay ** r``);
its candidates are the catalogue items of its locale with the highest inner product, i.e. the
weighted sum of cosine similarities to its last items. Retrieval is exact (faiss IndexFlatIP per
locale, restricted to items seen in the history: unseen items have no trained factors).

Determinism: fixed ``random_state`` and ``num_threads: 1`` (BPR's hogwild updates race with more);
BLAS is held to one thread while fitting, as implicit recommends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import polars as pl
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from candidates.base import CandidateSource, finalize
from candidates.session_items import catalogue_locale, recent_items


@dataclass(frozen=True)
class AlsConfig:
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 2.0            # confidence = 1 + alpha * views
    iterations: int = 15
    num_threads: int = 1
    max_session_items: int = 3
    recency_decay: float = 0.5


@dataclass(frozen=True)
class BprConfig:
    factors: int = 64
    learning_rate: float = 0.05
    regularization: float = 0.01
    iterations: int = 100
    num_threads: int = 1
    max_session_items: int = 3
    recency_decay: float = 0.5


def session_item_matrix(history: pl.DataFrame, n_items: int) -> sp.csr_matrix:
    """Rows: history sessions (dense re-index), columns: item index; values: view counts."""
    counts = history.group_by("session", "item").len()
    rows = counts.get_column("session").rank("dense").cast(pl.Int64).to_numpy() - 1
    return sp.csr_matrix(
        (counts.get_column("len").cast(pl.Float32).to_numpy(), (rows, counts.get_column("item").to_numpy())),
        shape=(int(rows.max()) + 1 if len(rows) else 0, n_items), dtype=np.float32)


class _Factors(CandidateSource):
    """Shared retrieval; subclasses build the implicit model."""

    def __init__(self, cfg, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.vectors: np.ndarray | None = None

    def _model(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _item_factors(self, model) -> np.ndarray:
        return np.asarray(model.item_factors, dtype=np.float32)

    def fit(self, history: pl.DataFrame, items: pl.DataFrame) -> Self:
        self._items = items
        n_items = int(items.get_column("item").max()) + 1
        matrix = session_item_matrix(history, n_items)
        model = self._model()
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(matrix, show_progress=False)
        vectors = self._item_factors(model)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        seen = pl.DataFrame({"item": np.flatnonzero(np.diff(matrix.tocsc().indptr) > 0).astype(np.int32)})
        self.retrievable = catalogue_locale(items).join(seen, on="item").sort("item")
        return self

    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame:
        import faiss

        assert self.vectors is not None, "fit first"
        recent = recent_items(sessions, self.cfg.max_session_items, self.cfg.recency_decay)
        spare = int(sessions.drop_nulls("item").group_by("session").len().get_column("len").max() or 0)
        locale_of = sessions.select("session", "locale").unique().sort("session")
        parts = []
        for (locale,), group in locale_of.group_by("locale", maintain_order=True):
            cand_items = self.retrievable.filter(pl.col("locale") == locale).get_column("item").to_numpy()
            q = recent.join(group.select("session"), on="session")
            if len(cand_items) == 0 or q.height == 0:
                continue
            ids, rows = np.unique(q.get_column("session").to_numpy(), return_inverse=True)
            queries = np.zeros((len(ids), self.vectors.shape[1]), dtype=np.float32)
            np.add.at(queries, rows, self.vectors[q.get_column("item").to_numpy()]
                      * q.get_column("weight").to_numpy()[:, None].astype(np.float32))
            index = faiss.IndexFlatIP(self.vectors.shape[1])
            index.add(np.ascontiguousarray(self.vectors[cand_items]))
            dist, idx = index.search(queries, min(k + spare, len(cand_items)))
            found = idx >= 0
            parts.append(pl.DataFrame({
                "session": np.repeat(ids, idx.shape[1])[found.ravel()].astype(np.int32),
                "item": cand_items[idx[found]].astype(np.int32),
                "score": dist[found].astype(np.float32),
            }))
        scores = pl.concat(parts) if parts else pl.DataFrame(
            schema={"session": pl.Int32, "item": pl.Int32, "score": pl.Float32})
        return finalize(scores, sessions, self._items, k)


class Als(_Factors):
    name = "als"
    Config = AlsConfig

    def _model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.cfg
        return AlternatingLeastSquares(factors=c.factors, regularization=c.regularization, alpha=c.alpha,
                                       iterations=c.iterations, num_threads=c.num_threads,
                                       random_state=self.seed)


class Bpr(_Factors):
    name = "bpr"
    Config = BprConfig

    def _model(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.cfg
        return BayesianPersonalizedRanking(factors=c.factors, learning_rate=c.learning_rate,
                                           regularization=c.regularization, iterations=c.iterations,
                                           num_threads=c.num_threads, random_state=self.seed)

    def _item_factors(self, model) -> np.ndarray:
        # The last column is the item bias (users carry a constant 1 there); it is popularity,
        # not similarity, so it is left out of the cosine.
        return np.asarray(model.item_factors, dtype=np.float32)[:, :-1]
