"""The whole DVC graph, `dvc repro` from a clean copy of the repository, on a tiny world.

Training budgets are cut (epochs, boosting rounds, mT5 steps) so the run takes a few minutes; every
stage still runs its real code. Then the six submissions are validated, the leaderboard holds every
method, and a second `dvc repro -f` of the stages after the split reproduces the submissions
byte for byte (same params and seed, same submission).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core import submission
from tests.conftest import REPO, TINY_SCALE


def validate_six_submissions(project: Path) -> None:
    """Every published submissions/task{T}_phase{P}.parquet of ``project`` passes submission.validate."""
    raw = project / "data" / "raw"
    catalogue = submission.load_catalogue(raw)
    for task in (1, 2, 3):
        for phase in (1, 2):
            frame = submission.read(project / "submissions" / f"task{task}_phase{phase}.parquet")
            submission.validate(frame, task, submission.load_test_locales(raw, task, phase),
                                catalogue if task != 3 else None)


def _copy_repo(dest: Path) -> None:
    listing = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    tracked = listing.stdout.split()
    for name in set(tracked) | {"dvc.yaml", "params.yaml"}:
        src = REPO / name
        if src.is_file() and not name.startswith(("data/", "submissions/")) and name != "dvc.lock":
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / name)


def _tiny_params(path: Path) -> None:
    params = yaml.safe_load(path.read_text())
    params["data"]["scale"] = TINY_SCALE
    for model in params["deep"]["models"].values():
        model["epochs"] = 1
    params["deep"]["threads"] = 1
    params["ranker"]["num_boost_round"] = 30
    params["ranker"]["num_threads"] = 1
    mt5 = params["task3"]["mt5"]
    mt5.update(max_steps=10, max_train_pairs=500, max_valid_sessions=50, tokenizer_titles=3000,
               vocab_size=300,
               threads=1)
    params["task3"]["chooser"]["n_estimators"] = 20
    for source in params["candidates"]["sources"].values():
        if source["type"] in ("als", "bpr"):
            source["iterations"] = 3
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _dvc(project: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))}


@pytest.mark.graph
@pytest.mark.skipif(shutil.which("git") is None, reason="dvc needs git")
def test_dvc_repro_whole_graph_on_a_tiny_world(tmp_path):
    project = tmp_path / "repo"
    _copy_repo(project)
    _tiny_params(project / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    _dvc(project, "repro")

    validate_six_submissions(project)
    board = json.loads((project / "metrics" / "leaderboard.json").read_text())
    params = yaml.safe_load((project / "params.yaml").read_text())
    methods = set(board["task1_phase1"])
    assert {"submission", "ranker", "popularity"} <= methods
    assert {f"source_{name}" for name in params["candidates"]["sources"]} <= methods
    assert {"submission", "last_title", "task3_chooser", "task3_mt5"} <= set(board["task3_phase1"])
    assert (project / "reports" / "index.html").exists()

    first = _digests(project / "submissions")
    _dvc(project, "repro", "-f", "--downstream", "split")
    assert _digests(project / "submissions") == first
