"""docs/*.md and the README's measured block are what ``python -m benchmarks.render`` renders from
benchmarks/results/*.json: a figure edited by hand, or a record changed without re-rendering, fails here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import render
from tests.conftest import REPO


def _copy_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    docs, results, readme = tmp_path / "docs", tmp_path / "results", tmp_path / "README.md"
    shutil.copytree(REPO / "docs", docs)
    shutil.copytree(REPO / "benchmarks" / "results", results)
    shutil.copy(REPO / "README.md", readme)
    return docs, results, readme


def test_committed_docs_match_the_records() -> None:
    assert render.stale() == []


def test_every_record_has_a_page() -> None:
    rendered = {source for page in render.PAGES for source in page.sources}
    records = {path.name for path in (REPO / "benchmarks" / "results").glob("*.json")}
    assert records <= rendered, f"records no page renders: {sorted(records - rendered)}"


def test_readme_links_every_page() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for page in render.PAGES:
        assert f"docs/{page.name}" in readme, page.name


def test_planted_stale_figure_in_a_doc_fails(tmp_path: Path) -> None:
    docs, results, readme = _copy_tree(tmp_path)
    assert render.stale(docs, readme, results) == []
    page = docs / "scale.md"
    run = render.default_run(json.loads((results / "scale.json").read_text())["runs"])
    figure = render.num(run["total_wall_s"])
    text = page.read_text()
    assert figure in text
    page.write_text(text.replace(figure, render.num(run["total_wall_s"] + 100.0), 1))
    assert render.stale(docs, readme, results) == [f"{page}: differs from its records"]


def test_planted_stale_headline_in_the_readme_fails(tmp_path: Path) -> None:
    docs, results, readme = _copy_tree(tmp_path)
    headline = render.headlines(results)["default_task1_phase1"]
    text = readme.read_text()
    assert f"MRR@100 {headline}" in text
    readme.write_text(text.replace(f"MRR@100 {headline}", "MRR@100 0.4423", 1))
    assert render.stale(docs, readme, results) == [f"{readme}: the measured block differs from the records"]


def test_a_changed_record_makes_its_page_stale(tmp_path: Path) -> None:
    docs, results, readme = _copy_tree(tmp_path)
    record = json.loads((results / "distributed.json").read_text())
    record["runs"][0]["wall_s"] += 1.0
    (results / "distributed.json").write_text(json.dumps(record))
    assert render.stale(docs, readme, results) == [f"{docs / 'distributed.md'}: differs from its records"]


ENCODER_RUN = {
    "label": "gru4rec_default",
    "model": "gru4rec",
    "overrides": {"epochs": 8},
    "valid": {"mrr@100": 0.3214, "recall@100": 0.61, "n": 6000},
    "valid_task2": {"mrr@100": 0.3446, "recall@100": 0.63, "n": 700},
    "task2_phase1": {"mrr@100": 0.2195, "recall@100": 0.52, "n": 694},
    "train_s": 83.5,
    "epochs": 8,
    "best_epoch": 7,
    "stopped_by": "epochs",
    "held_out_mrr": [0.1, 0.2],
    "passes_per_item": 12.5,
    "session_passes": 100000,
    "indexed_items": 8000,
    "workspace": "WS",
    "code": "abc1234",
}


def test_encoders_page_only_with_its_record(tmp_path: Path) -> None:
    docs, results, readme = _copy_tree(tmp_path)
    (results / "encoders.json").unlink(missing_ok=True)
    render.write(docs, readme, results)
    assert not (docs / "encoders.md").exists()
    assert render.stale(docs, readme, results) == []
    (results / "encoders.json").write_text(json.dumps({"runs": [ENCODER_RUN]}))
    assert render.stale(docs, readme, results) == [
        f"{docs / 'encoders.md'}: missing",
        f"{docs / 'paper_baselines.md'}: differs from its records",  # its 0.8x bar reads encoders.json
        f"{docs / 'index.md'}: differs from its records",  # the index lists the new page
    ]
    render.write(docs, readme, results)
    page = (docs / "encoders.md").read_text()
    assert ("| gru4rec_default | gru4rec | WS | 0.3214 | 0.3446 | task2_phase1: 0.2195 / 0.5200 | 83.5 "
            "| 7 / 8 | 12.50 |") in page
    (results / "encoders.json").unlink()
    assert render.stale(docs, readme, results) == [
        f"{docs / 'encoders.md'}: should not exist (its records are absent)",
        f"{docs / 'paper_baselines.md'}: differs from its records",
        f"{docs / 'index.md'}: differs from its records",
    ]


@pytest.mark.parametrize(
    "key", ["default_wall_min", "default_peak_gib", "real_task2_phase1", "full_peak_gib"]
)
def test_headlines_come_from_the_records(key: str) -> None:
    assert key in render.headlines(render.RESULTS)
