from pathlib import Path

import polars as pl
import pytest

from core import raw
from core.raw import RawDataError, parse_prev_items, read_products, read_sessions


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_products_sample_parses_awkward_fields(sample_dir):
    products, report = read_products(sample_dir / "products_train.csv")
    assert products.columns == list(raw.PRODUCT_COLUMNS)
    assert products.height == 12 and report.rows_kept == 12
    assert products.schema["price"] == pl.Float64
    # ids that look like numbers keep their leading zeros
    assert "0140449264" in products["id"].to_list()
    # a description spanning two lines, a title with embedded quotes and commas
    desc = products.filter(pl.col("id") == "B09M7GY217")["desc"][0]
    assert desc == "Schutzglas\nmit Installationsrahmen"
    assert products.filter(pl.col("id") == "0140449264")["desc"][0] == 'A "classic" tale, retold.'
    # empty price -> null, the same id in two locales with two titles
    assert products.filter(pl.col("id") == "B00CWNMV4G")["price"][0] is None
    assert products.filter(pl.col("id") == "B07XJ8C8F5").height == 2


def test_sessions_sample_parses_wrapped_arrays(sample_dir):
    train, report = read_sessions(sample_dir / "sessions_train.csv", with_target=True)
    assert train["prev_items"].list.len().to_list() == [2, 7, 1, 11, 1]
    assert train["prev_items"][1].to_list()[-1] == "3492232574"
    assert train["next_item"].to_list()[0] == "B09M7GY217"
    test, _ = read_sessions(sample_dir / "sessions_test_task1_phase1.csv", with_target=False)
    assert test["prev_items"][1].to_list() == ["B07XJ8C8F5", "B07XJ8C8F5", "0140449264", "B08N5WRWNW",
                                               "B00CWNMV4G", "B07XJ8C8F5"]
    assert test["row"].to_list() == [0, 1, 2]


@pytest.mark.parametrize(
    "value, ok",
    [("['A']", True), ("['A' 'B']", True), ("['A' 'B'\n 'C']", True), ("[]", True),
     ("['A', 'B']", False), ("['A' 'B'", False), ("'A' 'B']", False), ("['A' B]", False), ("", False)],
)
def test_parse_prev_items_accepts_only_the_numpy_repr(value, ok):
    _, malformed = parse_prev_items(pl.Series([value]))
    assert malformed[0] is (not ok)


def test_malformed_record_names_file_line_and_field(tmp_path):
    path = write(tmp_path / "sessions_train.csv",
                 "prev_items,next_item,locale\n"
                 "\"['A' 'B'\n 'C']\",D,DE\n"
                 "\"['A', 'B']\",C,DE\n")
    with pytest.raises(RawDataError) as err:
        read_sessions(path, with_target=True)
    assert err.value.line == 4 and err.value.field == "prev_items"
    assert "sessions_train.csv:4" in str(err.value)


def test_skip_policy_counts_what_it_drops(tmp_path):
    path = write(tmp_path / "sessions_train.csv",
                 "prev_items,next_item,locale\n['A'],B,DE\n\"['A', 'B']\",C,DE\n['X'],Y,XX\n['Q'],R,UK\n")
    frame, report = read_sessions(path, with_target=True, on_error="skip")
    assert frame.height == 2
    assert sum(report.skipped.values()) == 2
    assert report.rows_read == 4 and report.rows_kept == 2


def test_test_files_never_skip(tmp_path):
    path = write(tmp_path / "sessions_test_task1_phase1.csv", "prev_items,locale\n['A'],DE\n['A' 'B',DE\n")
    with pytest.raises(RawDataError):
        read_sessions(path, with_target=False, on_error="skip")


def test_missing_column_and_bad_price(tmp_path):
    with pytest.raises(RawDataError, match="missing column"):
        read_sessions(write(tmp_path / "s.csv", "prev_items,locale\n['A'],DE\n"), with_target=True)
    bad = write(tmp_path / "p.csv", ",".join(raw.PRODUCT_COLUMNS) + "\nA,DE,t,abc,,,,,,,\n")
    with pytest.raises(RawDataError) as err:
        read_products(bad)
    assert err.value.field == "price" and err.value.line == 2


def test_ragged_record_is_located(tmp_path):
    path = write(tmp_path / "t.csv", "prev_items,locale\n['A'],DE\n['A', 'B'],DE\n")
    with pytest.raises(RawDataError) as err:
        read_sessions(path, with_target=False)
    assert err.value.line == 3 and "3 fields" in str(err.value)


def test_empty_session_is_kept_and_counted(tmp_path):
    frame, report = read_sessions(write(tmp_path / "t.csv", "prev_items,locale\n[],DE\n['A'],DE\n"),
                                  with_target=False)
    assert frame.height == 2 and report.notes["empty_sessions"] == 1
