"""Atomic writers and logging set-up shared by every stage.

Every output goes to a temporary file in the target directory and is renamed into place, so an
interrupted stage leaves either the previous file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run (no finally ran)
        log.warning("removing %s, left by an interrupted run", stale)
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs should be readable like any file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_parquet(frame: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
    log.info("wrote %s (%d rows, %d cols)", path, frame.height, frame.width)


class PartWriter:
    """Appends frames of one schema to a parquet file, one row group each (see :func:`parquet_parts`)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.writer, self.rows = tmp, None, 0

    def write(self, frame: pl.DataFrame) -> None:
        table = frame.to_arrow()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd", write_statistics=True)
        self.writer.write_table(table)
        self.rows += frame.height


@contextlib.contextmanager
def parquet_parts(path: str | Path, empty: pl.DataFrame) -> Iterator[PartWriter]:
    """Write a parquet file frame by frame, atomically, so that no more than one frame is in memory.

    ``empty`` is written when no frame was (it gives the file its schema). The file replaces ``path``
    only when the block succeeds, as :func:`atomic_path` does.
    """
    with atomic_path(path) as tmp:
        parts = PartWriter(tmp)
        try:
            yield parts
        finally:
            if parts.writer is not None:
                parts.writer.close()
        if parts.writer is None:
            empty.write_parquet(tmp, compression="zstd", statistics=True)
    log.info("wrote %s (%d rows)", path, parts.rows)


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(obj: Any, path: str | Path) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def peak_rss_mib() -> float:
    """Peak resident set size of this process, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Log wall time and peak memory of a block."""
    start = time.perf_counter()
    yield
    log.info("%s: %.1fs, peak RSS %.0f MiB", what, time.perf_counter() - start, peak_rss_mib())
