"""Seeded draws keyed on ids, not on a random stream: a row's draw is the same in any chunk or order.

    keep = seeded_uniform(frame["session"], frame["item"], seed) < rate   # rows: negatives kept
    ids = sample_sessions(frame["session"], cap, seed)                   # a capped sample of sessions

Used wherever a memory or time budget samples data (the ranker's training sessions and negatives,
the factor models' fitting sessions), so that a chunk size never changes what is kept.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def seeded_uniform(session: pl.Series, item: pl.Series | None, seed: int) -> np.ndarray:
    """A uniform [0, 1) draw per (session, item) row that depends on nothing but the key and ``seed``.

    A splitmix64 hash, not a random stream: the draw of a row is the same whichever chunk, part or
    order it is read in, so a memory knob (features.chunk_sessions) never changes which rows are kept.
    """
    key = session.cast(pl.UInt64).to_numpy().astype(np.uint64) << np.uint64(32)
    if item is not None:
        key = key | item.cast(pl.UInt32).to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        z = key ^ np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        z = (z + np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)



def sample_sessions(sessions: pl.Series, cap: int, seed: int) -> pl.Series:
    """At most ``cap`` of ``sessions`` (0: all): those with the smallest :func:`seeded_uniform` draw."""
    ids = sessions.unique().sort()
    if not cap or len(ids) <= cap:
        return ids
    order = np.argsort(seeded_uniform(ids, None, seed), kind="stable")[:cap]
    return ids.gather(np.sort(order))
