"""Interrupted writes: a killed stage leaves the previous output intact, and a rerun recovers."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from core.io import write_parquet
from tests.conftest import REPO, TINY_SCALE

WRITER = """
import sys, polars as pl, numpy as np
from core.io import write_parquet
rng = np.random.default_rng(0)
frame = pl.DataFrame({"x": rng.random(40_000_000)})
write_parquet(frame, sys.argv[1])
"""


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "out.parquet"
    old = pl.DataFrame({"a": [1, 2, 3]})
    write_parquet(old, path)

    def half_write(self, file, **kwargs):
        Path(file).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.DataFrame, "write_parquet", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_parquet(pl.DataFrame({"a": [9]}), path)
    monkeypatch.undo()
    assert pl.read_parquet(path).equals(old)
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_killed_process_leaves_previous_file_and_rerun_recovers(tmp_path):
    path = tmp_path / "big.parquet"
    old = pl.DataFrame({"x": [0.5]})
    write_parquet(old, path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    deadline = time.time() + 120
    while not list(tmp_path.glob(".big.parquet.*.tmp")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the writer finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert pl.read_parquet(path).equals(old)          # previous output intact
    assert list(tmp_path.glob(".big.parquet.*.tmp"))  # the torn temporary file is all that is left
    write_parquet(pl.DataFrame({"x": [1.0, 2.0]}), path)  # the next run cleans it up
    assert pl.read_parquet(path).height == 2 and not list(tmp_path.glob(".*.tmp"))


def _dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.mark.skipif(shutil.which("git") is None, reason="dvc needs git")
def test_dvc_repro_recovers_after_a_killed_stage(tmp_path):
    """Kill `dvc repro` in the middle of the generate stage, then rerun: the graph completes."""
    project = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    for name in tracked + ["dvc.yaml", "params.yaml"]:
        src = REPO / name
        if src.is_file() and not name.startswith("data/"):
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, project / name)
    (project / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["scale"] = TINY_SCALE
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(["dvc", "repro", "prepare"], cwd=project, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((project / "data").glob(".raw.*")):
        time.sleep(0.01)
    assert proc.poll() is None, "generate finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (project / "data" / "raw" / "products_train.csv").exists() or \
        (project / "data" / "raw" / "gt" / "ceiling.json").exists()  # never a half-filled data/raw
    (project / ".dvc" / "tmp" / "rwlock").unlink(missing_ok=True)  # a killed dvc leaves its lock
    _dvc(project, "repro", "prepare")
    assert pl.read_parquet(project / "data" / "prepared" / "sessions.parquet").height > 0
    status = _dvc(project, "status", "prepare")
    assert "changed" not in status.stdout, status.stdout
