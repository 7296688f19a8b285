"""The dirty-input corpus (tests/dirty/): every damage ends in a clear error or a counted skip."""

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.raw import RawDataError, format_prev_items, parse_prev_items, read_products, read_sessions
from pipeline import prepare

DIRTY = Path(__file__).parent / "dirty"

# file -> (line, field) of the error in "raise" mode, and the number of records "skip" drops
# (None: the damage is structural, the file cannot be read, so skipping is not an option).
ERRORS = {
    "prev_missing_bracket.csv": (3, "prev_items", 1),
    "prev_unbalanced_quote.csv": (3, "prev_items", 1),
    "prev_commas.csv": (3, "prev_items", 1),
    "missing_column.csv": (1, "next_item", None),
    "misspelt_column.csv": (1, "next_item", None),
    "unknown_locale.csv": (3, "locale", 1),
    "empty_next_item.csv": (3, "next_item", 1),
    "truncated_last_line.csv": (3, "prev_items", None),
    "extra_field.csv": (3, None, None),
    "not_utf8.csv": (3, "prev_items", None),
}
PRODUCT_ERRORS = {
    "products_bad_price.csv": (3, "price", 1),
    "products_duplicate_id.csv": (5, "id", 1),
    "products_empty_id.csv": (3, "id", 1),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_session_damage_names_file_line_field(name):
    line, field, skipped = ERRORS[name]
    with pytest.raises(RawDataError) as err:
        read_sessions(DIRTY / name, with_target=True)
    assert err.value.line == line and err.value.field == field
    assert name in str(err.value) and f":{line}" in str(err.value)
    if skipped is None:
        with pytest.raises(RawDataError):
            read_sessions(DIRTY / name, with_target=True, on_error="skip")
    else:
        frame, report = read_sessions(DIRTY / name, with_target=True, on_error="skip")
        assert sum(report.skipped.values()) == skipped and frame.height == report.rows_read - skipped


@pytest.mark.parametrize("name", sorted(PRODUCT_ERRORS))
def test_product_damage_names_file_line_field(name):
    line, field, skipped = PRODUCT_ERRORS[name]
    with pytest.raises(RawDataError) as err:
        read_products(DIRTY / name)
    assert (err.value.line, err.value.field) == (line, field)
    frame, report = read_products(DIRTY / name, on_error="skip")
    assert sum(report.skipped.values()) == skipped and frame.height == report.rows_read - skipped


def test_counted_not_dropped():
    frame, report = read_sessions(DIRTY / "prev_empty_array.csv", with_target=True)
    assert frame.height == 2 and report.notes["empty_sessions"] == 1
    frame, report = read_sessions(DIRTY / "duplicated_rows.csv", with_target=True)
    assert frame.height == 2 and report.notes["duplicate_rows"] == 1
    frame, report = read_products(DIRTY / "products_empty_title.csv")
    assert frame.height == 3 and report.notes["empty_title"] == 1


def test_crlf_and_bom_read_like_clean_files():
    frame, _ = read_sessions(DIRTY / "crlf.csv", with_target=True)
    assert frame["prev_items"].to_list() == [["A1", "B1", "D1"], ["A1"]]
    assert frame["locale"].to_list() == ["DE", "UK"] and frame["next_item"].to_list() == ["C1", "C1"]
    frame, _ = read_sessions(DIRTY / "bom.csv", with_target=True)
    assert frame.columns == ["row", "prev_items", "locale", "next_item"] and frame.height == 1


def test_ids_missing_from_catalogue_are_counted():
    products, _ = read_products(DIRTY / "products_clean.csv")
    train, _ = read_sessions(DIRTY / "id_not_in_catalogue.csv", with_target=True)
    out = prepare.prepare(products, train, {})
    assert out.report["datasets"]["train"]["next_items_missing_from_catalogue"] == 1
    assert out.targets.height == 2


ASIN = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=10, max_size=10)


@settings(max_examples=200, deadline=None)
@given(st.lists(ASIN, max_size=60))
def test_prev_items_round_trip(ids):
    parsed, malformed = parse_prev_items(pl.Series([format_prev_items(ids)]))
    assert not malformed[0]
    assert parsed[0].to_list() == ids


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(ASIN, min_size=1, max_size=40), min_size=1, max_size=5))
def test_prev_items_round_trip_through_csv(tmp_path_factory, sessions):
    import csv

    path = tmp_path_factory.mktemp("rt") / "sessions_test_task1_phase1.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prev_items", "locale"])
        writer.writerows([format_prev_items(s), "DE"] for s in sessions)
    frame, _ = read_sessions(path, with_target=False)
    assert frame["prev_items"].to_list() == sessions
