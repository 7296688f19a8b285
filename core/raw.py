"""Readers for the Amazon-M2 files exactly as the competition ships them.

``prev_items`` is a numpy-array repr, e.g. ``['B09W9FND7K' 'B09JSPLN1M']``, which wraps over several
lines inside a quoted CSV field for long sessions. It is parsed with a regular expression, never
``eval``. Every malformed record raises :class:`RawDataError` naming file, line and field, unless
the caller passes ``on_error="skip"``, in which case it is dropped and counted in the returned
:class:`ReadReport` (logged by the caller). Nothing is dropped silently.

Every stage ``main`` (and the ``m2`` commands) is wrapped in :func:`core.errors.exit_on_error`: a
:class:`RawDataError` ends the process with exit status 1 and one line on stderr,
``error: data/raw/sessions_train.csv:4 field 'prev_items': malformed prev_items array: ...``,
without a traceback (a data error is the user's to fix, not a bug to debug).
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from core.errors import StageError, exit_on_error

log = logging.getLogger(__name__)

LOCALES = ("DE", "JP", "UK", "ES", "FR", "IT")
TASK_LOCALES = {1: ("DE", "JP", "UK"), 2: ("ES", "FR", "IT"), 3: LOCALES}
PRODUCT_COLUMNS = (
    "id",
    "locale",
    "title",
    "price",
    "brand",
    "color",
    "size",
    "model",
    "material",
    "author",
    "desc",
)
TRAIN_COLUMNS = ("prev_items", "next_item", "locale")
TEST_COLUMNS = ("prev_items", "locale")
GT_COLUMNS = {1: ("next_item", "locale"), 2: ("next_item", "locale"), 3: ("next_item_title", "locale")}
TASKS = (1, 2, 3)
PHASES = (1, 2)

_TOKEN = r"'[^'\n]*'"

TEST_DATASETS = tuple(f"task{t}_phase{p}" for t in TASKS for p in PHASES)


def test_file(task: int, phase: int) -> str:
    return f"sessions_test_task{task}_phase{phase}.csv"


def gt_file(task: int, phase: int) -> str:
    return f"gt_task{task}_phase{phase}.csv"


def oracle_file(task: int, phase: int) -> str:
    """Synthetic data only: per ground-truth row, the target's class, related rank and oracle rank."""
    return f"oracle_task{task}_phase{phase}.csv"


# The oracle file's target_class values: the target's relation to the session's hidden state
# (pipeline/synthetic/oracle.py target_classes).
TARGET_CLASSES = ("related_1", "related_2", "related_3+", "variant", "category", "other")


