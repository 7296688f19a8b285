"""The union of every configured candidate source: the candidate table of the ranker.

Sources are configured in params.yaml ``candidates.sources`` as ``name -> {type: <registry key>,
k: <cap per session>, <the knobs it sets>}``; every knob an entry leaves out takes the value of its
type's block in ``source_defaults`` (every knob of each type, listed once). Nothing here names a
source.

Union frame (one row per distinct (session, item)):
    session:Int32, item:Int32, then for every configured source ``name`` in params order
    cand_<name>_score:Float32, cand_<name>_rank:Int32 (null where ``name`` did not propose the item),
    and n_sources:Int8 (how many sources proposed it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from candidates.base import CandidateSource
from candidates.columns import rank_col, score_col
from candidates.registry import SOURCES, source_class
from core import config, schemas
from core.config import ParamsError, from_dict
from core.io import peak_rss_mib, timed

log = logging.getLogger(__name__)

DEFAULTS = "source_defaults"  # params.yaml section: registry type -> every knob of its Config


@dataclass(frozen=True)
class SourceSpec:
    name: str
    type: str
    k: int
    source: CandidateSource


def load_source_defaults(path: str | Path = config.PARAMS_FILE) -> dict[str, dict[str, Any]]:
    """params.yaml ``source_defaults``: registry type -> its knobs, each block checked complete."""
    defaults = config.section(DEFAULTS, path)
    if not isinstance(defaults, dict):
        raise ParamsError(f"{path}:{DEFAULTS}: expected a mapping, got {type(defaults).__name__}")
    for kind, block in defaults.items():
        if kind not in SOURCES:
            raise ParamsError(f"{path}:{DEFAULTS}.{kind}: unknown source type; known: {sorted(SOURCES)}")
        from_dict(source_class(kind).Config, block, f"{path}:{DEFAULTS}.{kind}")
    return defaults


def with_defaults(
    specs: dict[str, dict[str, Any]], defaults: dict[str, dict[str, Any]], where: str = "candidates.sources"
) -> dict[str, dict[str, Any]]:
    """Every entry of ``specs`` completed with its type's ``source_defaults`` block (the entry wins).

    Raises ParamsError naming the entry for a missing type or k, an unknown type, a type without a
    defaults block, or a knob its type does not have.
    """
    out = {}
    for name, spec in specs.items():
        spec = dict(spec or {})
        if "type" not in spec or "k" not in spec:
            raise ParamsError(f"{where}.{name}: needs 'type' and 'k'")
        kind = spec["type"]
        if kind not in SOURCES:
            raise ParamsError(f"{where}.{name}: unknown source type {kind!r}; known: {sorted(SOURCES)}")
        if kind not in defaults:
            raise ParamsError(f"{where}.{name}: no {DEFAULTS}.{kind} block for type {kind!r}")
        knobs = {f.name for f in dataclasses.fields(source_class(kind).Config)}
        unknown = sorted(set(spec) - knobs - {"type", "k"})
        if unknown:
            raise ParamsError(f"{where}.{name}: unknown key(s) {unknown}; allowed: {sorted(knobs)}")
        out[name] = {**defaults[kind], **spec}
    return out


def build_sources(
    specs: dict[str, dict[str, Any]], seed: int, where: str = "candidates.sources"
) -> list[SourceSpec]:
    """Instantiate every source of ``specs`` (params order), each from its own frozen config.

    Each entry names every knob of its type (:func:`with_defaults` completes a params entry).
    """
    out = []
    for name, spec in specs.items():
        spec = dict(spec or {})
        if "type" not in spec or "k" not in spec:
            raise ParamsError(f"{where}.{name}: needs 'type' and 'k'")
        kind, k = spec.pop("type"), int(spec.pop("k"))
        cls = source_class(kind)
        cfg = from_dict(cls.Config, spec, f"{where}.{name}")
        out.append(SourceSpec(name=name, type=kind, k=k, source=cls(cfg, seed)))
    return out


def union(cands: dict[str, pl.DataFrame], max_per_session: int) -> pl.DataFrame:
    """Outer-join every source's (session, item, score, rank) into the wide union frame.

    Args:
        cands: source name -> its generate() output (already capped at the source's k), in the
            column order wanted.
        max_per_session: cap on the union per session; when it bites, the items kept are those
            with the best rank in any source (ties: more sources, then item index).
    """
    key = ["session", "item"]
    out: pl.DataFrame | None = None
    for name, frame in cands.items():
        wide = frame.select(
            pl.col("session").cast(pl.Int32),
            pl.col("item").cast(pl.Int32),
            pl.col("score").cast(pl.Float32).alias(score_col(name)),
            pl.col("rank").cast(pl.Int32).alias(rank_col(name)),
        )
        out = wide if out is None else out.join(wide, on=key, how="full", coalesce=True)
    if out is None:
        return pl.DataFrame(schema={"session": pl.Int32, "item": pl.Int32, "n_sources": pl.Int8})
    ranks = [rank_col(name) for name in cands]
    # One int64 per row orders a session's rows as the cap wants them (best rank, then more sources,
    # then item): rank < 2**29, n_sources < 16, item < 2**29 (pack_bits' bound on ids).
    order = (
        pl.min_horizontal(ranks).cast(pl.Int64) * (1 << 34)
        + (15 - pl.col("n_sources")).cast(pl.Int64) * (1 << 29)
        + pl.col("item").cast(pl.Int64)
    )
    return (
        out.with_columns(n_sources=pl.sum_horizontal(pl.col(r).is_not_null() for r in ranks).cast(pl.Int8))
        .filter(order.rank("ordinal").over("session") <= max_per_session)
        .sort(key)
    )


@dataclass(frozen=True)
class CandidatesConfig:
    chunk_size: int  # query sessions per generate() call
    max_per_session: int  # cap on the union per session
    sources: dict[str, dict[str, Any]]  # name -> {type, k, knobs}


def fit_sources(specs: list[SourceSpec], history: pl.DataFrame, items: pl.DataFrame) -> None:
    for spec in specs:
        with timed(f"fit {spec.name} ({spec.type}) on {history.height} events"):
            spec.source.fit(history, items)


def generate_union(
    specs: list[SourceSpec], sessions: pl.DataFrame, chunk_size: int, max_per_session: int
) -> Iterator[pl.DataFrame]:
    """Generate every fitted source chunk by chunk; yield each chunk's union (candidates.union schema).

    Chunks are ranges of sorted session ids, so the parts concatenated are sorted by session and item.
    """
    ids = sessions.get_column("session").unique().sort()
    spent = {spec.name: 0.0 for spec in specs}
    rows = {spec.name: 0 for spec in specs}
    for start in tqdm(range(0, len(ids), chunk_size), desc="candidate chunks", unit="chunk"):
        chunk_ids = ids.slice(start, chunk_size)
        chunk = sessions.filter(pl.col("session").is_in(chunk_ids.implode()))
        cands = {}
        for spec in specs:
            t0 = time.perf_counter()
            cands[spec.name] = schemas.check(
                spec.source.generate(chunk, spec.k), schemas.CANDIDATES, spec.name
            )
            spent[spec.name] += time.perf_counter() - t0
            rows[spec.name] += cands[spec.name].height
        yield union(cands, max_per_session)
    for spec in specs:
        log.info(
            "generate %s: %d rows for %d sessions, %.1fs, peak RSS %.0f MiB",
            spec.name,
            rows[spec.name],
            len(ids),
            spent[spec.name],
            peak_rss_mib(),
        )


def empty_union(specs: list[SourceSpec], max_per_session: int) -> pl.DataFrame:
    return union({spec.name: pl.DataFrame(schema=schemas.CANDIDATES) for spec in specs}, max_per_session)
