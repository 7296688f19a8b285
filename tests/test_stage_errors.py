"""Every stage of dvc.yaml, run as DVC runs it, ends a params error or a missing input in one line.

Each stage cmd runs in an empty folder: no params.yaml and no inputs, so whichever the stage reads
first is missing; it must exit non-zero with one ``error: ...`` line naming the file and no traceback.
Then the issue's case: a candidate source whose ``k`` is misspelt ``kk`` ends the candidates stage with
the params key, before any data is read."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import REPO
from tests.depcheck import load_stages

STAGES = {stage.name: stage.cmd for stage in load_stages(REPO)}


def _run(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(cmd)
    assert argv[:2] == ["python", "-m"], cmd
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_without_params_or_inputs_fails_in_one_line(stage: str, tmp_path: Path) -> None:
    line = _one_error_line(_run(STAGES[stage], tmp_path))
    assert line.startswith("error: params.yaml") or line.endswith(": file not found"), line


def test_misspelt_source_key_names_the_key(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    source = params["candidates"]["sources"]["covisit_fwd"]
    source["kk"] = source.pop("k")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    line = _one_error_line(_run(STAGES["candidates@valid"], tmp_path))
    assert line == "error: params.yaml:candidates.sources.covisit_fwd: needs 'type' and 'k'", line


def test_wrong_params_type_names_the_key(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ranker"]["num_leaves"] = "fifteen"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    line = _one_error_line(_run(STAGES["train_ranker"], tmp_path))
    assert "ranker" in line and "num_leaves" in line, line


def test_input_without_a_column_names_the_frame_and_column(tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    history = tmp_path / "data" / "split" / "valid" / "history.parquet"
    history.parent.mkdir(parents=True)
    pl.DataFrame({"session": [0], "position": [0]}, schema={"session": pl.Int32, "position": pl.Int32}) \
        .write_parquet(history)
    line = _one_error_line(_run(STAGES["candidates@valid"], tmp_path))
    assert line.startswith("error: history: missing column"), line
