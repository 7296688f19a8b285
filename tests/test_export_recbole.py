"""m2 export-recbole: the split as RecBole atomic files, read back."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from pipeline.cli import app


def _split(data: Path) -> None:
    (data / "prepared").mkdir(parents=True)
    (data / "split" / "valid").mkdir(parents=True)
    pl.DataFrame({"item": [0, 1, 2], "id": ["B01", "B02", "B03"], "locale": ["DE", "DE", "UK"],
                  "price": [1.5, 2.0, None], "brand": ["acme", None, "x"], "color": ["red", "", None],
                  "title": ["a red\tcup", "mug\nbig", None]},
                 schema={"item": pl.Int32, "id": pl.String, "locale": pl.String, "price": pl.Float64,
                         "brand": pl.String, "color": pl.String, "title": pl.String},
                 ).write_parquet(data / "prepared" / "items.parquet")
    # session 7: a train session; session 9: a valid query whose prefix (0, 1) is history, target 2 held out
    pl.DataFrame({"session": [7, 7, 7, 9, 9], "position": [0, 1, 2, 1, 0], "item": [0, 1, 0, 1, 0]},
                 schema={"session": pl.Int32, "position": pl.Int32, "item": pl.Int32},
                 ).write_parquet(data / "split" / "valid" / "history.parquet")
    pl.DataFrame({"session": [9], "locale": ["DE"], "dataset": ["train"], "row": [0]},
                 schema={"session": pl.Int32, "locale": pl.String, "dataset": pl.String, "row": pl.Int32},
                 ).write_parquet(data / "split" / "valid" / "queries.parquet")
    pl.DataFrame({"session": [9], "item": [2]}, schema={"session": pl.Int32, "item": pl.Int32},
                 ).write_parquet(data / "split" / "valid" / "targets.parquet")


def test_export_recbole_writes_the_split_as_atomic_files(tmp_path):
    _split(tmp_path / "data")
    out, data = str(tmp_path / "out"), str(tmp_path / "data")
    result = CliRunner().invoke(app, ["export-recbole", out, "--data", data])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "m2"
    inter = pl.read_csv(folder / "m2.inter", separator="\t")
    assert inter.columns == ["session_id:token", "item_id:token", "timestamp:float"]
    assert inter.rows() == [(7, 0, 0.0), (7, 1, 1.0), (7, 0, 2.0), (9, 0, 0.0), (9, 1, 1.0)]
    test = pl.read_csv(folder / "m2.test.inter", separator="\t")
    assert test.rows() == [(9, 0, 0.0), (9, 1, 1.0), (9, 2, 2.0)]  # the held-out target last
    lines = (folder / "m2.item").read_text().splitlines()
    assert lines[0].split("\t") == ["item_id:token", "id:token", "locale:token", "price:float", "brand:token",
                                    "color:token", "title:token_seq"]
    assert len(lines) == 4 and all(len(line.split("\t")) == 7 for line in lines)
    assert lines[1].split("\t")[-1] == "a red cup" and lines[2].split("\t")[-1] == "mug big"
