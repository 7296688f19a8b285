"""Feature families on a hand-made world whose values are checked by hand (tests/_features_world.py)."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from candidates.columns import source_names
from features import cross_locale, registry
from features.assemble import add_features, assemble_chunks, fit_families
from features.base import FeaturesConfig, covisit_pairs, last_distinct, with_target_flag
from tests import _features_world as world
from tests._params import section

CFG = section(FeaturesConfig, "features", chunk_sessions=1, covisit_window=3, last_k=3, prefix_chars=5,
              deep_models={})


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    state = fit_families(world.inputs(), CFG)
    return add_features(world.union(), world.chunk(), state, CFG)


def row(frame: pl.DataFrame, session: int, item: int) -> dict:
    return frame.filter((pl.col("session") == session) & (pl.col("item") == item)).row(0, named=True)


def test_rows_kept_and_features_named_by_entity(frame):
    assert frame.select("session", "item").rows() == [(3, 2), (3, 3), (4, 5), (4, 6)]
    features = registry.feature_columns(frame.columns)
    assert len(features) == len(set(features)) > 40
    assert all(c.startswith(registry.PREFIXES) for c in features)
    assert "session" not in features and "item" not in features and "n_sources" not in features


def test_source_names_from_columns():
    assert source_names(world.union().columns) == ["cv", "pop"]
    assert source_names(["cand_x_score"]) == []  # a score without a rank is not a source


def test_candidate_family(frame):
    r = row(frame, 4, 5)  # pop scores 5 and 6 in session 4
    assert r["cand_pop_norm"] == pytest.approx(5 / 6)
    assert r["cand_pop_gap"] == pytest.approx(1.0)
    assert r["cand_pop_rank_pct"] == pytest.approx(1.0)
    r = row(frame, 3, 3)  # pop did not propose it: stays missing
    assert r["cand_pop_norm"] is None and r["cand_cv_norm"] == pytest.approx(0.5)


def test_session_family(frame):
    r = row(frame, 3, 2)  # [0 0 1], prices 10 10 20
    assert (r["s_length"], r["s_distinct"], r["s_repeats"], r["s_consec_dup"]) == (3, 2, 1, 1)
    assert r["s_price_mean"] == pytest.approx(40 / 3)
    assert (r["s_price_min"], r["s_price_max"], r["s_last_price"]) == (10.0, 20.0, 20.0)
    assert r["s_n_cands"] == 2
    assert row(frame, 3, 2)["s_locale"] != row(frame, 4, 5)["s_locale"]


def test_item_family(frame):
    r = row(frame, 3, 2)
    # DE history: 11 events, item 2 seen twice, both times as a target (3 train targets in DE)
    assert r["i_pop_share"] == pytest.approx(2 / 11)
    assert r["i_next_share"] == pytest.approx(2 / 3)
    assert r["i_next_vs_prev"] == pytest.approx(1.0)
    assert r["i_pop_rank"] == 3  # items 0 and 1 have 4 events each
    assert r["i_brand_share"] == pytest.approx(1 / 4) and r["i_color_share"] == pytest.approx(2 / 4)
    assert r["i_recent_share"] == 0.0  # the recent window is the test sessions: ES only
    assert row(frame, 3, 3)["i_brand_share"] is None  # unknown brand, unknown frequency
    # family AAAAA (items 0, 1: 4 + 4 views) vs BBBBB (item 2 alone)
    assert r["i_family_size"] == 1 and r["i_family_share"] == pytest.approx(1.0)


def test_session_item_family(frame):
    r = row(frame, 3, 2)  # last distinct items: 1 then 0
    assert r["si_cv_last1"] == 2 and r["si_cv_last1_share"] == pytest.approx(2 / 6)
    assert r["si_cv_last2"] == 1 and r["si_cv_last2_share"] == pytest.approx(1 / 5)
    assert r["si_cv_last3"] == 0
    assert r["si_tr_last1"] == 2 and r["si_tr_last1_share"] == pytest.approx(1.0)
    assert r["si_price_diff_last"] == pytest.approx(10.0) and r["si_price_ratio_last"] == pytest.approx(1.5)
    assert r["si_price_ratio_mean"] == pytest.approx(30 / (40 / 3))
    assert (r["si_same_brand_last"], r["si_same_model_last"], r["si_same_prefix_last"]) == (0, 0, 0)
    assert row(frame, 3, 3)["si_cv_last1"] == 1  # session 2 [0 3 1]
    assert row(frame, 4, 5)["si_same_color_last"] == 1  # both red


def test_cross_locale_family(frame):
    # ES session [4] (product 0): DE sessions co-visit product 0 with products 2 (s0) and 3 (s2)
    assert row(frame, 4, 5)["si_xl_cv_last1"] == 1 and row(frame, 4, 6)["si_xl_cv_last1"] == 1
    assert row(frame, 3, 2)["si_xl_cv_last1"] == 0  # the DE session's own locale does not count
    assert row(frame, 4, 5)["i_xl_pop_share"] == pytest.approx(2 / 11)
    assert row(frame, 4, 5)["i_xl_n_locales"] == 2
    # product transitions pooled over locales, from product 0: -> 1 twice (s0, s3), -> 3 once (s2)
    assert row(frame, 4, 6)["si_xl_tr_last1"] == 1
    assert row(frame, 4, 6)["si_xl_tr_last1_share"] == pytest.approx(1 / 3)
    assert row(frame, 4, 5)["si_xl_tr_last1"] == 0


def test_helpers():
    events = pl.DataFrame({"session": [1, 1, 1, 1], "position": [0, 1, 2, 3], "item": [5, 6, 6, 5]},
                          schema={"session": pl.Int32, "position": pl.Int32, "item": pl.Int32})
    assert last_distinct(events, 3).rows() == [(1, 1, 5), (1, 2, 6)]
    pairs = covisit_pairs(events, 1).collect().sort("src", "dst")
    assert pairs.rows() == [(5, 6, 1), (6, 5, 1)]  # once per session, self pairs dropped
    flagged = with_target_flag(world.history(), world.sessions())
    assert flagged.filter("is_target").select("session", "item").rows() == [(0, 2), (1, 2), (2, 1)]


def test_chunked_equals_unchunked():
    state = fit_families(world.inputs(), CFG)
    union = world.union()
    chunked = pl.concat(assemble_chunks(union.lazy(), world.queries(), world.chunk().events, state, CFG))
    whole = pl.concat(assemble_chunks(union.lazy(), world.queries(), world.chunk().events, state,
                                      dataclasses.replace(CFG, chunk_sessions=1000)))
    assert chunked.equals(whole)


def test_features_leave_out_unfitted_families():
    state = fit_families(world.inputs(), CFG, families=("session",))
    out = add_features(world.union(), world.chunk(), state, CFG)
    assert not any(c.startswith(("i_", "si_")) for c in out.columns)


def test_cross_locale_item_table_sums_the_other_locales():
    # product 0 listed in DE, UK, ES and FR, seen 5 / 3 / 1 / 0 times; product 1 (FR only) 4 times
    products = pl.DataFrame({"item": [0, 1, 2, 3, 4], "product": [0, 0, 0, 0, 1],
                             "locale": ["DE", "UK", "ES", "FR", "FR"]},
                            schema={"item": pl.Int32, "product": pl.Int32, "locale": pl.String})
    counts = pl.DataFrame({"product": [0, 0, 0, 1], "locale": ["DE", "UK", "ES", "FR"], "n": [5, 3, 1, 4]},
                          schema={"product": pl.Int32, "locale": pl.String, "n": pl.UInt32})
    items = products.with_columns(in_catalog=pl.lit(True))
    table = cross_locale.item_table(products, counts, items).sort("item")
    # n_other / every other locale's events: DE 4 / 8, UK 6 / 10, ES 8 / 12, FR 9 / 9; product 1: 0 / 9
    assert table["i_xl_pop_share"].to_list() == pytest.approx([4 / 8, 6 / 10, 8 / 12, 9 / 9, 0 / 9])
    assert table["i_xl_n_locales"].to_list() == [4, 4, 4, 4, 1]
