"""candidates.retrieval: exact below ivf_min_items, IVF above; seeded, locale-bound, -1 labels dropped."""

from __future__ import annotations

import dataclasses

import faiss
import numpy as np
import polars as pl

from candidates.retrieval import IndexConfig, LocaleIndex, build_index
from tests._params import source_defaults


def index_cfg(**knobs) -> IndexConfig:
    """The retrieval knobs of params.yaml ``source_defaults.als``, ``knobs`` replaced."""
    als = source_defaults()["als"]
    return IndexConfig(**{**{f.name: als[f.name] for f in dataclasses.fields(IndexConfig)}, **knobs})


def _world(n_items: int = 4000, dim: int = 16, n_queries: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    vectors = (centres[rng.integers(0, 40, n_items)] + 0.3 * rng.normal(size=(n_items, dim))).astype(
        np.float32
    )
    queries = (centres[rng.integers(0, 40, n_queries)] + 0.3 * rng.normal(size=(n_queries, dim))).astype(
        np.float32
    )
    return vectors, queries


def test_exact_below_threshold_ivf_above():
    vectors, _ = _world()
    assert isinstance(build_index(vectors, index_cfg(ivf_min_items=0), 0), faiss.IndexFlatIP)
    assert isinstance(build_index(vectors, index_cfg(ivf_min_items=5000), 0), faiss.IndexFlatIP)
    ivf = faiss.downcast_index(
        build_index(vectors, index_cfg(ivf_min_items=1000, ivf_nlist=32, ivf_nprobe=4), 0)
    )
    assert (
        isinstance(ivf, faiss.IndexIVFFlat)
        and ivf.nlist == 32
        and ivf.nprobe == 4
        and ivf.ntotal == len(vectors)
    )


def test_ivf_is_seeded_and_close_to_exact():
    vectors, queries = _world()
    items = {"DE": np.arange(0, 4000, dtype=np.int64)}
    session = np.arange(len(queries), dtype=np.int32)
    locale = np.array(["DE"] * len(queries), dtype=object)
    cfg = index_cfg(ivf_min_items=1000, ivf_nlist=32, ivf_nprobe=8, ivf_train_points=2000)
    a = LocaleIndex(vectors, items, cfg, seed=3).search(session, locale, queries, 20)
    b = LocaleIndex(vectors, items, cfg, seed=3).search(session, locale, queries, 20)
    assert a.equals(b)
    exact = LocaleIndex(vectors, items, index_cfg(), seed=3).search(session, locale, queries, 20)
    overlap = a.join(exact, on=["session", "item"]).height / exact.height
    assert overlap > 0.8, overlap


def test_search_stays_in_locale_and_drops_unfilled_slots():
    vectors, queries = _world(n_items=300)
    items = {"DE": np.arange(0, 250, dtype=np.int64), "ES": np.arange(250, 300, dtype=np.int64)}
    locale = np.array(["DE", "ES"] * 5, dtype=object)
    session = np.arange(10, dtype=np.int32)
    # ES has 50 items: IVF with 16 cells and 1 probed reaches fewer than k=40 of them, never a -1 row
    cfg = index_cfg(ivf_min_items=40, ivf_nlist=16, ivf_nprobe=1, ivf_train_points=300)
    out = LocaleIndex(vectors, items, cfg, seed=0).search(session, locale, queries[:10], 40)
    assert out.schema == {"session": pl.Int32, "item": pl.Int32, "score": pl.Float32}
    es = out.filter(pl.col("session") % 2 == 1)
    assert es["item"].min() >= 250 and (es.group_by("session").len()["len"] <= 40).all()
    assert out.filter(pl.col("session") % 2 == 0)["item"].max() < 250


def test_per_query_depth_is_the_prefix_of_the_deepest_search():
    vectors, queries = _world(n_items=500, n_queries=60)
    items = {"DE": np.arange(0, 500, dtype=np.int64)}
    session = np.arange(60, dtype=np.int32)
    locale = np.array(["DE"] * 60, dtype=object)
    index = LocaleIndex(vectors, items, index_cfg(), seed=0)
    want = np.where(session % 7 == 0, 300, 5 + session % 13)  # a few long sessions among short ones
    out = index.search(session, locale, queries, want)
    deep = index.search(session, locale, queries, 300)
    sizes = out.group_by("session").len().sort("session")
    assert sizes["len"].to_list() == want.tolist()
    top = (
        deep.sort(["session", "score", "item"], descending=[False, True, False])
        .with_columns(r=pl.int_range(pl.len()).over("session"))
        .join(pl.DataFrame({"session": session, "want": want}), on="session")
        .filter(pl.col("r") < pl.col("want"))
    )
    assert out.join(top, on=["session", "item"], how="anti").height == 0


def test_depth_is_clamped_to_the_gpu_k_limit():
    """On a GPU faiss answers at most GPU_MAX_K neighbours: deeper requests are clamped (CPU stand-in)."""
    vectors, queries = _world(n_items=500, n_queries=20)
    index = LocaleIndex(vectors, {"DE": np.arange(500, dtype=np.int64)}, index_cfg(), seed=0)
    assert index.max_k is None  # faiss-cpu: no limit
    index.max_k = 64
    out = index.search(np.arange(20, dtype=np.int32), np.array(["DE"] * 20, dtype=object), queries, 300)
    assert (out.group_by("session").len()["len"] == 64).all()

