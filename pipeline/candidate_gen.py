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
import json
import logging
from pathlib import Path

import polars as pl

from candidates.base import query_sessions
from candidates.covisit import with_query_flag
from candidates.union import (
    CandidatesConfig,
    build_sources,
    empty_union,
    fit_sources,
    generate_union,
    load_source_defaults,
    with_defaults,
)
from core import config, guards, schemas
from core.errors import exit_on_error
from core.io import parquet_parts, setup_logging, timed
from pipeline import engine

log = logging.getLogger(__name__)


@exit_on_error
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
    if engine.engine() == "dask":  # every source fitted and the union built by the workers
        return main_dask(args, cfg, specs, split)
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

    fit_sources(specs, history, items)
    write_union(args.out, specs, cfg, generate_union(specs, sessions, cfg.chunk_size, cfg.max_per_session))


def write_union(out_path: Path, specs: list, cfg: CandidatesConfig, parts) -> None:
    """The union parts streamed into ``out_path`` (one part in memory at a time)."""
    n_sessions, longest = 0, 0
    with timed("generate union"), parquet_parts(out_path, empty_union(specs, cfg.max_per_session)) as out:
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



def main_dask(args: argparse.Namespace, cfg: CandidatesConfig, specs: list, split: Path) -> None:
    """The stage on the Dask cluster of params.yaml ``dask``: this process passes paths and id bounds and
    streams the union parts into the output; the workers read the inputs, fit and generate."""
    from pipeline.engine import covisit as dask_covisit
    from pipeline.engine import store
    from pipeline.engine.union import union_parts

    dcfg = engine.dask_config()
    paths = dask_covisit.Paths(
        history=store.url(split / "history.parquet"),
        items=store.url(args.prepared / "items.parquet"),
        events=store.url(args.prepared / "events.parquet"),
        queries=store.url(split / "queries.parquet"),
    )
    n_queries = pl.scan_parquet(paths.queries).select(pl.len()).collect().item()
    log.info("%s on dask: %d query sessions, sources %s", args.split, n_queries, [s.name for s in specs])
    guards.require(
        "candidates: one chunk's source outputs and their union",
        min(cfg.chunk_size, n_queries) * sum(s.k for s in specs),
        3 + 2 * len(specs),
        config.load_section(guards.ResourcesConfig, "resources"),
        "candidates.chunk_size or the sources' k",
    )
    with engine.dask_client(dcfg) as client, engine.scratch(dcfg, "candidates") as root:
        n_parts = engine.n_workers(client) * dcfg.partitions_per_worker
        stats: dict = {}
        parts = union_parts(client, paths, specs, cfg.chunk_size, cfg.max_per_session, root, n_parts, stats)
        write_union(args.out, specs, cfg, parts)
    log.info("dask figures %s", json.dumps(stats))  # benchmarks/distributed.py reads this line


if __name__ == "__main__":
    main()
