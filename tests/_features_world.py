"""A hand-made world small enough to check feature values by hand (shared by the feature and ranker tests).

items (DE 0-3, ES 4-6; ES items are the DE products 0, 2, 3 again):
  0 AAAAA01 DE p0 price 10 b1 red  m1      4 AAAAA01 ES p0 price 11 b1 red m1
  1 AAAAA02 DE p1 price 20 b1 blue m1      5 BBBBB01 ES p2 price 31 b2 red m2
  2 BBBBB01 DE p2 price 30 b2 red  m2      6 CCCCC01 ES p3 price 41 -  -   -
  3 CCCCC01 DE p3 price 40 -  -    -
history (targets are the last event of sessions 0-2):
  s0 train DE [0 1] -> 2     s1 train DE [1] -> 2     s2 train DE [0 3] -> 1
  s3 valid query DE [0 0 1] (no target in history)    s4 test ES [4]
"""

from __future__ import annotations

import polars as pl

from features.base import Chunk, Inputs


def items() -> pl.DataFrame:
    return pl.DataFrame({
        "item": [0, 1, 2, 3, 4, 5, 6],
        "id": ["AAAAA01", "AAAAA02", "BBBBB01", "CCCCC01", "AAAAA01", "BBBBB01", "CCCCC01"],
        "locale": ["DE"] * 4 + ["ES"] * 3,
        "product": [0, 1, 2, 3, 0, 2, 3],
        "in_catalog": [True] * 7,
        "title": ["t"] * 7,
        "price": [10.0, 20.0, 30.0, 40.0, 11.0, 31.0, 41.0],
        "brand": ["b1", "b1", "b2", None, "b1", "b2", None],
        "color": ["red", "blue", "red", None, "red", "red", None],
        "model": ["m1", "m1", "m2", None, "m1", "m2", None],
    }, schema_overrides={"item": pl.Int32, "product": pl.Int32})


def sessions() -> pl.DataFrame:
    return pl.DataFrame({
        "session": [0, 1, 2, 3, 4],
        "dataset": ["train", "train", "train", "train", "task2_phase1"],
        "row": [0, 1, 2, 3, 0],
        "locale": ["DE", "DE", "DE", "DE", "ES"],
        "length": [2, 1, 2, 3, 1],
    }, schema_overrides={"session": pl.Int32, "row": pl.Int32, "length": pl.Int32})


def history() -> pl.DataFrame:
    rows = [(0, [0, 1, 2]), (1, [1, 2]), (2, [0, 3, 1]), (3, [0, 0, 1]), (4, [4])]
    return pl.DataFrame(
        [(s, p, i) for s, seq in rows for p, i in enumerate(seq)],
        schema={"session": pl.Int32, "position": pl.Int32, "item": pl.Int32}, orient="row")


def inputs() -> Inputs:
    return Inputs(history=history(), items=items(), sessions=sessions())


def queries() -> pl.DataFrame:
    return sessions().filter(pl.col("session").is_in([3, 4])).select("session", "locale", "dataset", "row")


def chunk() -> Chunk:
    q = queries()
    return Chunk(events=history().filter(pl.col("session").is_in(q["session"].implode())),
                 queries=q.select("session", "locale"))


def union() -> pl.DataFrame:
    """Two sources, ``cv`` and ``pop``; pop did not propose item 3 to session 3."""
    return pl.DataFrame({
        "session": [3, 3, 4, 4],
        "item": [2, 3, 5, 6],
        "n_sources": [2, 1, 2, 2],
        "cand_cv_score": [4.0, 2.0, 1.0, 0.5],
        "cand_cv_rank": [1, 2, 1, 2],
        "cand_pop_score": [3.0, None, 5.0, 6.0],
        "cand_pop_rank": [1, None, 2, 1],
    }, schema_overrides={"session": pl.Int32, "item": pl.Int32, "n_sources": pl.UInt32,
                         "cand_cv_score": pl.Float32, "cand_pop_score": pl.Float32,
                         "cand_cv_rank": pl.Int32, "cand_pop_rank": pl.Int32})
