"""Implicit-feedback item factors (implicit's CPU ALS and BPR) as item-to-item similarity.

Both models are fitted on a session x item csr matrix of view counts (history sessions are rows,
item indices are columns). A query session is the recency-weighted sum of the L2-normalised factors
of its last ``max_session_items`` distinct items (last item weight 1, then ``recency_decay ** r``);
its candidates are the catalogue items of its locale with the highest inner product, i.e. the
weighted sum of cosine similarities to its last items. Retrieval is by faiss over each locale's items
seen in the history (unseen items have no trained factors), through candidates.retrieval: exact for a
locale below ``ivf_min_items`` items, an IVF index above.

``max_fit_sessions`` caps the history sessions fitted on (a seeded sample by session id): ALS and
BPR time grows with the history, and at full scale (3.6M sessions) they cost minutes per split.

Determinism: fixed ``random_state`` and ``num_threads: 1`` (BPR's hogwild updates race with more);
BLAS is held to one thread while fitting, as implicit recommends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Self

import numpy as np
import polars as pl
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from candidates.base import CandidateSource, catalogue_items, depth, finalize
from candidates.retrieval import IndexConfig, LocaleIndex
from candidates.session_items import catalogue_locale, recent_items
from core.sampling import sample_sessions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlsConfig(IndexConfig):
    factors: int
    regularization: float
    alpha: float  # confidence = 1 + alpha * views
    iterations: int
    max_fit_sessions: int  # history sessions fitted on, a seeded sample (0: all)
    num_threads: int
    max_session_items: int
    recency_decay: float


@dataclass(frozen=True)
class BprConfig(IndexConfig):
    factors: int
    learning_rate: float
    regularization: float
    iterations: int
    max_fit_sessions: int
    num_threads: int
    max_session_items: int
    recency_decay: float


def session_item_matrix(history: pl.DataFrame, n_items: int) -> sp.csr_matrix:
    """Rows: history sessions (dense re-index), columns: item index; values: view counts."""
    counts = history.group_by("session", "item").len()
    rows = counts.get_column("session").rank("dense").cast(pl.Int64).to_numpy() - 1
    return sp.csr_matrix(
        (counts.get_column("len").cast(pl.Float32).to_numpy(), (rows, counts.get_column("item").to_numpy())),
        shape=(int(rows.max()) + 1 if len(rows) else 0, n_items),
        dtype=np.float32,
    )


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
        self._items = catalogue_items(items)
        n_items = int(items.get_column("item").max()) + 1
        if self.cfg.max_fit_sessions:  # time grows with the sessions; the sample is the same in any order
            kept = sample_sessions(history.get_column("session"), self.cfg.max_fit_sessions, self.seed)
            if len(kept) < history.get_column("session").n_unique():
                log.info(
                    "%s: fitting on %d sampled history sessions (max_fit_sessions)", self.name, len(kept)
                )
                history = history.filter(pl.col("session").is_in(kept.implode()))
        matrix = session_item_matrix(history, n_items)
        # implicit checks the BLAS threads when the model is built; faiss's OpenMP OpenBLAS ignores
        # OPENBLAS_NUM_THREADS, so both the build and the fit run under the limit
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._model()
            model.fit(matrix, show_progress=False)
        vectors = self._item_factors(model)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        seen = pl.DataFrame({"item": np.flatnonzero(np.diff(matrix.tocsc().indptr) > 0).astype(np.int32)})
        retrievable = catalogue_locale(items).join(seen, on="item").sort("item")
        self.index = LocaleIndex(
            self.vectors,
            {
                loc: group.get_column("item").to_numpy()
                for (loc,), group in retrievable.group_by("locale", maintain_order=True)
            },
            self.cfg,
            self.seed,
        )
        return self

    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame:
        assert self.vectors is not None, "fit first"
        recent = recent_items(sessions, self.cfg.max_session_items, self.cfg.recency_decay)
        q = recent.join(
            sessions.select("session", "locale").unique("session"), on="session", maintain_order="left"
        )  # (session, recency) order: the sums below are reproducible
        ids, rows = np.unique(q.get_column("session").to_numpy(), return_inverse=True)
        queries = np.zeros((len(ids), self.vectors.shape[1]), dtype=np.float32)
        np.add.at(
            queries,
            rows,
            self.vectors[q.get_column("item").to_numpy()]
            * q.get_column("weight").to_numpy()[:, None].astype(np.float32),
        )
        locale = np.empty(len(ids), dtype=object)
        locale[rows] = q.get_column("locale").to_numpy()
        scores = self.index.search(ids, locale, queries, depth(sessions, ids, k))
        return finalize(scores, sessions, self._items, k, summed=True)


class Als(_Factors):
    name = "als"
    Config = AlsConfig

    def _model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.cfg
        return AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            num_threads=c.num_threads,
            random_state=self.seed,
        )


class Bpr(_Factors):
    name = "bpr"
    Config = BprConfig

    def _model(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.cfg
        return BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            num_threads=c.num_threads,
            random_state=self.seed,
        )

    def _item_factors(self, model) -> np.ndarray:
        # The last column is the item bias (users carry a constant 1 there); it is popularity,
        # not similarity, so it is left out of the cosine.
        return np.asarray(model.item_factors, dtype=np.float32)[:, :-1]
