"""Top-k inner-product retrieval with faiss: one index per locale, built once in ``fit``.

Every vector source (ALS, BPR, GRU4Rec, SASRec) retrieves a query's candidates from its own locale's
items through :class:`LocaleIndex`. A locale with fewer than ``ivf_min_items`` items gets an exact
``IndexFlatIP``; a bigger one an ``IndexIVFFlat`` with ``ivf_nlist`` k-means cells of which
``ivf_nprobe`` are scanned per query (faiss's inverted-file index: the flat scan of a 500k-item
locale costs 20k queries x 500k x 65 multiply-adds per chunk, the IVF scan about nprobe/nlist of
it). The quantiser is trained on a seeded sample of the locale's vectors, so the same params and
seed give the same index and the same candidates.

faiss-gpu is used when it is installed and sees a GPU (``faiss.get_num_gpus() > 0``); faiss-cpu
otherwise. The process holds one ``StandardGpuResources`` (its scratch memory) for every index of
every source, and a GPU search returns at most :data:`GPU_MAX_K` neighbours (faiss's GPU k-selection
limit), so deeper requests are clamped to it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import faiss
import numpy as np
import polars as pl

log = logging.getLogger(__name__)

EMPTY = pl.DataFrame(schema={"session": pl.Int32, "item": pl.Int32, "score": pl.Float32})


@dataclass(frozen=True)
class IndexConfig:
    """The retrieval knobs every vector source's config carries (params.yaml, per source)."""

    ivf_min_items: int  # locales with at least this many items use IVF (0: always exact)
    ivf_nlist: int  # IVF cells (k-means centroids) per locale
    ivf_nprobe: int  # cells scanned per query
    ivf_train_points: int  # vectors sampled (seeded) to train the quantiser


GPU_MAX_K = 2048  # faiss GPU k-selection handles k <= 2048


def gpu_faiss() -> bool:
    return (
        hasattr(faiss, "get_num_gpus") and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    )


@functools.cache
def gpu_resources() -> object:
    """The process's one faiss GPU resource object, shared by every index."""
    return faiss.StandardGpuResources()


def build_index(
    vectors: np.ndarray, cfg: IndexConfig, seed: int, resources: object | None = None
) -> faiss.Index:
    """An inner-product index over ``vectors`` (n, d): exact below ``cfg.ivf_min_items``, IVF above."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if cfg.ivf_min_items and n >= cfg.ivf_min_items:
        nlist = min(cfg.ivf_nlist, n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        sample = np.random.default_rng(seed).choice(
            n, size=min(n, max(cfg.ivf_train_points, nlist)), replace=False
        )
        index.train(vectors[np.sort(sample)])
        index.add(vectors)
        index.nprobe = min(cfg.ivf_nprobe, nlist)
    else:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
    if resources is not None:
        index = faiss.index_cpu_to_gpu(resources, 0, index)
    return index


class LocaleIndex:
    """Per-locale indexes over the rows ``items_of[locale]`` of one vector table."""

    def __init__(self, vectors: np.ndarray, items_of: dict[str, np.ndarray], cfg: IndexConfig, seed: int):
        resources = gpu_resources() if gpu_faiss() else None
        self.max_k = GPU_MAX_K if resources is not None else None
        self.items_of = {
            loc: np.asarray(items, dtype=np.int64) for loc, items in items_of.items() if len(items)
        }
        self.indexes = {
            loc: build_index(vectors[items], cfg, seed, resources) for loc, items in self.items_of.items()
        }
        log.info(
            "faiss indexes: %s",
            {
                loc: f"{type(faiss.downcast_index(ix)).__name__ if resources is None else 'gpu'}"
                f"/{len(self.items_of[loc])}"
                for loc, ix in self.indexes.items()
            },
        )

    def search(
        self, session: np.ndarray, locale: np.ndarray, queries: np.ndarray, k: int | np.ndarray
    ) -> pl.DataFrame:
        """Top ``k`` items of each query's locale: session:Int32, item:Int32, score:Float32 (unranked).

        Args: session (n,) ids, locale (n,) locale names, queries (n, d) float32, one row per session;
        k an int or (n,) per-query depths. Queries are searched in groups of similar depth (the next
        power of two) and each row is cut to its own k, so one long session does not make every
        query return hundreds of rows.
        """
        want = np.broadcast_to(np.asarray(k, dtype=np.int64), (len(session),))
        frames = []
        for loc in sorted(set(locale.tolist())):
            if loc not in self.indexes:
                continue
            items = self.items_of[loc]
            rows = np.flatnonzero(locale == loc)
            bucket = np.left_shift(1, np.ceil(np.log2(np.maximum(want[rows], 1))).astype(np.int64))
            if self.max_k is not None:
                bucket = np.minimum(bucket, self.max_k)
            for depth in np.unique(bucket):
                part = rows[bucket == depth]
                scores, labels = self.indexes[loc].search(
                    np.ascontiguousarray(queries[part], dtype=np.float32), int(min(depth, len(items)))
                )
                # an IVF scan can reach fewer than k items (label -1); beyond a row's own k is not asked
                found = (labels >= 0) & (np.arange(labels.shape[1])[None, :] < want[part][:, None])
                owner = np.repeat(session[part], labels.shape[1])[found.ravel()]
                frames.append(
                    pl.DataFrame(
                        {
                            "session": owner.astype(np.int32),
                            "item": items[labels[found]].astype(np.int32),
                            "score": scores[found].astype(np.float32),
                        }
                    )
                )
        return pl.concat(frames) if frames else EMPTY
