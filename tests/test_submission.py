import polars as pl
import pyarrow.parquet as pq
import pytest

from core import submission
from core.submission import SubmissionError, validate

CATALOGUE = pl.DataFrame({"id": [f"D{i:03d}" for i in range(150)] + [f"U{i:03d}" for i in range(150)],
                          "locale": ["DE"] * 150 + ["UK"] * 150})
LOCALES = pl.Series(["DE", "UK", "DE"])


def good() -> pl.DataFrame:
    return pl.DataFrame({"locale": ["DE", "UK", "DE"],
                         "next_item_prediction": [[f"D{i:03d}" for i in range(100)],
                                                  [f"U{i:03d}" for i in range(100)],
                                                  [f"D{i:03d}" for i in range(50, 150)]]})


def test_good_submission_passes_and_is_written(tmp_path):
    path = tmp_path / "task1_phase1.parquet"
    submission.write(good(), path, 1, LOCALES, CATALOGUE)
    assert submission.read(path).equals(good())


def _with_list(row: int, ids: list) -> pl.DataFrame:
    frame = good()
    lists = frame["next_item_prediction"].to_list()
    lists[row] = ids
    return frame.with_columns(next_item_prediction=pl.Series(lists, dtype=pl.List(pl.String)))


@pytest.mark.parametrize("bad, message", [
    (lambda: good().head(2), "rows"),
    (lambda: good()[[1, 0, 2]], "locale"),
    (lambda: good().rename({"next_item_prediction": "pred"}), "columns"),
    (lambda: good().select("next_item_prediction", "locale"), "columns"),
    (lambda: good().with_columns(locale=pl.Series(["DE", "DE", "DE"])), "locale"),
    (lambda: _with_list(0, [f"D{i:03d}" for i in range(99)]), "99 predictions"),
    (lambda: _with_list(0, [f"D{i:03d}" for i in range(101)]), "101 predictions"),
    (lambda: _with_list(0, ["D000"] * 100), "duplicate"),
    (lambda: _with_list(0, [f"D{i:03d}" for i in range(99)] + ["U000"]), "not in the DE catalogue"),
    (lambda: _with_list(1, [f"U{i:03d}" for i in range(99)] + [None]), "null"),
    (lambda: good().with_columns(pl.col("locale").cast(pl.Categorical)), "expected String"),
    (lambda: good().with_columns(next_item_prediction=pl.lit("x")), "expected List"),
])
def test_validator_rejects(bad, message):
    with pytest.raises(SubmissionError, match=message):
        validate(bad(), 1, LOCALES, CATALOGUE)


def test_invalid_submission_is_never_written(tmp_path):
    path = tmp_path / "task1_phase1.parquet"
    with pytest.raises(SubmissionError):
        submission.write(good().head(1), path, 1, LOCALES, CATALOGUE)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def _many(n: int) -> tuple[pl.DataFrame, pl.Series]:
    rows = [[f"D{(i + j) % 150:03d}" for j in range(100)] for i in range(n)]
    frame = pl.DataFrame({"locale": ["DE"] * n, "next_item_prediction": rows})
    return frame, frame["locale"]


@pytest.mark.parametrize("row_group_rows", [7, 10, 64, None])
def test_pieces_write_the_same_bytes(tmp_path, row_group_rows):
    """write_pieces (pieces of any size, read back from parquet as the Dask path does) writes write's bytes,
    in row groups of row_group_rows rows (default: one here, as pq.write_table wrote every file)."""
    frame, locales = _many(45)
    whole, pieces = tmp_path / "whole.parquet", tmp_path / "pieces.parquet"
    submission.write(frame, whole, 1, locales, CATALOGUE, row_group_rows)
    for n, (lo, hi) in enumerate([(0, 3), (3, 17), (17, 18), (18, 45)]):
        frame.slice(lo, hi - lo).write_parquet(tmp_path / f"p{n}.parquet")
    got = submission.write_pieces((pl.read_parquet(tmp_path / f"p{n}.parquet") for n in range(4)), pieces, 1,
                                  locales, CATALOGUE, row_group_rows)
    assert got == 45 and pieces.read_bytes() == whole.read_bytes()
    assert pq.ParquetFile(whole).metadata.num_row_groups == -(-45 // (row_group_rows or 45))
    assert submission.read(pieces).equals(frame)
    if row_group_rows is None:
        pq.write_table(frame.to_arrow(), tmp_path / "before.parquet", compression="zstd")
        assert (tmp_path / "before.parquet").read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("pieces, message", [
    (lambda f: [f.head(20), f.slice(20, 10)], "30 rows, the test file has 45"),
    (lambda f: [f, f.head(1)], "more than 45 rows"),
    (lambda f: [f.head(20), f.slice(20).with_columns(locale=pl.lit("UK"))], "row 20: locale 'UK'"),
    (lambda f: [f.head(20), f.slice(20).select("next_item_prediction", "locale")], "columns"),
])
def test_pieces_are_validated_and_never_half_written(tmp_path, pieces, message):
    frame, locales = _many(45)
    path = tmp_path / "task1_phase1.parquet"
    with pytest.raises(SubmissionError, match=message):
        submission.write_pieces(iter(pieces(frame)), path, 1, locales, CATALOGUE, 7)
    assert list(tmp_path.iterdir()) == []


def test_task3_needs_non_null_titles():
    frame = pl.DataFrame({"locale": ["DE", "UK"], "next_item_title": ["a", None]})
    with pytest.raises(SubmissionError, match="null title"):
        validate(frame, 3, pl.Series(["DE", "UK"]), None)
    validate(frame.with_columns(pl.col("next_item_title").fill_null("b")), 3, pl.Series(["DE", "UK"]), None)


def test_score_names_a_method_by_its_folder(tmp_path):
    from pipeline.score import PUBLISHED, find_submissions

    for folder in (".", "ranker", "sources/source_sknn"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "task1_phase1.parquet").write_bytes(b"")
    assert [m for m, *_ in find_submissions(tmp_path)] == ["ranker", "source_sknn", PUBLISHED]
    (tmp_path / "other" / "source_sknn").mkdir(parents=True)
    (tmp_path / "other" / "source_sknn" / "task1_phase1.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="source_sknn"):
        find_submissions(tmp_path)
