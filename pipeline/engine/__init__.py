"""The ``engine`` switch: polars on this machine (default) or Dask for the work that grows with the data.

    engine: polars | dask          # params.yaml, top level
    dask:
      scheduler_address: ""        # "": a distributed.LocalCluster of `workers` on this machine
      workers: 2

With ``engine: dask`` the stages ``candidates``, ``features``, ``train_ranker`` and ``predict`` run on a Dask
cluster (modules ``pipeline.engine.covisit``, ``.union``, ``.features``, ``.ranker``, ``.predict``; ``.store``
holds the bucket shuffle over ``dask.scratch_dir``, ``.cluster`` starts one with the ``dask`` CLI); they
read and write the same parquet paths as with polars. The stage process (the driver) passes paths,
session-id bounds and small configs: every frame that grows with the data is read, shuffled and written by
the workers. Dask is imported only here, only when asked for, so the default install does not need the
``distributed`` extra.

Session ranges are contiguous ranges of session ids (sessions never straddle them), so every per-session
computation runs inside one task and counts of disjoint ranges simply add up.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from core.config import PARAMS_FILE, ParamsError, load_section, read_params

log = logging.getLogger(__name__)

ENGINES = ("polars", "dask")


@dataclass(frozen=True)
class DaskConfig:
    """params.yaml ``dask``."""

    scheduler_address: str           # "": start a LocalCluster here; "tcp://host:8786": use that cluster
    workers: int                     # LocalCluster only: worker processes
    threads_per_worker: int          # LocalCluster only
    memory_limit: str                # LocalCluster only: per worker (dask pauses/spills beyond it)
    partitions_per_worker: int       # session ranges (= shuffle buckets) of the history per worker
    scratch_dir: str                 # fsspec URL of the files the workers exchange; "": system temp
                                     # (several machines: a shared path or an object store)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1 or self.partitions_per_worker < 1:
            raise ValueError("dask.workers, threads_per_worker and partitions_per_worker must be >= 1")


def engine(path: str | Path = PARAMS_FILE) -> str:
    """The top-level ``engine`` of params.yaml (a missing key is an error: params.yaml sets every knob)."""
    params = read_params(path)
    if "engine" not in params:
        raise ParamsError(f"{path}: missing top-level key 'engine' (one of {ENGINES})")
    value = params["engine"]
    if value not in ENGINES:
        raise ParamsError(f"{path}: engine must be one of {ENGINES}, got {value!r}")
    return value


def dask_config(path: str | Path = PARAMS_FILE) -> DaskConfig:
    return load_section(DaskConfig, "dask", path)


@contextlib.contextmanager
def dask_client(cfg: DaskConfig) -> Iterator[Any]:
    """A distributed.Client: to ``cfg.scheduler_address``, or to a LocalCluster started (and stopped) here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - depends on the install
        raise SystemExit("engine: dask needs the extra: pip install -e '.[distributed]'") from err
    if cfg.scheduler_address:
        with Client(cfg.scheduler_address) as client:
            log.info("dask: connected to %s (%d workers)", cfg.scheduler_address, n_workers(client))
            yield client
        return
    import dask

    # No work stealing: a task runs where its data is, so each LightGBM worker trains on the partitions
    # placed on it (pipeline.engine.ranker) and the model is the same run to run.
    with dask.config.set({"distributed.scheduler.work-stealing": False}), \
            LocalCluster(n_workers=cfg.workers, threads_per_worker=cfg.threads_per_worker,
                         memory_limit=cfg.memory_limit, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        log.info("dask: LocalCluster of %d workers x %d threads, %s each", cfg.workers,
                 cfg.threads_per_worker,
                 cfg.memory_limit)
        yield client


def n_workers(client: Any) -> int:
    return max(len(client.scheduler_info().get("workers", {})), 1)


@contextlib.contextmanager
def scratch(cfg: DaskConfig, what: str) -> Iterator[str]:
    """A fresh folder (URL) under ``dask.scratch_dir`` for the files the workers exchange, removed afterwards.

    ``scratch_dir`` is any fsspec URL every worker can read and write: a local path or ``file://...`` for a
    LocalCluster or workers on this machine, a shared mount or an object store (``s3://bucket/m2``) for
    workers on several machines; "" is the system temp folder (this machine only).
    """
    from pipeline.engine import store

    root = store.make_root(cfg.scratch_dir or tempfile.gettempdir(), what)
    try:
        yield root
    finally:
        store.remove(root)


def id_ranges(path: str | Path, n_parts: int, column: str = "session") -> list[tuple[int, int]]:
    """``n_parts`` contiguous (lo, hi) inclusive ranges of equal width over ``column``'s ids in the parquet
    input ``path``: the driver streams the column through a min and a max, holding one batch of ids at a
    time (an in-memory collect reads the whole column: 180 MiB for a full-size union)."""
    bounds = (pl.scan_parquet(path).select(lo=pl.col(column).min(), hi=pl.col(column).max())
              .collect(engine="streaming"))
    lo, hi = bounds["lo"][0], bounds["hi"][0]
    if lo is None:
        return []
    width = -(-(int(hi) - int(lo) + 1) // max(n_parts, 1))
    return [(start, min(start + width - 1, int(hi))) for start in range(int(lo), int(hi) + 1, width)]


def _distinct_ids(path: str, lo: int, hi: int) -> pl.Series:
    from pipeline.engine.store import read_range

    return read_range(path, lo, hi, ["session"])["session"].unique().sort()


def _count_ids(path: str, lo: int, hi: int) -> int:
    return len(_distinct_ids(path, lo, hi))


def _ids_at(path: str, lo: int, hi: int, positions: list[int]) -> list[int]:
    ids = _distinct_ids(path, lo, hi)
    return [int(ids[p]) for p in positions]


def _range_item_counts(history: str, lo: int, hi: int, out: str, cutoff: int) -> None:
    from pipeline.engine import store

    events = store.read_range(history, lo, hi, ["session", "item"])
    store.write(events.filter(pl.col("session") >= cutoff).group_by("item").agg(count=pl.len()), out)


def item_counts(client: Any, history: str, ranges: list[tuple[int, int]], folder: str,
                cutoff: int = 0) -> list[Any]:
    """The events per item of the history's sessions from ``cutoff`` on: one task per range writes its
    counts to ``<folder>/m<r>.parquet``; the futures to wait for (they hold nothing). Summed by
    :func:`summed_item_counts` on a worker."""
    from pipeline.engine import store

    return [client.submit(_range_item_counts, history, lo, hi, store.join(folder, f"m{r:05d}.parquet"),
                          cutoff, pure=False) for r, (lo, hi) in enumerate(ranges)]


def summed_item_counts(folder: str) -> pl.DataFrame:
    """item, count (UInt32): :func:`item_counts`' files summed by a streamed scan, so the task holds one
    row per item, never every range's rows together."""
    from pipeline.engine import store

    return store.sum_dir(folder, "item", "count").with_columns(pl.col("count").cast(pl.UInt32))


def map_ranges(client: Any, fn: Any, path: str, ranges: list[tuple[int, int]]) -> list[Any]:
    """``fn(path, lo, hi)`` for every range, one task each, gathered in range order."""
    return client.gather([client.submit(fn, path, lo, hi, pure=False) for lo, hi in ranges])


def id_at(client: Any, path: str, ranges: list[tuple[int, int]], position: int) -> int | None:
    """The ``position``-th smallest distinct session id of ``path`` (workers count and look it up)."""
    counts = map_ranges(client, _count_ids, path, ranges)
    offset = 0
    for (lo, hi), count in zip(ranges, counts, strict=True):
        if position < offset + count:
            return client.submit(_ids_at, path, lo, hi, [position - offset], pure=False).result()[0]
        offset += count
    return None


def chunk_bounds(client: Any, path: str | Path, size: int, n_parts: int) -> list[tuple[int, int]]:
    """(first, last) session id of each chunk of ``size`` sessions of the parquet input ``path`` (its sorted
    distinct ids cut as ``features.assemble.session_chunks`` cuts them), found by the workers: each counts
    the ids of one range, then returns the ids at the chunk edges falling in it. The driver holds two ids
    per chunk, never the ids."""
    path = str(Path(path).resolve()) if "://" not in str(path) else str(path)
    ranges = id_ranges(path, n_parts)
    counts = map_ranges(client, _count_ids, path, ranges)
    total = sum(counts)
    edges = sorted({p for start in range(0, total, size) for p in (start, min(start + size, total) - 1)})
    offset, futures = 0, []
    for (lo, hi), count in zip(ranges, counts, strict=True):
        local = [p - offset for p in edges if offset <= p < offset + count]
        if local:
            futures.append(client.submit(_ids_at, path, lo, hi, local, pure=False))
        offset += count
    ids = dict(zip(edges, [i for f in client.gather(futures) for i in f], strict=True))
    return [(ids[start], ids[min(start + size, total) - 1]) for start in range(0, total, size)]
