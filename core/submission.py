"""Submission validator and writer.

Tasks 1/2: columns ``locale`` (string) and ``next_item_prediction`` (list of strings), one row per
test row in test-file order, each list exactly 100 distinct ids of that row's locale catalogue.
Task 3: ``locale`` and ``next_item_title`` (non-null string). The writer validates first and
writes atomically with pyarrow, so an invalid or half-written file never lands.

    write(frame, path, task, test_locales, catalogue)            # one frame: the whole file
    write_pieces(frames, path, task, test_locales, catalogue)    # consecutive test rows, piece by piece

Both write row groups of ``ROW_GROUP_ROWS`` rows (a file up to that size is one row group, as
``pq.write_table`` writes it), so the same rows give the same bytes however they arrive, and
``write_pieces`` holds at most one row group and one piece: the Dask predict path assembles a
submission from the parts its workers wrote without holding the whole file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from core import raw
from core.errors import StageError
from core.io import atomic_path

N_PREDICTIONS = 100
COLUMNS = {1: ("locale", "next_item_prediction"), 2: ("locale", "next_item_prediction"),
           3: ("locale", "next_item_title")}
# Rows per parquet row group: what a writer holds before writing. A file up to this size is one row
# group, as pq.write_table wrote every file before (the default synthetic run's largest: 6,339 rows).
ROW_GROUP_ROWS = 1 << 14


class SubmissionError(StageError, ValueError):
    """The submission would be rejected; the message says which row and why."""


def submission_path(out_dir: str | Path, task: int, phase: int) -> Path:
    return Path(out_dir) / f"task{task}_phase{phase}.parquet"


def load_test_locales(raw_dir: str | Path, task: int, phase: int) -> pl.Series:
    """The locale of every test row, in file order: what a submission must match row by row."""
    frame, _ = raw.read_sessions(Path(raw_dir) / raw.test_file(task, phase), with_target=False)
    return frame["locale"]


def load_catalogue(raw_dir: str | Path) -> pl.DataFrame:
    """(id, locale) pairs of products_train.csv: the ids a task 1/2 prediction may use."""
    products, _ = raw.read_products(Path(raw_dir) / "products_train.csv", on_error="skip")
    return products.select("id", "locale")


def _fail(name: str, row: int | None, message: str) -> None:
    where = f"{name}" + (f" row {row}" if row is not None else "")
    raise SubmissionError(f"{where}: {message}")


def validate(frame: pl.DataFrame, task: int, test_locales: pl.Series, catalogue: pl.DataFrame | None,
             name: str = "submission") -> None:
    """Raise SubmissionError on the first problem found; ``catalogue`` is needed for tasks 1/2."""
    _check_columns(frame, task, name)
    if frame.height != len(test_locales):
        _fail(name, None, f"{frame.height} rows, the test file has {len(test_locales)}")
    _validate_rows(frame, task, test_locales, catalogue, name, 0)


def _check_columns(frame: pl.DataFrame, task: int, name: str) -> None:
    expected = COLUMNS[task]
    if tuple(frame.columns) != expected:
        _fail(name, None, f"columns {frame.columns}, expected exactly {list(expected)}")


def _validate_rows(frame: pl.DataFrame, task: int, test_locales: pl.Series, catalogue: pl.DataFrame | None,
                   name: str, offset: int) -> None:
    """:func:`validate` past the column and row-count checks: ``frame`` holds the test rows ``offset``,
    ``offset + 1``, ... (their locales ``test_locales``); errors name the row in the whole file."""
    if frame.schema["locale"] != pl.String:
        _fail(name, None, f"column 'locale' is {frame.schema['locale']}, expected String")
    rows = frame.with_row_index("_row", offset=offset).with_columns(
        _expected=test_locales.alias("_expected"))
    wrong_locale = rows.filter(pl.col("locale").is_null() | (pl.col("locale") != pl.col("_expected")))
    if wrong_locale.height:
        first = wrong_locale.row(0, named=True)
        _fail(name, first["_row"], f"locale {first['locale']!r} but the test row is {first['_expected']!r} "
              f"({wrong_locale.height} rows differ: wrong order or wrong rows)")
    if task == 3:
        if frame.schema["next_item_title"] != pl.String:
            _fail(name, None,
                  f"column 'next_item_title' is {frame.schema['next_item_title']}, expected String")
        nulls = rows.filter(pl.col("next_item_title").is_null())
        if nulls.height:
            _fail(name, nulls["_row"][0], f"null title ({nulls.height} rows)")
        return
    if frame.schema["next_item_prediction"] != pl.List(pl.String):
        _fail(name, None, f"column 'next_item_prediction' is {frame.schema['next_item_prediction']}, "
              "expected List(String)")
    sizes = rows.select("_row", n=pl.col("next_item_prediction").list.len(),
                        distinct=pl.col("next_item_prediction").list.n_unique())
    bad = sizes.filter(pl.col("n").is_null() | (pl.col("n") != N_PREDICTIONS))
    if bad.height:
        _fail(name, bad["_row"][0],
              f"{bad['n'][0]} predictions, expected exactly {N_PREDICTIONS} ({bad.height} rows)")
    dup = sizes.filter(pl.col("distinct") != pl.col("n"))
    if dup.height:
        _fail(name, dup["_row"][0], f"duplicate ids in the prediction list ({dup.height} rows)")
    long = (rows.select("_row", "locale", "next_item_prediction")
            .explode("next_item_prediction", empty_as_null=True))
    nulls = long.filter(pl.col("next_item_prediction").is_null())
    if nulls.height:
        _fail(name, nulls["_row"][0], "null id in the prediction list")
    if catalogue is None:
        raise ValueError("a catalogue is needed to validate a task 1/2 submission")
    outside = long.join(catalogue.rename({"id": "next_item_prediction"}),
                        on=["next_item_prediction", "locale"],
                        how="anti")
    if outside.height:
        first = outside.row(0, named=True)
        _fail(name, first["_row"],
              f"id {first['next_item_prediction']!r} is not in the {first['locale']} catalogue "
              f"({outside.height} such ids)")


def write(frame: pl.DataFrame, path: str | Path, task: int, test_locales: pl.Series,
          catalogue: pl.DataFrame | None, row_group_rows: int | None = None) -> None:
    """Validate, then write ``frame`` to ``path`` atomically with pyarrow."""
    validate(frame, task, test_locales, catalogue, name=str(path))
    _write_rows([frame], path, row_group_rows)


def write_pieces(frames: Iterable[pl.DataFrame], path: str | Path, task: int, test_locales: pl.Series,
                 catalogue: pl.DataFrame | None, row_group_rows: int | None = None) -> int:
    """:func:`write` of the concatenation of ``frames`` (consecutive test rows, in file order), each
    validated as it arrives: the same checks, the same bytes, at most one row group and one piece held.
    The file lands only if every piece passed and they held exactly the test file's rows; the rows."""
    name, n = str(path), len(test_locales)
    written = 0

    def checked() -> Iterator[pl.DataFrame]:
        nonlocal written
        for frame in frames:
            _check_columns(frame, task, name)
            if written + frame.height > n:
                _fail(name, None, f"more than {n} rows, the test file has {n}")
            _validate_rows(frame, task, test_locales.slice(written, frame.height), catalogue, name, written)
            written += frame.height
            yield frame
        if written != n:
            _fail(name, None, f"{written} rows, the test file has {n}")

    _write_rows(checked(), path, row_group_rows)
    return written


