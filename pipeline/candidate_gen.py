"""Stage ``candidates``: fit every configured source on a split's history, write their union.

    python -m pipeline.candidate_gen --split valid --prepared data/prepared --splitdir data/split \
        --out data/candidates/valid/union.parquet

Reads data/split/<split>/history.parquet (what the sources are fitted on: for ``valid`` it holds no
target of a query session), queries.parquet (the sessions to generate for), data/prepared/items.parquet
and the query sessions' prev_items from data/prepared/events.parquet. Writes the union frame of
candidates.union (session, item, cand_<name>_score/rank per source, n_sources). Query sessions are
processed in chunks of ``chunk_size`` so that memory stays bounded.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from candidates.base import query_sessions
from candidates.covisit import with_query_flag
from candidates.union import SourceSpec, build_sources, load_source_defaults, union, with_defaults
from pipeline import config, engine, guards, schemas
from pipeline.io import parquet_parts, peak_rss_mib, setup_logging, timed

log = logging.getLogger(__name__)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, choices=("valid", "test"))
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--splitdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    cfg = config.load_section(CandidatesConfig, "candidates")
    sources = with_defaults(cfg.sources, load_source_defaults(), f"{config.PARAMS_FILE}:candidates.sources")
    specs = build_sources(sources, config.seed())

    split = args.splitdir / args.split
    history = schemas.check(pl.read_parquet(split / "history.parquet"), schemas.EVENTS, "history")
    # query: the held-out and test sessions' prefixes (co-visitation may weight them up: query_weight)
    history = with_query_flag(history, pl.read_parquet(args.prepared / "events.parquet", columns=["session"]))
    queries = schemas.check(pl.read_parquet(split / "queries.parquet"), schemas.QUERIES, "queries")
    items = schemas.check(pl.read_parquet(args.prepared / "items.parquet"), schemas.ITEMS, "items")
    events = (
        pl.scan_parquet(args.prepared / "events.parquet")
        .join(queries.lazy().select("session"), on="session")
        .collect()
    )
    sessions = query_sessions(queries, events)
    log.info(
        "%s: %d history events, %d query sessions, %d query events, sources %s",
        args.split,
        history.height,
        queries.height,
        events.height,
        [s.name for s in specs],
    )

    guards.require(
        "candidates: one chunk's source outputs and their union",
        min(cfg.chunk_size, queries.height) * sum(s.k for s in specs),
        3 + 2 * len(specs),
        config.load_section(guards.ResourcesConfig, "resources"),
        "candidates.chunk_size or the sources' k",
    )

    if engine.engine() == "dask":  # the same parts, co-visitation counts and union on a Dask cluster
        from pipeline.engine.union import union_parts

        parts = union_parts(
            engine.dask_config(), specs, history, items, sessions, cfg.chunk_size, cfg.max_per_session
        )
    else:
        fit_sources(specs, history, items)
        parts = generate_union(specs, sessions, cfg.chunk_size, cfg.max_per_session)
    n_sessions, longest = 0, 0
    with timed("generate union"), parquet_parts(args.out, empty_union(specs, cfg.max_per_session)) as out:
        for part in parts:
            per_session = part.group_by("session").len().get_column("len")
            n_sessions, longest = n_sessions + per_session.len(), max(longest, per_session.max() or 0)
            out.write(part)
    log.info(
        "union: %d rows, %d sessions, %.1f candidates per session (max %d)",
        out.rows,
        n_sessions,
        out.rows / max(n_sessions, 1),
        longest,
    )


if __name__ == "__main__":
    main()
