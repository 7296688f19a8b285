"""A catalogue without text, as the real files in ../shared/amazon_m2_real ship it: placeholder titles
(``Product <id>``), no price, brand or colour, and ground truth for phase 1 of tasks 1-2 only.

Titles are read as missing (counted), so the text source proposes nothing, the attribute features
are null, Task 3 runs to valid submissions of empty titles, and the score stage lists what it
cannot score instead of skipping it. On the synthetic world (real titles) nothing of this fires.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from candidates.text import TitleSimilarity
from core import raw, submission
from features.assemble import add_features, fit_families
from features.base import FeaturesConfig
from pipeline import synthetic
from tests import _features_world as world
from tests._params import section, source_config, synthetic_config
from tests.conftest import REPO, SEED, TINY_SCALE

ATTRIBUTES = [c for c in raw.PRODUCT_COLUMNS if c not in ("id", "locale", "title")]
KEPT_GT = ("gt_task1_phase1.csv", "gt_task2_phase1.csv")


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", *args], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result


def strip_catalogue(raw_dir: Path) -> int:
    """Rewrite products_train.csv the way the real release has it; returns the number of products."""
    products = pl.read_csv(raw_dir / "products_train.csv", infer_schema=False)
    products = products.with_columns(title=pl.lit("Product ") + pl.col("id"),
                                     **{c: pl.lit(None, dtype=pl.String) for c in ATTRIBUTES})
    products.write_csv(raw_dir / "products_train.csv")
    for path in (raw_dir / "gt").iterdir():
        if path.name not in KEPT_GT:
            path.unlink()
    return products.height


@pytest.fixture(scope="module")
def untitled(tmp_path_factory) -> tuple[Path, int]:
    """A scratch project: the tiny synthetic world with the catalogue stripped, through the stages."""
    project = tmp_path_factory.mktemp("untitled")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["publish"] = {"task1": "popularity", "task2": "popularity", "task3": "task3_chooser"}
    params["task3"]["chooser"]["n_estimators"] = 20
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    raw_dir = project / "data" / "raw"
    synthetic.generate(raw_dir, scale=TINY_SCALE, seed=SEED, cfg=synthetic_config())
    n_products = strip_catalogue(raw_dir)
    _run(project, "pipeline.prepare", "--raw", "data/raw", "--out", "data/prepared", "--report",
         "metrics/prepare.json")
    _run(project, "pipeline.split", "--prepared", "data/prepared", "--out", "data/split")
    _run(project, "pipeline.baseline", "--prepared", "data/prepared", "--splitdir", "data/split", "--raw",
         "data/raw",
         "--out", "submissions")
    _run(project, "pipeline.task3", "--prepared", "data/prepared", "--splitdir", "data/split", "--raw",
         "data/raw",
         "--out", "submissions", "--metrics", "metrics/task3_valid.json")
    _run(project, "pipeline.task3_mt5", "--prepared", "data/prepared", "--splitdir", "data/split", "--raw",
         "data/raw",
         "--model", "models/task3_mt5", "--out", "submissions", "--metrics", "metrics/task3_mt5.json")
    _run(project, "pipeline.publish", "--submissions", "submissions", "--raw", "data/raw")
    _run(project, "pipeline.score", "--submissions", "submissions", "--gt", "data/raw/gt",
         "--out", "metrics/leaderboard.json", "--table", "metrics/leaderboard.md")
    return project, n_products


def test_placeholder_titles_and_empty_attributes_are_missing_and_counted(untitled):
    project, n = untitled
    report = json.loads((project / "metrics" / "prepare.json").read_text())["files"]["products_train.csv"]
    assert report["placeholder_title"] == report["empty_title"] == n
    assert all(report[f"empty_{c}"] == n for c in ("price", "brand", "color"))
    items = pl.read_parquet(project / "data" / "prepared" / "items.parquet")
    assert items["title"].null_count() == items.height and items["price"].null_count() == items.height


def test_text_source_proposes_nothing_without_titles(untitled):
    project, _ = untitled
    items = pl.read_parquet(project / "data" / "prepared" / "items.parquet")
    history = pl.read_parquet(project / "data" / "split" / "valid" / "history.parquet")
    queries = pl.read_parquet(project / "data" / "split" / "valid" / "queries.parquet")
    source = TitleSimilarity(source_config("text", weighting="lift")).fit(history, items)
    sessions = history.join(queries.select("session", "locale"), on="session")
    assert source.generate(sessions, 50).height == 0


def test_attribute_features_are_null_without_attributes():
    items = world.items().with_columns(title=pl.lit(None, dtype=pl.String),
                                       **{c: pl.lit(None, dtype=pl.String)
                                          for c in ("brand", "color", "model")},
                                       price=pl.lit(None, dtype=pl.Float64))
    inputs = dataclasses.replace(world.inputs(), items=items)
    cfg = section(FeaturesConfig, "features", chunk_sessions=1, covisit_window=3, last_k=3, prefix_chars=5,
                  deep_models={})
    frame = add_features(world.union(), world.chunk(), fit_families(inputs, cfg), cfg)
    attribute_features = [c for c in frame.columns
                          if any(w in c for w in ("price", "brand", "color", "model"))
                          and c != "si_brand_in_session"]  # a count: no item shares a missing brand
    assert len(attribute_features) >= 15
    assert all(frame[c].null_count() == frame.height for c in attribute_features), \
        {c: frame[c].null_count() for c in attribute_features}
    assert (frame["si_brand_in_session"] == 0).all()


def test_task3_runs_to_valid_empty_titles(untitled):
    project, _ = untitled
    raw_dir = project / "data" / "raw"
    for method in ("task3_chooser", "last_title", "task3_mt5", "task3_mt5_fallback", "."):
        for phase in raw.PHASES:
            frame = submission.read(project / "submissions" / method / f"task3_phase{phase}.parquet")
            submission.validate(frame, 3, submission.load_test_locales(raw_dir, 3, phase), None)
            assert (frame["next_item_title"] == "").all()
    for name in ("task3_valid.json", "task3_mt5.json"):
        assert json.loads((project / "metrics" / name).read_text())["skipped"] == "no titles"


def test_leaderboard_lists_what_it_cannot_score(untitled):
    project, _ = untitled
    board = json.loads((project / "metrics" / "leaderboard.json").read_text())
    assert set(board) == {"task1_phase1", "task2_phase1", "unscored"}
    unscored = board["unscored"]
    assert set(unscored) == {"task1_phase2", "task2_phase2", "task3_phase1", "task3_phase2"}
    assert unscored["task2_phase2"]["reason"] == "no ground truth"
    assert unscored["task3_phase1"]["reason"] == "no ground truth; no titles (every submitted title is empty)"
    assert {"submission", "popularity"} <= set(unscored["task2_phase2"]["methods"])
    table = (project / "metrics" / "leaderboard.md").read_text()
    assert "### not scored" in table and "| task3_phase2 | no ground truth; no titles" in table


def test_synthetic_titles_are_not_placeholders(tiny_world):
    products, report = raw.read_products(tiny_world.raw / "products_train.csv")
    assert report.notes["placeholder_title"] == 0
    assert report.notes["empty_title"] == products["title"].null_count() == 0
