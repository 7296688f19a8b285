"""Stage ``candidates`` on Dask: co-visitation sources fitted on the cluster, the union one task per
session partition.

    for part in union_parts(dask_cfg, specs, history, items, sessions, chunk_size, max_per_session): ...

Every ``covisit`` source is fitted by ``pipeline.engine.covisit.fit`` (the counting on the cluster); the
other sources are fitted here as on one machine. The fitted sources are scattered to every worker once;
the query sessions are cut into contiguous session ranges that are whole multiples of
``candidates.chunk_size`` and written as parquet partitions, so each task runs
``candidates.union.generate_union`` on exactly the chunks the polars path runs. The parts come
back in session order: concatenated, they are the polars union.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from candidates.covisit import Covisit
from candidates.union import SourceSpec
from core.io import timed
from pipeline.engine import (
    DaskConfig,
    dask_client,
    n_workers,
    scratch,
    session_ranges,
    write_session_partitions,
)
from pipeline.engine import covisit as dask_covisit

log = logging.getLogger(__name__)


def _union_task(specs: list[SourceSpec], path: str, chunk_size: int,
                max_per_session: int) -> list[pl.DataFrame]:
    from candidates.union import generate_union

    return list(generate_union(specs, pl.read_parquet(path), chunk_size, max_per_session))


def fit(client, specs: list[SourceSpec], history: pl.DataFrame, items: pl.DataFrame, n_parts: int,
        tmp: Path) -> None:
    """Fit every source: the covisit ones with their counting on the cluster, the others here."""
    from candidates.union import fit_sources

    covisit = [s for s in specs if isinstance(s.source, Covisit)]
    with timed(f"dask: fit {[s.name for s in covisit]} on {history.height} events"):
        dask_covisit.fit([s.source for s in covisit], history, items, client, n_parts, tmp)
    fit_sources([s for s in specs if not isinstance(s.source, Covisit)], history, items)


def parts_on(client, tmp: Path, n_parts: int, specs: list[SourceSpec], history: pl.DataFrame,
             items: pl.DataFrame,
             sessions: pl.DataFrame, chunk_size: int, max_per_session: int) -> Iterator[pl.DataFrame]:
    """Fit ``specs`` on ``history``; yield the union of ``sessions`` chunk by chunk, in session order."""
    fit(client, specs, history, items, n_parts, tmp)
    paths = write_session_partitions(sessions,
                                     session_ranges(sessions["session"], n_parts, multiple=chunk_size),
                                     tmp / "queries")
    specs_f = client.scatter(specs, broadcast=True)
    futures = [client.submit(_union_task, specs_f, str(p), chunk_size, max_per_session, pure=False)
               for p in paths]
    for n, future in enumerate(futures):
        parts = future.result()
        log.info("dask: union partition %d/%d: %d chunks", n + 1, len(futures), len(parts))
        yield from parts


def union_parts(dcfg: DaskConfig, specs: list[SourceSpec], history: pl.DataFrame, items: pl.DataFrame,
                sessions: pl.DataFrame, chunk_size: int, max_per_session: int) -> Iterator[pl.DataFrame]:
    """:func:`parts_on` on the cluster of ``dcfg``, ``dask.partitions_per_worker`` partitions per worker."""
    with dask_client(dcfg) as client, scratch(dcfg, "candidates") as tmp:
        yield from parts_on(client, tmp, n_workers(client) * dcfg.partitions_per_worker, specs, history,
                            items,
                            sessions, chunk_size, max_per_session)
