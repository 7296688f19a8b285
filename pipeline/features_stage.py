"""Stage ``features`` (foreach split): the candidate union plus every feature family's columns.

    python -m pipeline.features_stage --split valid --prepared data/prepared --splitdir data/split \
        --union data/candidates/valid/union.parquet --out data/features/valid

Families are fitted on the split's history (what the candidate sources saw, never a held-out
target); the union is processed in chunks of ``features.chunk_sessions`` query sessions, written as
``<out>/part-<n>.parquet`` (session, item, feature columns), so a full test split never sits in
memory at once.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import polars as pl
from tqdm import tqdm

from core import guards
from core.config import load_section
from core.errors import exit_on_error
from core.io import peak_rss_mib, setup_logging, timed, write_json, write_parquet
from features.assemble import add_features, chunk_of, fit_families, session_chunks
from features.base import FeaturesConfig, Inputs
from features.parts import part_path, part_paths
from features.registry import FAMILY_COLUMNS, feature_columns
from pipeline import engine

log = logging.getLogger(__name__)


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", required=True, choices=["valid", "test"])
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--splitdir", type=Path, required=True)
    parser.add_argument("--union", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    cfg = load_section(FeaturesConfig, "features")
    split_dir = args.splitdir / args.split
    if engine.engine() == "dask":  # families fitted and joined by the workers (pipeline/engine/features.py)
        return main_dask(args, cfg, split_dir)
    history = pl.read_parquet(split_dir / "history.parquet")
    queries = pl.read_parquet(split_dir / "queries.parquet")
    inputs = Inputs(
        history=history,
        items=pl.read_parquet(args.prepared / "items.parquet"),
        sessions=pl.read_parquet(
            args.prepared / "sessions.parquet", columns=["session", "dataset", "locale", "length"]
        ),
    )
    with timed(f"features {args.split}: fit families"):
        state = fit_families(inputs, cfg)
    union = pl.scan_parquet(args.union)
    per_session = union.group_by("session").len().select(pl.col("len").max()).collect().item() or 0
    guards.require(
        "features: one chunk of candidates with every family's columns",
        min(cfg.chunk_sessions, queries.height) * per_session,
        len(union.collect_schema()) + FAMILY_COLUMNS,
        load_section(guards.ResourcesConfig, "resources"),
        "features.chunk_sessions or candidates.max_per_session",
    )
    events = history.join(queries.select("session"), on="session", how="semi")
    for stale in part_paths(args.out):  # a rerun with bigger chunks must not leave old parts behind
        stale.unlink()
    rows = 0
    columns: list[str] = []
    with timed(f"features {args.split}: {queries.height} sessions"):
        chunks = session_chunks(queries["session"], cfg.chunk_sessions)
        for n, ids in enumerate(tqdm(chunks, desc=f"features {args.split}", unit="chunk")):
            cands, chunk = chunk_of(union, queries, events, ids)
            frame = add_features(cands, chunk, state, cfg)
            write_parquet(frame, part_path(args.out, n))
            rows += frame.height
            columns = frame.columns
    write_summary(args, queries.height, rows, columns, len(chunks))


def write_summary(args: argparse.Namespace, sessions: int, rows: int, columns: list[str], parts: int) -> None:
    features = feature_columns(columns)
    write_json(
        {
            "split": args.split,
            "sessions": sessions,
            "rows": rows,
            "parts": parts,
            "features": features,
        },
        args.out / "summary.json",
    )  # no timings: a dependency of later stages
    log.info(
        "features %s: %d rows, %d features, %d parts, peak RSS %.0f MiB",
        args.split,
        rows,
        len(features),
        parts,
        peak_rss_mib(),
    )


def main_dask(args: argparse.Namespace, cfg: FeaturesConfig, split_dir: Path) -> None:
    """The stage on the Dask cluster of params.yaml ``dask``: this process passes paths and id bounds and
    writes the summary; the workers read the inputs, fit, join and write the parts."""
    from pipeline.engine import features as dask_features
    from pipeline.engine import store

    dcfg = engine.dask_config()
    paths = dask_features.Paths(
        history=store.url(split_dir / "history.parquet"),
        queries=store.url(split_dir / "queries.parquet"),
        items=store.url(args.prepared / "items.parquet"),
        sessions=store.url(args.prepared / "sessions.parquet"),
        union=store.url(args.union),
    )
    n_queries = pl.scan_parquet(paths.queries).select(pl.len()).collect().item()
    with engine.dask_client(dcfg) as client, engine.scratch(dcfg, "features") as root:
        n_parts = engine.n_workers(client) * dcfg.partitions_per_worker
        per_session = dask_features.max_per_session(client, paths.union, n_parts)
        guards.require(
            "features: one chunk of candidates with every family's columns",
            min(cfg.chunk_sessions, n_queries) * per_session,
            len(pl.scan_parquet(paths.union).collect_schema()) + FAMILY_COLUMNS,
            load_section(guards.ResourcesConfig, "resources"),
            "features.chunk_sessions or candidates.max_per_session",
        )
        for stale in part_paths(args.out):
            stale.unlink()
        with timed(f"features {args.split} on dask: {n_queries} sessions"):
            stats: dict = {}
            rows, columns, parts = dask_features.run(client, paths, cfg, args.out, root, n_parts, stats)
    figures = {k: v for k, v in stats.items() if k != "small"}
    log.info("dask figures %s", json.dumps(figures))  # benchmarks/distributed.py reads this line
    write_summary(args, n_queries, rows, columns, parts)


if __name__ == "__main__":
    main()