class RawDataError(StageError, ValueError):
    """A malformed record in a raw file; the message names file, line and field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str):
        where = f"{path}" + (f":{line}" if line is not None else "") + (f" field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = str(path), line, field


# Stage mains and m2 commands are wrapped in it: a RawDataError (any StageError) is one line, exit 1.
exit_on_data_error = exit_on_error


@dataclass
class ReadReport:
    """What a reader kept and what it skipped, by reason."""

    path: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "skipped": dict(self.skipped),
            **self.notes,
        }


def format_prev_items(ids: list[str], width: int = 75) -> str:
    """Write ids as numpy prints a string array: ``['A' 'B'`` wrapping at ``width`` with a leading space."""
    lines, current = [], "["
    for i, token in enumerate(f"'{x}'" for x in ids):
        piece = token if i == 0 else " " + token
        if i and len(current) + len(piece) + 1 > width:  # +1 leaves room for the closing bracket
            lines.append(current)
            current = " " + token
        else:
            current += piece
    return "\n".join(lines + [current + "]"])


def _read_csv(path: Path, expected: tuple[str, ...]) -> pl.DataFrame:
    """Read every column as a string, check the header, and add the 1-based line of each record."""
    if not path.exists():
        raise RawDataError(path, None, None, "file not found")
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not head.strip(b"\xef\xbb\xbf \t\r\n"):
        raise RawDataError(path, 1, None, f"empty file (expected a header row {','.join(expected)})")
    try:
        frame = pl.read_csv(
            path, infer_schema=False, quote_char='"', empty_string_is_null=False, encoding="utf8"
        )
    except pl.exceptions.PolarsError as exc:  # unbalanced quote, ragged row, bad encoding
        line, name, reason = _locate_csv_problem(path)
        raise RawDataError(path, line, name, f"not a readable CSV file: {reason or exc}") from exc
    frame = frame.rename({c: c.lstrip("\ufeff").strip() for c in frame.columns})
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise RawDataError(path, 1, missing[0], f"missing column(s) {missing}; header has {frame.columns}")
    frame = frame.select(expected).with_columns(pl.col(pl.String).str.strip_chars_end("\r"))
    # A record spans one line plus the newlines inside its quoted fields.
    newlines = pl.sum_horizontal(pl.col(c).str.count_matches("\n").fill_null(0) for c in expected)
    span = (newlines + 1).cast(pl.Int64)
    frame = frame.with_columns(_line=(span.cum_sum() - span + 2).cast(pl.Int64))
    if frame.height:
        last = frame.tail(1).select("_line", span.alias("span")).row(0)
        _check_last_record(path, expected, *last)
    return frame


def _check_last_record(path: Path, expected: tuple[str, ...], line: int, span: int) -> None:
    """The reader pads a short record with empty fields; a cut download leaves one at the end."""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        start = fh.seek(max(0, size - (1 << 20)))
        tail = fh.read().decode("utf-8", errors="replace")
    lines = tail.rstrip("\r\n").split("\n")
    if start and len(lines) <= span:  # a last record longer than the tail read: nothing to compare
        return
    record = "\n".join(lines[-span:])
    fields = next(csv.reader(io.StringIO(record)), [])
    if len(fields) < len(expected):
        raise RawDataError(
            path,
            line,
            expected[len(fields)] if fields else expected[0],
            f"field missing: the last record has {len(fields)} of the header's {len(expected)} "
            f"fields (truncated last line?)",
        )


def _locate_csv_problem(path: Path) -> tuple[int | None, str | None, str | None]:
    """(line, field, reason) of the first record the CSV reader cannot take (slow path, errors only)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start].decode("utf-8")
        line_start = prefix.rfind("\n") + 1
        records = list(csv.reader(io.StringIO(prefix.lstrip("\ufeff") + "x")))  # x: the field being read
        header = records[0] if records else []
        name = header[len(records[-1]) - 1] if len(records) > 1 and len(records[-1]) <= len(header) else None
        return (
            prefix.count("\n") + 1,
            name,
            f"not UTF-8 (byte {data[exc.start]:#04x} at column {exc.start - len(prefix[:line_start].encode()) + 1})",  # noqa: E501
        )
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader, [])
        start = reader.line_num + 1
        for record in reader:
            if len(record) != len(header):
                last = next(reader, None) is None
                if last and text.count('"') % 2 == 1 and 0 < len(record) <= len(header):
                    return (
                        start,
                        header[len(record) - 1].strip(),
                        "the file ends inside this quoted field (unbalanced quote or truncated last line)",
                    )
                return start, None, f"{len(record)} fields where the header has {len(header)}"
            start = reader.line_num + 1
    except csv.Error as exc:
        return None, None, str(exc)
    return None, None, None


def _fail_or_skip(
    frame: pl.DataFrame,
    bad: pl.Series,
    path: Path,
    field_name: str,
    reason: str,
    on_error: str,
    report: ReadReport,
) -> pl.DataFrame:
    n_bad = int(bad.sum())
    if n_bad == 0:
        return frame
    first = frame.filter(bad).row(0, named=True)
    if on_error == "raise":
        shown = first.get(field_name)
        shown = (shown[:80] + "...") if isinstance(shown, str) and len(shown) > 80 else shown
        raise RawDataError(path, first["_line"], field_name, f"{reason}: {shown!r} ({n_bad} such rows)")
    report.skipped[reason] += n_bad
    log.warning("%s: skipped %d rows: %s (first at line %d)", path, n_bad, reason, first["_line"])
    return frame.filter(~bad)


