"""The union of every configured candidate source: the candidate table of the ranker.

Sources are configured in params.yaml ``candidates.sources`` as ``name -> {type: <registry key>,
k: <cap per session>, <the type's knobs>}``; nothing here names a source.

Union frame (one row per distinct (session, item)):
    session:Int32, item:Int32, then for every configured source ``name`` in params order
    cand_<name>_score:Float32, cand_<name>_rank:Int32 (null where ``name`` did not propose the item),
    and n_sources:Int8 (how many sources proposed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from candidates.base import CandidateSource
from candidates.registry import source_class
from pipeline.config import ParamsError, from_dict


@dataclass(frozen=True)
class SourceSpec:
    name: str
    type: str
    k: int
    source: CandidateSource


def build_sources(
    specs: dict[str, dict[str, Any]], seed: int, where: str = "candidates.sources"
) -> list[SourceSpec]:
    """Instantiate every source of ``specs`` (params order), each from its own frozen config."""
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


def score_col(name: str) -> str:
    return f"cand_{name}_score"


def rank_col(name: str) -> str:
    return f"cand_{name}_rank"


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
    return (
        out.with_columns(
            n_sources=pl.sum_horizontal(pl.col(r).is_not_null() for r in ranks).cast(pl.Int8),
            _best=pl.min_horizontal(ranks),
        )
        .sort(["session", "_best", "n_sources", "item"], descending=[False, False, True, False])
        .filter(pl.int_range(pl.len()).over("session") < max_per_session)
        .drop("_best")
        .sort(key)
    )
