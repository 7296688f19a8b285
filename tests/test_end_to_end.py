"""The foundation stages, run as DVC runs them (python -m ...), on a tiny generated world."""

import json
import subprocess
import sys

import polars as pl
import yaml

from core import submission
from tests.conftest import TINY_SCALE


def run(project, *args):
    result = subprocess.run([sys.executable, "-m", *args], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_foundation_stages_end_to_end(project_dir):
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    params["data"]["scale"] = TINY_SCALE
    params["publish"] = {"task1": "popularity", "task2": "popularity", "task3": "last_title"}
    (project_dir / "params.yaml").write_text(yaml.safe_dump(params))
    run(project_dir, "pipeline.generate", "--out", "data/raw")
    run(project_dir, "pipeline.prepare", "--raw", "data/raw", "--out", "data/prepared", "--report",
        "metrics/prepare.json")
    run(project_dir, "pipeline.split", "--prepared", "data/prepared", "--out", "data/split")
    run(project_dir, "pipeline.baseline", "--prepared", "data/prepared", "--splitdir", "data/split",
        "--raw", "data/raw", "--out", "submissions")
    run(project_dir, "pipeline.publish", "--submissions", "submissions", "--raw", "data/raw")
    out = run(project_dir, "pipeline.score", "--submissions", "submissions", "--gt", "data/raw/gt",
              "--out", "metrics/leaderboard.json", "--table", "metrics/leaderboard.md")
    raw = project_dir / "data" / "raw"
    catalogue = submission.load_catalogue(raw)
    for task in (1, 2, 3):
        for phase in (1, 2):
            path = project_dir / "submissions" / f"task{task}_phase{phase}.parquet"
            frame = submission.read(path)
            submission.validate(frame, task, submission.load_test_locales(raw, task, phase),
                                catalogue if task != 3 else None)
    board = json.loads((project_dir / "metrics" / "leaderboard.json").read_text())
    assert set(board) == {f"task{t}_phase{p}" for t in (1, 2, 3) for p in (1, 2)}
    top = board["task1_phase1"]["submission"]["all"]
    assert 0.0 <= top["mrr@100"] <= top["recall@100"] <= 1.0
    assert 0.0 < top["share_of_ceiling"] < 1.0
    assert "bleu" in board["task3_phase1"]["submission"]["all"]
    assert "task1_phase1" in out.stdout
    # popularity never proposes a session's own items
    prepared = project_dir / "data" / "prepared"
    sessions = pl.read_parquet(prepared / "sessions.parquet").filter(pl.col("dataset") == "task1_phase1")
    events = pl.read_parquet(prepared / "events.parquet").join(pl.read_parquet(prepared / "items.parquet")
                                                               .select("item", "id"), on="item")
    preds = (submission.read(project_dir / "submissions" / "task1_phase1.parquet").with_row_index("row")
             .with_columns(pl.col("row").cast(pl.Int32)).explode("next_item_prediction", empty_as_null=True)
             .join(sessions.select("session", "row"), on="row"))
    clash = preds.join(events, left_on=["session", "next_item_prediction"], right_on=["session", "id"])
    assert clash.height == 0
