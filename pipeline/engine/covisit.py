"""Co-visitation on Dask: the counts of candidates.covisit as a partitioned group-by, top-k per item.

    nbrs = neighbours(client, partition_paths, cfg, item_bits)

Input: session-partitioned parquet (``pipeline.engine.write_session_partitions``): session:Int32,
position:Int32, item:Int32 (the counted key: item, or product for ``key: product``), every session in
exactly one file. Plan (one dask.dataframe graph):

1. map, one task per session partition: ``candidates.covisit.pair_counts`` (collapse repeats, pairs
   within ``window``, once per session) -> packed pair keys (a | b | d) and their counts.
2. shuffle those rows on ``a`` (hash partitioning): the shuffle volume is one 24-byte row per distinct
   (a, b, d) per session partition.
3. reduce, one task per ``a`` partition: sum the counts per key (integers, exact), then the single-machine
   code (``weights_from_counts``, ``top_neighbours``) on whole ``a`` groups.

Because step 3 runs the same polars expressions on the same rows of each ``a``, the neighbour table
equals ``candidates.covisit.neighbours`` exactly, ties included (tests/test_dask.py checks it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

from candidates.covisit import (
    Covisit,
    CovisitConfig,
    expand_hops,
    pair_counts,
    top_neighbours,
    weights_from_counts,
)

log = logging.getLogger(__name__)

_COUNTS_META = pd.DataFrame(
    {"a": pd.Series(dtype="int64"), "value": pd.Series(dtype="int64"), "len": pd.Series(dtype="int64")}
)
_NBRS_META = pd.DataFrame(
    {"a": pd.Series(dtype="int32"), "b": pd.Series(dtype="int32"), "score": pd.Series(dtype="float32")}
)


def item_bits_of(max_item: int, window: int) -> int:
    """Bits per key in the packed pair key (as candidates.pairs.pack_bits)."""
    bits = max(int(max_item).bit_length(), 1)
    if 2 * bits + window.bit_length() > 62:
        raise ValueError(
            f"co-visitation key needs {2 * bits + window.bit_length()} bits; items must be < 2**29"
        )
    return bits


def _partition_counts(part: pd.DataFrame, cfg: CovisitConfig, item_bits: int) -> pd.DataFrame:
    counts = pair_counts(pl.from_pandas(part), cfg, item_bits)
    shift = item_bits + cfg.window.bit_length()
    return counts.select(
        a=pl.col("value") // (1 << shift), value="value", len=pl.col("len").cast(pl.Int64)
    ).to_pandas()


def _partition_neighbours(
    part: pd.DataFrame, cfg: CovisitConfig, item_bits: int, n: pl.DataFrame | None, n_sessions: int
) -> pd.DataFrame:
    counts = (
        pl.from_pandas(part[["value", "len"]])
        .group_by("value")
        .agg(pl.col("len").sum())
        .sort("value")
        .with_columns(pl.col("len").cast(pl.UInt32))
    )
    w = weights_from_counts(counts, cfg, item_bits)
    return top_neighbours(w, cfg, n, n_sessions).to_pandas()


def _partition_sessions_per_item(part: pd.DataFrame) -> pd.DataFrame:
    frame = pl.from_pandas(part[["session", "item"]]).unique()
    return frame.group_by("item").agg(len=pl.len().cast(pl.Int64)).to_pandas()


def neighbours(
    client: Any, paths: list[Path], cfg: CovisitConfig, item_bits: int, stats: dict[str, Any] | None = None
) -> pl.DataFrame:
    """Top ``cfg.top_n`` neighbours per key, a:Int32, b:Int32, score:Float32, sorted by (a, score desc, b):
    equal to ``candidates.covisit.neighbours`` on the concatenated partitions.

    ``stats``, when given, receives the shuffle rows (the map output) for the benchmark's figures.
    """
    import dask.dataframe as dd

    events = dd.read_parquet([str(p) for p in paths], split_row_groups=False)
    n, n_sessions = None, 0
    if cfg.normalize in ("cosine", "lift"):
        per_item = events.map_partitions(
            _partition_sessions_per_item,
            meta=pd.DataFrame({"item": pd.Series(dtype="int32"), "len": pd.Series(dtype="int64")}),
        )
        n = pl.from_pandas(per_item.groupby("item")["len"].sum().reset_index().compute()).select(
            "item", pl.col("len").cast(pl.UInt32)
        )
        n_sessions = int(events["session"].map_partitions(lambda s: pd.Series([s.nunique()])).sum().compute())
    counts = events.map_partitions(_partition_counts, cfg, item_bits, meta=_COUNTS_META)
    if stats is not None:
        counts = counts.persist()
        stats["shuffle_rows"] = int(counts.map_partitions(len).sum().compute())
        stats["shuffle_bytes"] = stats["shuffle_rows"] * 24
    npart = max(len(paths), 1)
    nbrs = counts.shuffle(on="a", npartitions=npart).map_partitions(
        _partition_neighbours, cfg, item_bits, n, n_sessions, meta=_NBRS_META
    )
    frame = pl.from_pandas(
        nbrs.compute(), schema_overrides={"a": pl.Int32, "b": pl.Int32, "score": pl.Float32}
    )
    # Each partition holds whole ``a`` groups already in the single-machine order (by the float64 score,
    # which the Float32 column cannot reproduce): a stable sort on ``a`` alone keeps it.
    return frame.sort("a", maintain_order=True)


def fit(
    sources: list[Covisit],
    history: pl.DataFrame,
    items: pl.DataFrame,
    client: Any,
    n_parts: int,
    scratch: Path,
    stats: list[dict[str, Any]] | None = None,
) -> None:
    """Fit every Covisit of ``sources`` on Dask: what ``Covisit.fit`` does, the counting on the cluster.

    The history is cut into ``n_parts`` session partitions once per counted key (item, product).
    ``stats``, when given, receives one dict of shuffle figures per source (see :func:`neighbours`).
    """
    from pipeline.engine import session_ranges, write_session_partitions

    ranges = session_ranges(history["session"], n_parts)
    written: dict[str, list[Path]] = {}
    for source in sources:
        if (
            source.cfg.grid
        ):  # the grid variant is chosen on this machine (Covisit.select), then counted on the cluster
            source.cfg = source.select(history, items)
        if source.cfg.query_weight != 1.0:
            raise ValueError(
                "co-visitation query_weight != 1 is not implemented on engine: dask (use engine: polars)"
            )
        key = source.cfg.key
        source._items = items  # what Covisit.fit keeps for generate()
        keyed = source._to_key(history.select("session", "position", "item"))
        if key not in written:
            written[key] = write_session_partitions(keyed, ranges, scratch / f"history-{key}")
        bits = item_bits_of(keyed["item"].max() or 0, source.cfg.window)
        if stats is not None:
            stats.append({})
        source.nbrs = expand_hops(
            neighbours(client, written[key], source.cfg, bits, stats[-1] if stats is not None else None),
            source.cfg,
        )
