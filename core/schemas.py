"""Schemas of the parquet files that flow between stages, and a checker.

data/prepared/ (stage ``prepare``)
  items.parquet    item:Int32 (index of the (id, locale) pair), id:String (ASIN), locale:String,
                   product:Int32 (index of the ASIN, shared across locales), in_catalog:Boolean
                   (False for ids seen only in sessions), title, price:Float64, brand, color, size,
                   model, material, author, desc
  sessions.parquet session:Int32, dataset:String ("train", "task1_phase1", ...), row:Int32 (0-based
                   record of its file), locale:String, length:Int32 (number of prev_items)
  events.parquet   session:Int32, position:Int32 (0-based), item:Int32     (prev_items, long form)
  targets.parquet  session:Int32, item:Int32                               (train next_item only)

data/split/{valid,test}/ (stage ``split``)
  history.parquet  session:Int32, position:Int32, item:Int32: what sources may be fitted on.
                   Train sessions of the fit set carry their target as the last event; query
                   sessions carry only their prev_items.
  queries.parquet  session:Int32, locale:String, dataset:String, row:Int32: sessions to score.
  targets.parquet  session:Int32, item:Int32 (valid split only).

Candidates (one source, ``CandidateSource.generate``): session:Int32, item:Int32, score:Float32,
rank:Int32 (1 = best).
"""

from __future__ import annotations

import polars as pl

from core.errors import StageError

ITEMS = {"item": pl.Int32, "id": pl.String, "locale": pl.String, "product": pl.Int32,
         "in_catalog": pl.Boolean,
         "title": pl.String, "price": pl.Float64}
SESSIONS = {"session": pl.Int32, "dataset": pl.String, "row": pl.Int32, "locale": pl.String,
            "length": pl.Int32}
EVENTS = {"session": pl.Int32, "position": pl.Int32, "item": pl.Int32}
TARGETS = {"session": pl.Int32, "item": pl.Int32}
QUERIES = {"session": pl.Int32, "locale": pl.String, "dataset": pl.String, "row": pl.Int32}
CANDIDATES = {"session": pl.Int32, "item": pl.Int32, "score": pl.Float32, "rank": pl.Int32}


class SchemaError(StageError, ValueError):
    """A frame lacks a column the stage needs, or has it with another dtype."""


def check(frame: pl.DataFrame, schema: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    """Raise SchemaError unless ``frame`` has every column of ``schema`` with that dtype."""
    for column, dtype in schema.items():
        if column not in frame.columns:
            raise SchemaError(f"{name}: missing column {column!r} (has {frame.columns})")
        if frame.schema[column] != dtype:
            raise SchemaError(f"{name}: column {column!r} is {frame.schema[column]}, expected {dtype}")
    return frame
