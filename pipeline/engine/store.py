"""Parquet on ``dask.scratch_dir`` (any fsspec URL every worker can read) and the bucket shuffle over it.

    write(frame, url); read(url); read_dir(url, schema)
    write_buckets(frame, "src", n, f"{root}/map-covisit", "m00003")   # map task r: one file per bucket
    read_dir(bucket_dir(f"{root}/map-covisit", j), schema)              # reduce task j: every map's file

A shuffle here is files, not messages: a map task writes its rows into ``n`` bucket folders
(``bucket = key % n``, keys are non-negative ids), a reduce task reads one folder. Every task reads and
writes only its own share, so neither the driver nor any worker ever holds a whole table, the volume
moved is the bytes written (``shuffle_bytes``), and the same code runs on a local folder, ``file://``, or
an object store (``s3://``, ``gs://``, ``abfs://`` with their fsspec packages installed on every process).
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import polars as pl


def url(path: str | Path) -> str:
    """A stage input as the workers should see it: a URL unchanged, a local path made absolute."""
    return str(path) if "://" in str(path) else str(Path(path).resolve())


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


def makedirs(url: str) -> None:
    fs, path = _fs(url)
    fs.makedirs(path, exist_ok=True)


def make_root(base: str, what: str) -> str:
    """A fresh folder ``<base>/m2-<what>-<random>`` (created where the store has folders)."""
    url = join(base, f"m2-{what}-{uuid.uuid4().hex[:12]}")
    makedirs(url)
    return url


def remove(url: str) -> None:
    fs, path = _fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def write(frame: pl.DataFrame, url: str) -> int:
    """``frame`` as parquet at ``url`` (its folder created); the bytes written."""
    fs, path = _fs(url)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    buf = io.BytesIO()
    frame.write_parquet(buf)
    data = buf.getvalue()
    with fs.open(path, "wb") as f:
        f.write(data)
    return len(data)


def read(url: str, columns: list[str] | None = None) -> pl.DataFrame:
    fs, path = _fs(url)
    with fs.open(path, "rb") as f:
        return pl.read_parquet(f, columns=columns)


def read_dir(url: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Every ``*.parquet`` of the folder ``url`` (sorted by name) concatenated; an empty frame of ``schema``
    when there is none."""
    fs, path = _fs(url)
    names = sorted(fs.glob(join(path, "*.parquet")))
    frames = []
    for name in names:
        with fs.open(name, "rb") as f:
            frames.append(pl.read_parquet(f))
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames, how="vertical_relaxed").cast(schema)


def sum_dir(url: str, by: str | list[str], values: str | list[str]) -> pl.DataFrame:
    """The ``values`` columns of every ``*.parquet`` of the folder ``url`` summed per ``by`` (per-range
    counts add up), by a streamed scan: the task holds the sums and a batch, never the files' rows
    together."""
    local = "://" not in url or url.startswith("file://")
    scan = pl.scan_parquet(join(url.removeprefix("file://") if local else url, "*.parquet"))
    return scan.group_by(by).agg(pl.col(values).sum()).collect(engine="streaming")


def bucket_dir(url: str, j: int) -> str:
    return join(url, f"b{j:05d}")


def write_buckets(frame: pl.DataFrame, key: str, n: int, url: str, name: str) -> int:
    """``frame``'s rows into ``<url>/b<j>/<name>.parquet`` by ``key % n`` (every bucket gets a file, empty
    or not, so readers always find the schema); the bytes written."""
    bucket = (pl.col(key).cast(pl.Int64) % n).alias("_bucket")
    parts = {k[0]: f.drop("_bucket") for k, f in frame.with_columns(bucket).partition_by(
        "_bucket", as_dict=True).items()}
    return sum(write(parts.get(j, frame.head(0)), join(bucket_dir(url, j), f"{name}.parquet"))
               for j in range(n))


def read_range(url: str, lo: int, hi: int, columns: list[str] | None = None) -> pl.DataFrame:
    """The rows of a session-keyed parquet input with ``lo <= session <= hi``, in file order (the scan
    skips row groups by their statistics when the file is sorted by session)."""
    local = "://" not in url or url.startswith("file://")
    scan = pl.scan_parquet(url.removeprefix("file://") if local else url)
    if columns is not None:
        scan = scan.select(columns)
    return scan.filter(pl.col("session").is_between(lo, hi)).collect()
