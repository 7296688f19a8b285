"""The data report (stage stats) and the ground-truth probes (stage score) on generated data and on
the real-format sample."""

from __future__ import annotations

import pytest

from pipeline import probes, stats, synthetic
from tests._params import synthetic_config


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("stats") / "raw"
    synthetic.generate(out, 0.002, seed=5, cfg=synthetic_config())
    return out


@pytest.fixture(scope="module")
def generated(raw_dir):
    return stats.compute_stats(raw_dir), probes.compute_probes(raw_dir, raw_dir / "gt")


def test_report_on_generated_data(generated):
    report, found = generated
    loc = report["locales"]
    assert set(loc) == {"all", "DE", "JP", "UK", "ES", "FR", "IT"}
    assert loc["all"]["sessions"] == sum(loc[x]["sessions"] for x in ("DE", "JP", "UK", "ES", "FR", "IT"))
    assert loc["all"]["interactions"] == sum(
        loc[x]["interactions"] for x in ("DE", "JP", "UK", "ES", "FR", "IT")
    )
    assert 0 < loc["all"]["repeat_share"] < 1 and loc["all"]["length_p50"] >= 2
    assert "test_files" not in report  # nothing from gt/: that is the score stage's
    assert report["checks"]["small_overlap_with_de"]["ok"]
    text = stats.format_stats(report)
    assert "Issue-13 checks" in text and "0.308" in text  # DE's Table-2 share of sessions


def test_probes_on_generated_data(generated):
    _, found = generated
    assert set(found["test_files"]) == {"task1_phase1", "task1_phase2", "task2_phase1", "task2_phase2"}
    for f in found["test_files"].values():
        assert f["target_missing_from_catalogue"] == 0
        cov, pop = f["covisitation"]["all"], f["popularity"]["all"]
        assert 0 <= pop["mrr@100"] < cov["mrr@100"] <= cov["recall@100"] <= 1
        assert f["ceiling"]["all"]["mrr@100"] > cov["mrr@100"]  # the oracle beats a plain co-visitation
    assert {"covis_over_popularity_mrr_task1", "covis_recall_task2", "ceiling_over_covis_mrr"} <= set(
        found["checks"]
    )
    assert "task2_phase1" in probes.format_probes(found)


def test_probe_chunks_do_not_change_the_figures(raw_dir, generated, monkeypatch):
    monkeypatch.setattr(probes, "CHUNK_SESSIONS", 7)
    assert probes.compute_probes(raw_dir, raw_dir / "gt") == generated[1]


def test_report_on_the_real_format_sample(sample_dir):
    result = stats.compute_stats(sample_dir)
    assert result["locales"]["all"]["sessions"] == 5
    assert result["locales"]["DE"]["repeat_share"] == 0.5  # one of the two DE sessions repeats
    # the UK and ES train rows' next items (B09M7GY217: DE only; B0BBSNH3YS: FR only) are off-catalogue
    assert result["train_targets_missing_from_catalogue"] == 2
    assert result["overlap"]["ES"]["UK"] == 1.0  # ES's one product is also sold in UK
    found = probes.compute_probes(sample_dir, sample_dir / "gt")
    assert list(found["test_files"]) == ["task1_phase1"]  # only task 1 phase 1 has gt
    f = found["test_files"]["task1_phase1"]
    assert f["sessions"] == 3 and "ceiling" not in f
    # UK's target B09M7GY217 is listed only in the DE catalogue: reported, no crash
    assert f["target_missing_from_catalogue"] == 1
    assert 0 <= f["target_unseen_in_train"] <= 1
    assert "task1_phase1" in probes.format_probes(found)


def test_probes_without_ground_truth(tmp_path, sample_dir):
    found = probes.compute_probes(sample_dir, tmp_path / "no_gt")
    assert found["test_files"] == {} and found["checks"] == {}
    assert "no task-1/2 test file with ground truth" in probes.format_probes(found)
