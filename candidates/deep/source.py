"""The deep candidate sources (``gru4rec``, ``sasrec``, ``narm``, ``stamp``, ``srgnn``, ``core``: one
class each, the encoder its only difference), and ``score_pairs`` for ranker features.

params.yaml, candidates.sources (see candidates.base for the interface):

    gru4rec: {type: gru4rec, k: 100, checkpoint: "models/deep/*/gru4rec.pt"}

``checkpoint`` is a glob over the ``train_deep`` stage's outputs: ``fit`` loads the checkpoint that
was trained on the history it is given, or on a per-session prefix of it (the fingerprint and the
per-session event counts are saved in the checkpoint). ``train_deep`` trains on the valid split's
history only: the test split's history is that plus the valid targets, so the same model encodes
test queries, and no model that saw a valid target can ever score the valid split.
With ``checkpoint`` empty, ``fit`` trains a model itself with the ``model`` knobs (tests, notebooks).
"""

from __future__ import annotations

import functools
import glob
import logging
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import polars as pl
import torch

from candidates.base import CandidateSource, depth, finalize
from candidates.deep.config import ModelConfig
from candidates.deep.data import encode_queries, history_fingerprint, history_prefix
from candidates.deep.train import (
    Trained,
    code_fingerprint,
    item_vectors,
    load,
    session_vectors,
    train,
    vocabulary,
)
from candidates.retrieval import IndexConfig, LocaleIndex
from candidates.session_items import catalogue_locale
from core.config import from_dict
from core.device import pick_device, set_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeepSourceConfig(IndexConfig):
    checkpoint: str  # glob of train_deep checkpoints; empty: train in fit with ``model``
    threads: int  # torch CPU threads (0: every core)
    device: str  # "" = CUDA when present, else CPU
    model: dict[str, Any]  # ModelConfig knobs when fit trains


class NoCheckpointError(FileNotFoundError):
    """No checkpoint matching the glob was trained on this history and item table."""


def load_matching(
    pattern: str, history: pl.DataFrame, items: pl.DataFrame, arch: str, device: torch.device
) -> Trained:
    """The checkpoint under ``pattern`` trained on ``history``, or on a per-session prefix of it.

    A checkpoint trained on exactly ``history`` wins; else one trained on a prefix (the valid split's
    model for the test split, whose history only adds the valid targets). A model that saw an event
    ``history`` lacks (the test model on the valid split) never matches.
    """
    fingerprint = history_fingerprint(history)
    n_items, locales = vocabulary(items)
    code = code_fingerprint()
    paths = sorted(glob.glob(pattern))
    prefixed = []
    for path in paths:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        key = ckpt["key"]
        if (key["n_items"], key["locales"], key["cfg"]["arch"]) != (n_items, locales, arch):
            continue
        if key.get("code") != code:
            log.warning("%s: %s was trained by other encoder code; not used", arch, path)
            continue
        if key["fingerprint"] == fingerprint:
            log.info("%s: loading %s (trained on this history)", arch, path)
            return load(path, device)
        if "trained_on" in ckpt:
            prefixed.append((path, key["fingerprint"], ckpt["trained_on"]))
    for path, trained_fingerprint, trained_on in prefixed:
        if history_fingerprint(history_prefix(history, trained_on)) == trained_fingerprint:
            missing = history.height - int(trained_on["events"].sum())
            log.info("%s: loading %s (trained on this history less %d events)", arch, path, missing)
            return load(path, device)
    raise NoCheckpointError(
        f"none of {paths or pattern!r} is a {arch} checkpoint trained on this history or a prefix of it "
        f"({fingerprint}) by this code ({code}); run `dvc repro train_deep`"
    )


def _session_vectors(trained: Trained, sessions: pl.DataFrame):
    enc = encode_queries(sessions, trained.cfg.max_len, trained.locales)
    return enc, session_vectors(trained, enc)