def parse_prev_items(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Parse numpy-repr id arrays. Returns (list[str] series, bool series marking malformed values)."""
    text = values.str.strip_chars()
    shape_ok = text.str.contains(r"^\[") & text.str.contains(r"\]$")
    leftover = text.str.replace_all(_TOKEN, " ").str.contains(r"^\[\s*\]$")
    malformed = (~(shape_ok & leftover)).fill_null(True)
    ids = text.str.extract_all(_TOKEN).list.eval(pl.element().str.strip_chars("'"))
    return ids, malformed


def _check_locale(frame: pl.DataFrame, path: Path, on_error: str, report: ReadReport) -> pl.DataFrame:
    bad = (~frame["locale"].is_in(LOCALES)).fill_null(True)
    return _fail_or_skip(
        frame, bad, path, "locale", f"unknown locale (expected one of {LOCALES})", on_error, report
    )


def read_products(path: str | Path, on_error: str = "raise") -> tuple[pl.DataFrame, ReadReport]:
    """Read products_train.csv.

    Returns a frame with the 11 product columns (``price`` Float64, empty strings as null) and a
    report. Duplicate (id, locale) keys are an error (or skipped, keeping the first).
    """
    path = Path(path)
    frame = _read_csv(path, PRODUCT_COLUMNS)
    report = ReadReport(str(path), rows_read=frame.height)
    frame = _fail_or_skip(
        frame, frame["id"].str.strip_chars() == "", path, "id", "empty product id", on_error, report
    )
    frame = _check_locale(frame, path, on_error, report)
    price = frame["price"].str.strip_chars().replace("", None).cast(pl.Float64, strict=False)
    bad_price = price.is_null() & (frame["price"].str.strip_chars() != "")
    frame = _fail_or_skip(
        frame.with_columns(_price=price), bad_price, path, "price", "non-numeric price", on_error, report
    )
    dup = frame.select(pl.struct("id", "locale").is_duplicated()).to_series()
    first_dup = frame.select(pl.struct("id", "locale").is_first_distinct()).to_series()
    frame = _fail_or_skip(frame, dup & ~first_dup, path, "id", "duplicate (id, locale)", on_error, report)
    text_cols = [c for c in PRODUCT_COLUMNS if c not in ("id", "locale", "price")]
    frame = frame.with_columns(
        pl.col("id").str.strip_chars(),
        pl.col("_price").alias("price"),
        *[pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in text_cols],
    ).select(PRODUCT_COLUMNS)
    report.rows_kept = frame.height
    # A placeholder title ("Product <id>", what a release without catalogue text ships) is no title:
    # its only word is the id, so text sources and Task 3 would learn from the id itself.
    placeholder = frame["title"].str.strip_chars() == "Product " + frame["id"]
    report.notes["placeholder_title"] = int(placeholder.sum())
    if report.notes["placeholder_title"]:
        log.warning(
            "%s: %d of %d titles are placeholders ('Product <id>'): read as missing",
            path,
            report.notes["placeholder_title"],
            frame.height,
        )
        frame = frame.with_columns(title=pl.when(placeholder).then(None).otherwise(pl.col("title")))
    report.notes["empty_title"] = int(frame["title"].is_null().sum())
    for column in text_cols[1:] + ["price"]:
        report.notes[f"empty_{column}"] = int(frame[column].is_null().sum())
    return frame, report


def read_sessions(
    path: str | Path, with_target: bool, on_error: str = "raise"
) -> tuple[pl.DataFrame, ReadReport]:
    """Read sessions_train.csv (``with_target=True``) or a sessions_test file.

    Returns (row:Int32 0-based record index, prev_items:list[str], locale:str[, next_item:str]).
    Test files never skip rows: a submission needs one row per test record, so a malformed test
    record is always an error. An empty ``prev_items`` array is kept and counted.
    """
    path = Path(path)
    frame = _read_csv(path, TRAIN_COLUMNS if with_target else TEST_COLUMNS)
    frame = frame.with_columns(row=pl.int_range(pl.len(), dtype=pl.Int32))
    report = ReadReport(str(path), rows_read=frame.height)
    policy = on_error if with_target else "raise"
    ids, malformed = parse_prev_items(frame["prev_items"])
    frame = _fail_or_skip(
        frame.with_columns(_ids=ids),
        malformed,
        path,
        "prev_items",
        "malformed prev_items array",
        policy,
        report,
    )
    frame = _check_locale(frame, path, policy, report)
    columns = [pl.col("row"), pl.col("_ids").alias("prev_items"), pl.col("locale")]
    if with_target:
        next_item = frame["next_item"].str.strip_chars().str.strip_chars("'")
        frame = _fail_or_skip(
            frame.with_columns(next_item=next_item),
            next_item == "",
            path,
            "next_item",
            "empty next_item",
            policy,
            report,
        )
        columns.append(pl.col("next_item"))
    frame = frame.select(columns)
    report.rows_kept = frame.height
    report.notes["empty_sessions"] = int((frame["prev_items"].list.len() == 0).sum())
    # Identical records are legitimate (two shoppers can browse alike): kept, but counted.
    report.notes["duplicate_rows"] = frame.height - frame.drop("row").unique().height
    return frame, report


def read_ground_truth(path: str | Path, task: int) -> pl.DataFrame:
    """Read gt_task{T}_phase{P}.csv: (next_item | next_item_title, locale) in test-file order."""
    path = Path(path)
    frame = _read_csv(path, GT_COLUMNS[task])
    report = ReadReport(str(path))
    frame = _check_locale(frame, path, "raise", report)
    return frame.drop("_line")
