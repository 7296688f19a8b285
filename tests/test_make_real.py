"""`make real REAL_DIR=...`, the README's real-data command, on a small folder in the competition's layout.

The folder holds the nine files under their competition names (sessions_train.csv, products_train.csv,
six sessions_test_task{T}_phase{P}.csv) and gt/gt_task{T}_phase{P}.csv, written by the synthetic
generator at a small scale (the oracle files a real download lacks are removed). The command runs in a
copy of the repository (training budgets cut as in test_pipeline_repro) and must end with the six
submissions and the leaderboard, leave params.yaml as it was, and leave `make run` to the synthetic
world. Without REAL_DIR, or with a file missing or misnamed, it stops in one line before anything runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import REPO
from tests.test_pipeline_repro import _copy_repo, _tiny_params, validate_six_submissions

pytestmark = [pytest.mark.graph,
              pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None,
                                 reason="needs make and git")]

SCALE = 0.005  # the catalogue: at least 100 products in every locale, as a submission needs
TRAIN_SESSIONS, TEST_SESSIONS = 600, 60  # then cut to a few hundred sessions
TESTS = [f"sessions_test_task{t}_phase{p}.csv" for t in (1, 2, 3) for p in (1, 2)]


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "OPENBLAS_NUM_THREADS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _make(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=project, capture_output=True,
                          text=True, env=_env(), timeout=timeout)


def _real_folder(path: Path) -> Path:
    """The nine competition files and gt/ under their names; the first rows of each sessions file."""
    generate = [sys.executable, "-m", "pipeline.cli", "generate", "--out", str(path), "--scale", str(SCALE)]
    subprocess.run(generate, cwd=REPO, check=True, capture_output=True, env=_env())
    for extra in path.joinpath("gt").iterdir():
        if not (extra.name.startswith("gt_task") and extra.suffix == ".csv"):
            extra.unlink()  # the generator's oracle files: not part of a download
    _head(path / "sessions_train.csv", TRAIN_SESSIONS)
    for name in TESTS:  # a test file's row i is answered by its gt file's row i
        _head(path / name, TEST_SESSIONS)
        _head(path / "gt" / name.replace("sessions_test_", "gt_"), TEST_SESSIONS)
    expected = ["products_train.csv", "sessions_train.csv", *TESTS]
    assert sorted(p.name for p in path.glob("*.csv")) == sorted(expected)
    return path


def _head(path: Path, rows: int) -> None:
    frame = pl.read_csv(path, infer_schema=False)
    assert frame.height > rows, (path, frame.height)
    frame.head(rows).write_csv(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A committed copy of the repository whose .venv is the one running the tests (no reinstall)."""
    project = tmp_path_factory.mktemp("make_real") / "repo"
    _copy_repo(project)
    _tiny_params(project / "params.yaml")
    venv = project / ".venv"
    venv.mkdir()
    (venv / "bin").symlink_to(Path(sys.executable).parent)
    os.utime(project / "pyproject.toml", (0, 0))
    (venv / ".installed").touch()  # newer than pyproject.toml: make installs nothing
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=project, check=True, env=_env())
    return project


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_make_real_without_real_dir_names_it(project: Path) -> None:
    assert "REAL_DIR is not set" in _one_line(_make(project, "real"))


def test_make_real_with_a_missing_and_a_misnamed_file(project: Path, tmp_path: Path) -> None:
    real = _real_folder(tmp_path / "kdd")
    (real / "sessions_test_task2_phase2.csv").unlink()
    line = _one_line(_make(project, "real", f"REAL_DIR={real}"))
    assert "sessions_test_task2_phase2.csv: file not found" in line, line
    (real / "sessions_train.csv").rename(real / "session_train.csv")
    line = _one_line(_make(project, "real", f"REAL_DIR={real}"))
    assert "found session_train.csv: rename it to sessions_train.csv" in line, line
    assert _one_line(_make(project, "real", f"REAL_DIR={tmp_path / 'absent'}")).endswith("folder not found: "
        "data.raw_dir must hold the KDD Cup 2023 files ['products_train.csv', 'sessions_train.csv'] and "
        "sessions_test_task*_phase*.csv.  Stop.")


def test_make_real_runs_the_graph_on_the_folder_and_puts_params_back(project: Path, tmp_path: Path) -> None:
    real = _real_folder(tmp_path / "kdd")
    params_before = (project / "params.yaml").read_bytes()
    result = _make(project, "real", f"REAL_DIR={real}", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert (project / "params.yaml").read_bytes() == params_before
    assert not (project / ".params.yaml.make-real").exists()
    # the graph read the folder: data/raw holds its files
    copied = project / "data" / "raw" / "sessions_train.csv"
    assert copied.read_bytes() == (real / "sessions_train.csv").read_bytes()
    validate_six_submissions(project)
    board = (project / "metrics" / "leaderboard.md").read_text()
    assert board in result.stdout  # the leaderboard is printed at the end
    for dataset in ("task1_phase1", "task2_phase1", "task3_phase1"):
        assert f"### {dataset}" in board

    # make run after make real: params.yaml says synthetic, so DVC sees the data params changed
    assert yaml.safe_load((project / "params.yaml").read_text())["data"]["source"] == "synthetic"
    status = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "generate"], cwd=project,
                            capture_output=True, text=True, env=_env())
    assert status.returncode == 0, status.stderr
    assert re.search(r"params.yaml:\s+modified:\s+data\b", status.stdout), status.stdout
