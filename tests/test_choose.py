"""Stage ``choose``: what validation prefers is what gets published, per task and per Task 3 locale."""

from __future__ import annotations

import polars as pl
import pytest
import yaml

from pipeline import choose
from tests.conftest import REPO


def test_ranking_guard_keeps_the_ranker_unless_a_source_beats_it():
    report = {"ranker": {"task1": {"mrr@100": 0.40}, "task2": {"mrr@100": 0.30}},
              "source_covisit_fwd": {"task1": {"mrr@100": 0.35}, "task2": {"mrr@100": 0.31}},
              "source_popularity": {"task1": {"mrr@100": 0.01}}}
    assert choose.ranking_choice(report, 1)["method"] == "ranker"
    two = choose.ranking_choice(report, 2)
    assert two["method"] == "sources/source_covisit_fwd"
    assert two["valid_mrr@100"] == {"ranker": 0.30, "source_covisit_fwd": 0.31}
    # a tie keeps the ranker
    report["source_covisit_fwd"]["task1"]["mrr@100"] = 0.40
    assert choose.ranking_choice(report, 1)["method"] == "ranker"
    with pytest.raises(ValueError, match="no eval figures of the ranker"):
        choose.ranking_choice({"source_x": {"task1": {"mrr@100": 0.1}}}, 1)


def test_task3_choice_takes_the_largest_gain_over_the_last_title_per_locale():
    figures = {"task3_chooser": {"DE": {"bleu": 0.20, "last_title": 0.15, "n": 100},
                                 "UK": {"bleu": 0.10, "last_title": 0.12, "n": 100}},
               "task3_mt5_fallback": {"DE": {"bleu": 0.30, "last_title": 0.28, "n": 50},
                                      "UK": {"bleu": 0.12, "last_title": 0.12, "n": 50}}}
    out = choose.task3_choice(figures, min_gain=0.0)
    assert out["DE"]["method"] == "task3_chooser" and out["DE"]["gain"] == pytest.approx(0.05)
    # every method loses or ties on UK: the last title
    assert out["UK"]["method"] == choose.LAST_TITLE and out["UK"]["gain"] == 0.0
    assert choose.task3_choice(figures, min_gain=0.06)["DE"]["method"] == choose.LAST_TITLE


def test_task3_choice_wants_a_gain_beyond_its_bootstrap_spread():
    """min_z: a gain within min_z standard deviations of zero is not trusted; the next method may be."""
    figures = {"task3_chooser": {"DE": {"bleu": 0.20, "last_title": 0.15, "n": 100, "gain_sd": 0.03}},
               "task3_mt5_fallback": {"DE": {"bleu": 0.18, "last_title": 0.15, "n": 100, "gain_sd": 0.01}}}
    assert choose.task3_choice(figures, 0.0, 1.0)["DE"]["method"] == "task3_chooser"
    assert choose.task3_choice(figures, 0.0, 2.0)["DE"]["method"] == "task3_mt5_fallback"
    assert choose.task3_choice(figures, 0.0, 4.0)["DE"]["method"] == choose.LAST_TITLE
    # figures without a spread (gain_sd absent) count as exact
    del figures["task3_chooser"]["DE"]["gain_sd"]
    assert choose.task3_choice(figures, 0.0, 4.0)["DE"]["method"] == "task3_chooser"


def test_combine_by_locale_takes_each_row_from_its_locales_method():
    locales = ["DE", "UK", "DE", "JP"]
    frames = {name: pl.DataFrame({"locale": locales, "next_item_title": [f"{name}{i}" for i in range(4)]})
              for name in ("last_title", "task3_chooser", "task3_mt5_fallback")}
    out = choose.combine_by_locale(frames, {"DE": "task3_chooser", "UK": "last_title",
                                            "JP": "task3_mt5_fallback"}, "last_title")
    assert out.to_dict(as_series=False) == {"locale": locales, "next_item_title": [
        "task3_chooser0", "last_title1", "task3_chooser2", "task3_mt5_fallback3"]}
    # a locale without a choice keeps the default
    out = choose.combine_by_locale(frames, {"DE": "task3_chooser"}, "last_title")
    assert out["next_item_title"].to_list() == ["task3_chooser0", "last_title1", "task3_chooser2",
                                                "last_title3"]
    frames["task3_chooser"] = frames["task3_chooser"].reverse()
    with pytest.raises(Exception, match="rows differ"):
        choose.combine_by_locale(frames, {"DE": "task3_chooser"}, "last_title")


def test_publish_defaults_to_the_validated_choice():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert {params["publish"][f"task{t}"] for t in (1, 2, 3)} == {"validated"}
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "submissions/validated" in stages["choose"]["outs"][0]
    assert "metrics/publish.json" in [next(iter(m)) for m in stages["choose"]["metrics"]]


def test_task3_gap_sets_each_valid_gain_beside_its_test_gain():
    from pipeline import score

    def bleu(all_: float, de: float, uk: float) -> dict:
        return {"all": {"bleu": all_}, "DE": {"bleu": de}, "UK": {"bleu": uk}}

    de = {"task3_chooser": {"bleu": 0.20, "last_title": 0.15, "n": 300}}
    uk = {"task3_chooser": {"bleu": 0.10, "last_title": 0.12, "n": 100}}
    publish = {"task3": {"per_locale": {"DE": {"method": "task3_chooser", "valid": de},
                                        "UK": {"method": "last_title", "valid": uk}}}}
    valid = {"last_title": 0.14, "chooser": 0.15, "chooser_edited": 0.16, "per_locale": {}}
    board = {"task3_phase1": {"last_title": bleu(0.10, 0.10, 0.10), "task3_chooser": bleu(0.12, 0.13, 0.09),
                              "task3_chooser_plain": bleu(0.11, 0.11, 0.11),
                              "validated": bleu(0.115, 0.13, 0.10)}}
    gap = score.task3_gap(publish, valid, board)
    assert gap["methods"]["task3_chooser"]["valid_gain"] == pytest.approx(2.0)
    assert gap["methods"]["task3_chooser"]["test_gain"] == {"phase1": pytest.approx(2.0)}
    assert gap["methods"]["task3_chooser_plain"]["gap"] == {"phase1": pytest.approx(0.0)}
    assert gap["per_locale"]["DE"] == {"method": "task3_chooser", "valid_gain": pytest.approx(5.0),
                                       "test_gain": {"phase1": pytest.approx(3.0)},
                                       "gap": {"phase1": pytest.approx(2.0)}}
    assert gap["per_locale"]["UK"]["valid_gain"] == 0.0
    # the published file: its locales' valid gains weighted by their sessions (5 x 300 + 0 x 100) / 400
    assert gap["published"]["valid_gain"] == pytest.approx(3.75)
    assert gap["published"]["test_gain"] == {"phase1": pytest.approx(1.5)}
    # no Task 3 ground truth (real data): nothing to compare
    assert score.task3_gap(publish, valid, {}) == {}