@dataclass(frozen=True)
class Scorer:
    """A trained encoder that scores given (session, item) pairs; needs no retrieval index."""

    trained: Trained

    @functools.cached_property
    def table(self) -> np.ndarray:
        """The item vectors, computed once (a 1.5M x 65 copy at full scale, per chunk otherwise)."""
        return item_vectors(self.trained)

    @functools.cached_property
    def unit(self) -> np.ndarray:
        """The item embeddings (bias dropped) scaled to unit length; a zero row stays zero."""
        emb = self.table[:, :-1]
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def item_cosine(self, a: pl.Series, b: pl.Series) -> pl.Series:
        """Cosine of item ``a[i]``'s embedding with item ``b[i]``'s (Float32; null where either is)."""
        unit = self.unit
        out = np.full(len(a), np.nan, dtype=np.float32)
        both = np.flatnonzero(~(a.is_null() | b.is_null()).to_numpy())
        ai, bi = a.to_numpy()[both].astype(np.int64), b.to_numpy()[both].astype(np.int64)
        for start in range(0, len(both), 1 << 20):  # bounded memory, as score_pairs
            part = slice(start, start + (1 << 20))
            out[both[part]] = np.einsum("ij,ij->i", unit[ai[part]], unit[bi[part]])
        return pl.Series(out).fill_nan(None).cast(pl.Float32)

    def score_pairs(self, sessions: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
        """The model's score for given (session, item) pairs, e.g. every candidate of the union.

        Args:
            sessions: session:Int32, locale:String, position:Int32, item:Int32 (the query sessions).
            pairs: session:Int32, item:Int32.
        Returns:
            session:Int32, item:Int32, score:Float32, in the order of ``pairs``; the score is null
            for a pair whose session is not in ``sessions``.
        """
        enc, queries = _session_vectors(self.trained, sessions)
        table = self.table
        row_of = pl.DataFrame(
            {"session": enc.session.astype(np.int32), "_row": np.arange(len(enc.session), dtype=np.int64)}
        )
        joined = pairs.select("session", "item").join(row_of, on="session", how="left", maintain_order="left")
        rows = joined["_row"].fill_null(-1).to_numpy()
        item = joined["item"].to_numpy()
        score = np.full(len(rows), np.nan, dtype=np.float32)
        known = np.flatnonzero(rows >= 0)
        for start in range(0, len(known), 1 << 20):  # bounded memory: 1M pairs x dim at a time
            part = known[start : start + (1 << 20)]
            score[part] = np.einsum("ij,ij->i", queries[rows[part]], table[item[part]])
        return joined.select(
            pl.col("session").cast(pl.Int32),
            pl.col("item").cast(pl.Int32),
            score=pl.Series(score).fill_nan(None).cast(pl.Float32),
        )


class DeepSource(CandidateSource):
    """A trained session encoder as a candidate source: faiss top-k in the session's locale
    (candidates.retrieval: one index per locale, built in ``fit``)."""

    arch = "base"
    Config = DeepSourceConfig

    def __init__(self, cfg: DeepSourceConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.trained: Trained | None = None

    def fit(self, history: pl.DataFrame, items: pl.DataFrame) -> Self:
        set_threads(self.cfg.threads)
        device = pick_device(self.cfg.device or None)
        self._items = items.select("item", "locale", "in_catalog")
        if self.cfg.checkpoint:
            self.trained = load_matching(self.cfg.checkpoint, history, items, self.arch, device)
        else:
            cfg = from_dict(ModelConfig, {"arch": self.arch, **self.cfg.model}, f"{self.name}.model")
            self.trained = train(history, items, cfg, self.seed, device=device, progress=False)
        self._index: LocaleIndex | None = None  # built on the first generate (score_pairs needs none)
        self._scorer = Scorer(self.trained)  # its item table is computed once, on the first score_pairs
        return self

    def index(self) -> LocaleIndex:
        """Per-locale faiss indexes over the catalogue items the encoder saw in training (at least
        ``min_count`` times): an unseen item's row is its random init, never a candidate."""
        if self._index is None:
            listed = catalogue_locale(self._items)
            indexable = pl.Series("item", self.trained.meta["indexable"], dtype=pl.Int32)
            catalogue = listed.filter(pl.col("item").is_in(indexable.implode())).sort("item")
            log.info("%s: %d of %d catalogue items indexed (seen in training at least min_count times)",
                     self.arch, catalogue.height, listed.height)
            self._index = LocaleIndex(
                item_vectors(self.trained),
                {
                    loc: catalogue.filter(pl.col("locale") == loc).get_column("item").to_numpy()
                    for loc in self.trained.locales
                },
                self.cfg,
                self.seed,
            )
        return self._index

    def _vectors(self, sessions: pl.DataFrame):
        assert self.trained is not None, "fit first"
        return _session_vectors(self.trained, sessions)

    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame:
        """sessions (session, locale, position, item) -> top-k (session, item, score, rank)."""
        enc, queries = self._vectors(sessions)
        locale = np.asarray(self.trained.locales)[enc.locale]
        scores = self.index().search(enc.session, locale, queries, depth(sessions, enc.session, k))
        return finalize(scores, sessions, self._items, k, summed=True)

    def score_pairs(self, sessions: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
        """:meth:`Scorer.score_pairs` of the fitted model."""
        assert self.trained is not None, "fit first"
        return self._scorer.score_pairs(sessions, pairs)

    @classmethod
    def scorer(cls, pattern: str, history: pl.DataFrame, items: pl.DataFrame) -> Scorer:
        """The checkpoint under ``pattern`` matching ``history`` (:func:`load_matching`) as a Scorer,
        on every CPU core and the default device, as ``fit`` of a source with ``threads: 0`` and
        ``device: ""`` loads it; no retrieval index (features/deep.py scores given pairs only)."""
        set_threads(0)
        return Scorer(load_matching(pattern, history, items, cls.arch, pick_device(None)))


class GRU4RecSource(DeepSource):
    name = "gru4rec"
    arch = "gru4rec"


class SASRecSource(DeepSource):
    name = "sasrec"
    arch = "sasrec"


class NARMSource(DeepSource):
    name = "narm"
    arch = "narm"


class STAMPSource(DeepSource):
    name = "stamp"
    arch = "stamp"


class SRGNNSource(DeepSource):
    name = "srgnn"
    arch = "srgnn"


class CORESource(DeepSource):
    name = "core"
    arch = "core"