def _write_rows(frames: Iterable[pl.DataFrame], path: str | Path, row_group_rows: int | None) -> None:
    """``frames`` (one schema) into ``path`` atomically, in row groups of ``row_group_rows`` rows (default
    ROW_GROUP_ROWS; the last one shorter); a frame that is one whole row group goes to pyarrow as it is
    (as pq.write_table)."""
    row_group_rows = ROW_GROUP_ROWS if row_group_rows is None else row_group_rows
    with atomic_path(path) as tmp:
        writer: pq.ParquetWriter | None = None

        def put(block: pl.DataFrame) -> None:
            nonlocal writer
            table = block.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)

        held: list[pl.DataFrame] = []
        try:
            for frame in frames:
                held.append(frame)
                while sum(f.height for f in held) >= row_group_rows:
                    block = held[0] if len(held) == 1 else pl.concat(held).rechunk()
                    put(block.slice(0, row_group_rows).rechunk() if block.height > row_group_rows else block)
                    held = [block.slice(row_group_rows)] if block.height > row_group_rows else []
            if held:  # the last, short row group (or a frame of no rows: the file gets its schema)
                put(held[0] if len(held) == 1 else pl.concat(held).rechunk())
            elif writer is None:
                raise ValueError(f"{path}: no frame to write")
        finally:
            if writer is not None:
                writer.close()


def read(path: str | Path) -> pl.DataFrame:
    """Read a submission written by any pipeline (pyarrow types normalised to polars String)."""
    table = pq.read_table(path)
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame):
        raise SubmissionError(f"{path}: not a table")
    casts = {}
    for column, dtype in frame.schema.items():
        if dtype == pl.Categorical:
            casts[column] = pl.String
        elif isinstance(dtype, pl.List) and dtype.inner == pl.Categorical:
            casts[column] = pl.List(pl.String)
    return frame.cast(casts) if casts else frame
