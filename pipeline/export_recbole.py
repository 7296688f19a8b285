"""One split of this project as RecBole atomic files, so RecBole's own models train and score on
exactly the data this project scores.

    m2 export-recbole OUT [--split valid] [--data data] [--name m2]

writes, under ``OUT/<name>/`` (RecBole reads a dataset from ``data_path/<name>/<name>.<suffix>``):

- ``<name>.inter``: the split's history, what every source and encoder is fitted on (train sessions and
  the query sessions' prefixes): ``session_id:token  item_id:token  timestamp:float``, the timestamp the
  event's position in its session;
- ``<name>.test.inter``: the split's query sessions, their prefix and then their held-out target as
  the last event (RecBole's leave-one-out puts it in the test set); the valid split only (the test
  split's targets are not in data/split);
- ``<name>.item``: ``item_id:token  id:token  locale:token  price:float  brand:token  color:token
  title:token_seq``, one row per item index (an item index is one ASIN in one locale).

``item_id`` is this project's item index and ``session_id`` its session number, so a RecBole ranking
maps back with no lookup. Tabs and newlines inside attributes become spaces. Use
``benchmark_filename: [inter, test.inter]``-style loading or concatenate the two; either way RecBole
sees the same sessions the project's scorer sees.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

INTER = {"session": "session_id:token", "item": "item_id:token", "position": "timestamp:float"}
ITEM = {"item": "item_id:token", "id": "id:token", "locale": "locale:token", "price": "price:float",
        "brand": "brand:token", "color": "color:token", "title": "title:token_seq"}


def inter_frame(events: pl.DataFrame) -> pl.DataFrame:
    """events (session, position, item) -> the .inter columns, sorted by session and position."""
    return (events.drop_nulls("item").sort("session", "position")
            .select(pl.col("session"), pl.col("item"), pl.col("position").cast(pl.Float64))
            .rename(INTER))


def test_inter_frame(history: pl.DataFrame, queries: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """The query sessions' prefixes (from ``history``) with each session's target appended after them."""
    prefixes = history.join(queries.select("session"), on="session", how="semi")
    last = prefixes.group_by("session").agg(pl.col("position").max())
    held = (targets.join(queries.select("session"), on="session", how="semi")
            .join(last, on="session", how="left")
            .select("session", (pl.col("position").fill_null(-1) + 1).cast(pl.Int32), "item"))
    return inter_frame(pl.concat([prefixes.select("session", "position", "item"), held]))


def item_frame(items: pl.DataFrame) -> pl.DataFrame:
    """items (core.schemas) -> the .item columns, whitespace inside strings flattened."""
    flat = {c: pl.col(c).cast(pl.String).str.replace_all(r"\s+", " ")
            for c in ("id", "brand", "color", "title")}
    return items.select(pl.col("item"), flat["id"], pl.col("locale"), pl.col("price"), flat["brand"],
                        flat["color"], flat["title"]).sort("item").rename(ITEM)


def export(data: Path, split: str, out: Path, name: str) -> dict[str, int]:
    """Write the atomic files of ``data/split/<split>`` under ``out/<name>/``; returns rows per file."""
    folder = data / "split" / split
    history = pl.read_parquet(folder / "history.parquet")
    items = pl.read_parquet(data / "prepared" / "items.parquet")
    frames = {f"{name}.inter": inter_frame(history), f"{name}.item": item_frame(items)}
    if (folder / "targets.parquet").exists():
        frames[f"{name}.test.inter"] = test_inter_frame(
            history, pl.read_parquet(folder / "queries.parquet"), pl.read_parquet(folder / "targets.parquet"))
    (out / name).mkdir(parents=True, exist_ok=True)
    for file, frame in frames.items():
        frame.write_csv(out / name / file, separator="\t", quote_style="never", null_value="")
    return {file: frame.height for file, frame in frames.items()}
