import polars as pl
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
