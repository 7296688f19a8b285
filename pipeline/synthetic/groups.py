"""Entries bucketed by a key (locale, category, ...), sorted by popularity inside a group."""

from __future__ import annotations

import numpy as np


class Groups:
    """Entries grouped by an int64 code; popularity-weighted sampling and exact "count above".

    ``prank`` is every entry's rank in the global ascending popularity order, so "items of group g
    with pop > x" is an exact integer search (no float key mixing).
    """

    def __init__(self, codes: np.ndarray, pop: np.ndarray, prank: np.ndarray):
        self.codes, gid = np.unique(codes, return_inverse=True)
        n = len(pop)
        self.gid = gid.astype(np.int64)
        self.order = np.lexsort((prank, self.gid))
        counts = np.bincount(self.gid, minlength=len(self.codes))
        self.end = np.cumsum(counts)
        self.start = self.end - counts
        self.size = counts
        self.cum = np.concatenate([[0.0], np.cumsum(pop[self.order])])
        self.mass = self.cum[self.end] - self.cum[self.start]
        self.keys = self.gid[self.order] * n + prank[self.order]
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[self.order] = np.arange(n)
        self.n = n
        self.pop = pop

    def lookup(self, code: np.ndarray) -> np.ndarray:
        """Group index of each code, -1 where the group is empty."""
        if len(self.codes) == 0:
            return np.full(len(code), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.codes, code), len(self.codes) - 1)
        return np.where(self.codes[i] == code, i, -1)

    def sample(self, g: np.ndarray, u: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """One entry of each group ``g`` drawn proportionally to popularity (optionally not ``exclude``)."""
        start, end = self.start[g], self.end[g]
        base = self.cum[start]
        if exclude is None:
            v = base + u * self.mass[g]
        else:
            pe = self.pop[exclude]
            v = base + u * (self.mass[g] - pe)
            v = np.where(v >= self.cum[self.pos[exclude]], v + pe, v)
        i = np.clip(np.searchsorted(self.cum, v, side="right") - 1, start, end - 1)
        out = self.order[i]
        if exclude is not None:  # float edge: never return the excluded entry
            bad = out == exclude
            if bad.any():
                alt = np.where(i[bad] + 1 < end[bad], i[bad] + 1, i[bad] - 1)
                out[bad] = self.order[np.clip(alt, start[bad], end[bad] - 1)]
        return out

    def sample_uniform(self, g: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One entry of each group ``g``, every member equally likely."""
        return self.order[np.minimum(self.start[g] + (u * self.size[g]).astype(np.int64), self.end[g] - 1)]

    def count_above(self, g: np.ndarray, rank_threshold: np.ndarray) -> np.ndarray:
        """Number of entries of group ``g`` whose popularity rank is >= ``rank_threshold`` (0 where g < 0)."""
        ok = g >= 0
        gg = np.where(ok, g, 0)
        c = self.end[gg] - np.searchsorted(self.keys, gg * self.n + rank_threshold, side="left")
        return np.where(ok, np.clip(c, 0, None), 0)


def sorted_unique(codes: np.ndarray) -> np.ndarray:
    """``np.unique(codes)`` by a sort instead of numpy 2.4's hash table: on millions of distinct int64
    codes the hash path is ~20x slower and grows faster than linearly (cache misses)."""
    s = np.sort(codes)
    return s[np.concatenate([[True], s[1:] != s[:-1]])] if len(s) else s


def member(codes_sorted: np.ndarray, query: np.ndarray) -> np.ndarray:
    if len(codes_sorted) == 0:
        return np.zeros(len(query), dtype=bool)
    i = np.minimum(np.searchsorted(codes_sorted, query), len(codes_sorted) - 1)
    return codes_sorted[i] == query
