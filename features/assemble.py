"""Fit every feature family on a split's history and add their columns to candidate chunks.

    state = fit_families(inputs, cfg)
    for chunk_frame in assemble_chunks(union, queries, events, state, cfg): ...

Input candidate frame (the union): session:Int32, item:Int32, n_sources, cand_<s>_score:Float32,
cand_<s>_rank:Int32. Output: the same rows, sorted by (session, item), plus the family columns
(cand_*, s_*, i_*, si_*; registry.feature_columns lists them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import polars as pl

from features import registry
from features.base import Chunk, FeaturesConfig, Inputs

log = logging.getLogger(__name__)


def fit_families(
    inputs: Inputs, cfg: FeaturesConfig, families: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """family name -> its fitted state."""
    names = families or tuple(registry.FAMILIES)
    return {name: registry.family(name).fit(inputs, cfg) for name in names}


def add_features(
    cands: pl.DataFrame, chunk: Chunk, state: dict[str, Any], cfg: FeaturesConfig
) -> pl.DataFrame:
    """Add every fitted family's columns to ``cands`` (rows and their order unchanged)."""
    frame = cands.sort("session", "item")
    for name, family_state in state.items():
        before = frame.height
        frame = registry.family(name).add(frame, chunk, family_state, cfg)
        if frame.height != before:
            raise RuntimeError(f"feature family {name!r} changed the row count {before} -> {frame.height}")
    return frame


def session_chunks(sessions: pl.Series, size: int) -> list[pl.Series]:
    """Sorted session ids cut into chunks of ``size``: a chunk is a contiguous id range."""
    ids = sessions.unique().sort()
    return [ids.slice(start, size) for start in range(0, len(ids), size)]


def chunk_of(
    union: pl.LazyFrame, queries: pl.DataFrame, events: pl.DataFrame, ids: pl.Series
) -> tuple[pl.DataFrame, Chunk]:
    """The candidates, query rows and prev_items of the sessions ``ids`` (a sorted id range, so the
    parquet scan can skip row groups by statistics)."""
    lo, hi = ids[0], ids[-1]
    in_range = pl.col("session").is_between(lo, hi)
    keep = pl.col("session").is_in(ids.implode())
    cands = union.filter(in_range).collect().filter(keep)
    chunk = Chunk(
        events=events.filter(in_range).filter(keep),
        queries=queries.filter(in_range).filter(keep).select("session", "locale"),
    )
    return cands, chunk


def assemble_chunks(
    union: pl.LazyFrame,
    queries: pl.DataFrame,
    events: pl.DataFrame,
    state: dict[str, Any],
    cfg: FeaturesConfig,
) -> Iterator[pl.DataFrame]:
    """Feature frames, one per chunk of ``cfg.chunk_sessions`` query sessions."""
    for ids in session_chunks(queries["session"], cfg.chunk_sessions):
        cands, chunk = chunk_of(union, queries, events, ids)
        yield add_features(cands, chunk, state, cfg)
