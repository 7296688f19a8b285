"""Co-visitation pair counting, the one implementation: packed int64 keys a | b | d, run-length counted.

Plain arguments, no config class, so that the Covisit source (:func:`candidates.covisit.pair_counts`,
also run per session partition on Dask by pipeline/engine/covisit.py) and the co-visitation features
(:func:`features.base.covisit_pairs`) count with the same code. Polars only: a module importing this
one depends on nothing else of the project.
"""

from __future__ import annotations

import polars as pl

DIRECTIONS = ("both", "forward", "backward")


def pack_bits(events: pl.DataFrame, window: int, key: str = "item") -> tuple[int, int]:
    """Bits for a ``key`` id and for a distance in the packed int64 pair key a | b | d.

    Ids must be non-negative and below 2**29 (two of them and the distance fit 62 bits).
    """
    column = events.get_column(key)
    if column.len() and (column.min() or 0) < 0:
        raise ValueError(f"co-visitation key {key!r} must be >= 0, got {column.min()}")
    item_bits = max(int(column.max() or 0).bit_length(), 1)
    dist_bits = window.bit_length()
    if 2 * item_bits + dist_bits > 62:
        raise ValueError(f"co-visitation key needs {2 * item_bits + dist_bits} bits; items must be < 2**29")
    return item_bits, dist_bits


def count_pairs(
    events: pl.DataFrame,
    window: int,
    direction: str,
    unique_per_session: bool,
    collapse_repeats: bool,
    item_bits: int,
    key: str = "item",
) -> pl.DataFrame:
    """Pair occurrences of ``events`` as packed keys: value:Int64 (a | b | d), len:UInt32, sorted by value.

    A pair (a, b) is two events of a session at most ``window`` events apart (``events`` is sorted by
    session and position here, so positions need not start at 0, but a gap in them is not a distance),
    a != b, a and b the ``key`` ids (non-negative, below ``2 ** item_bits``: :func:`pack_bits`).
    ``direction``: both, forward (a before b) or backward. ``unique_per_session``: a pair counts once
    per session, at its smallest distance. ``collapse_repeats``: consecutive duplicates (A A B -> A B)
    are dropped before pairing. The packed key is ``a << (item_bits + dist_bits) | b << dist_bits | d``
    with ``dist_bits = window.bit_length()``.

    Every pair is counted within its own session, so the counts of disjoint session sets add up.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    ev = events.select("session", "position", item=pl.col(key)).sort("session", "position")
    if collapse_repeats:
        ev = ev.filter(
            (pl.col("item") != pl.col("item").shift(1))
            | (pl.col("session") != pl.col("session").shift(1))
            | pl.col("item").shift(1).is_null()
        )
    ev = ev.select("session", pl.col("item").cast(pl.Int64))
    dist_bits = window.bit_length()
    a_mul, b_mul = 1 << (item_bits + dist_bits), 1 << dist_bits
    if unique_per_session:
        # A pair can repeat within a session only if an item does: flag those sessions so that
        # only their pairs go through the (costlier) per-session dedup.
        si = (
            ev.select(pl.col("session").cast(pl.Int64) * (1 << item_bits) + pl.col("item")).to_series().sort()
        )
        repeats = (si.filter(si.diff() == 0) // (1 << item_bits)).unique()
        ev = ev.with_columns(rep=pl.col("session").is_in(repeats.implode()))
    else:
        ev = ev.with_columns(rep=pl.lit(False))
    parts = []
    for d in range(1, window + 1):
        fwd = (
            ev.lazy()
            .select(
                "session", "rep", a=pl.col("item"), b=pl.col("item").shift(-d), _s=pl.col("session").shift(-d)
            )
            .filter((pl.col("_s") == pl.col("session")) & (pl.col("a") != pl.col("b")))
        )
        if direction in ("both", "forward"):
            parts.append(fwd.select("session", "rep", key=pl.col("a") * a_mul + pl.col("b") * b_mul + d))
        if direction in ("both", "backward"):
            parts.append(fwd.select("session", "rep", key=pl.col("b") * a_mul + pl.col("a") * b_mul + d))
    pairs = pl.concat(parts).collect()
    # Sorted by (session, key), a pair's rows in one session are adjacent with the closest
    # distance (the highest weight) first: keep that one.
    ab = pl.col("key") // b_mul
    deduped = (
        pairs.filter("rep")
        .sort("session", "key")
        .filter(
            (pl.col("session") != pl.col("session").shift(1))
            | (ab != ab.shift(1))
            | pl.col("session").shift(1).is_null()
        )
    )
    keys = pl.concat([pairs.filter(~pl.col("rep")).get_column("key"), deduped.get_column("key")])
    return keys.sort().rle().struct.unnest()


def pair_totals(counts: pl.DataFrame, window: int, item_bits: int) -> pl.DataFrame:
    """a:Int64, b:Int64, n:UInt32: :func:`count_pairs` rows summed over distances, sorted by (a, b)."""
    b_mul = 1 << window.bit_length()
    return (
        counts.select(ab=(pl.col("value") // b_mul).set_sorted(), n="len")
        .group_by("ab", maintain_order=True)
        .agg(pl.col("n").sum())
        .select(a=pl.col("ab") // (1 << item_bits), b=pl.col("ab") % (1 << item_bits), n="n")
    )
