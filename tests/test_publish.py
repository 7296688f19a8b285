"""Stage ``publish``: a dataset dropped from data.test_files leaves no published file behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import yaml

from pipeline import publish
from tests.conftest import REPO, SAMPLE

RAW = Path("data") / "raw"


def _titles(n: int) -> pl.DataFrame:
    return pl.DataFrame({"locale": ["DE", "UK", "JP"][:n], "next_item_title": ["a title"] * n})


def test_remove_unlisted_keeps_listed_and_method_files(tmp_path):
    for name in ("task1_phase1", "task3_phase1", "task3_phase2"):
        _titles(3).write_parquet(tmp_path / f"{name}.parquet")
    (tmp_path / "ranker").mkdir()
    _titles(3).write_parquet(tmp_path / "ranker" / "task3_phase2.parquet")  # a method's own file: kept
    removed = publish.remove_unlisted(tmp_path, ["task1_phase1", "task3_phase1"])
    assert removed == [tmp_path / "task3_phase2.parquet"]
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == [
        "task1_phase1.parquet",
        "task3_phase1.parquet",
    ]
    assert (tmp_path / "ranker" / "task3_phase2.parquet").exists()


def test_the_stage_removes_a_published_file_no_longer_listed(tmp_path):
    """As DVC runs it after task1_phase1 left data.test_files: its old submission goes, logged."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["test_files"] = ["task3_phase1"]
    params["publish"] = {"task1": "ranker", "task2": "ranker", "task3": "last_title"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    raw = tmp_path / RAW
    raw.mkdir(parents=True)
    for name in ("products_train.csv", "sessions_train.csv"):
        shutil.copy(SAMPLE / name, raw / name)
    shutil.copy(SAMPLE / "sessions_test_task1_phase1.csv", raw / "sessions_test_task3_phase1.csv")
    subs = tmp_path / "submissions"
    (subs / "last_title").mkdir(parents=True)
    _titles(3).write_parquet(subs / "last_title" / "task3_phase1.parquet")
    stale = subs / "task1_phase1.parquet"
    pl.DataFrame({"locale": ["DE", "UK", "JP"], "next_item_prediction": [["B09W9FND7K"]] * 3}).write_parquet(
        stale
    )

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.publish",
            "--submissions",
            "submissions",
            "--raw",
            "data/raw",
            "--dataset",
            "task3_phase1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not stale.exists()
    assert "removed submissions/task1_phase1.parquet: task1_phase1 is not in data.test_files" in result.stderr
    assert pl.read_parquet(subs / "task3_phase1.parquet")["next_item_title"].to_list() == ["a title"] * 3


def test_publish_reruns_when_test_files_change():
    """The removal runs only if DVC reruns publish when data.test_files changes."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["publish"]["do"]
    assert "data.test_files" in stage["params"]
