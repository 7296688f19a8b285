"""Real-format files, damaged the way a new user's copy gets damaged, run through the stage mains as
DVC runs them: each ends with exit 1 and one ``error: <file>:<line> field '<f>': <reason>`` line on
stderr, never a traceback. A test file listed in data.test_files but absent is such an error too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import REPO, SAMPLE

RAW = Path("data") / "raw"
PREPARE = ("pipeline.prepare", "--raw", "data/raw", "--out", "data/prepared", "--report",
           "metrics/prepare.json")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def _edit(name: str, line: int, old: str, new: str) -> Callable[[Path], None]:
    """Replace ``old`` by ``new`` on 1-based ``line`` of raw file ``name``."""
    def damage(raw: Path) -> None:
        lines = _lines(raw / name)
        assert old in lines[line - 1], (name, line, lines[line - 1])
        lines[line - 1] = lines[line - 1].replace(old, new, 1)
        (raw / name).write_text("\n".join(lines), encoding="utf-8")
    return damage


def _cut(name: str, keep_lines: int, keep_chars: int) -> Callable[[Path], None]:
    """A download cut short: the first ``keep_lines`` lines, then ``keep_chars`` of the next."""
    def damage(raw: Path) -> None:
        lines = _lines(raw / name)
        (raw / name).write_text("\n".join(lines[:keep_lines]) + "\n" + lines[keep_lines][:keep_chars],
                                encoding="utf-8")
    return damage


def _empty(name: str) -> Callable[[Path], None]:
    return lambda raw: (raw / name).write_bytes(b"")


def _latin1(name: str) -> Callable[[Path], None]:
    """Saved by an editor in Latin-1: every non-ASCII character a byte that is not UTF-8."""
    return lambda raw: (raw / name).write_bytes((raw / name).read_text(encoding="utf-8")
                                                .encode("latin-1", errors="replace"))


# kind -> (damage, file, line, field, words of the reason)
DAMAGE = {
    "array without closing bracket": (_edit("sessions_train.csv", 5, "['0140449264']", "['0140449264'"),
                                      "sessions_train.csv", 5, "prev_items", "malformed prev_items array"),
    "array with commas": (_edit("sessions_train.csv", 2, "['B09W9FND7K' 'B09JSPLN1M']",
                                "\"['B09W9FND7K', 'B09JSPLN1M']\""),
                          "sessions_train.csv", 2, "prev_items", "malformed prev_items array"),
    "unbalanced quote inside a wrapped array": (_edit("sessions_train.csv", 4, "'3492232574'", "'3492232574"),
                                                "sessions_train.csv", 3, "prev_items",
                                                "malformed prev_items array"),
    "unknown locale": (_edit("sessions_test_task1_phase1.csv", 5, ",JP", ",jp"),
                       "sessions_test_task1_phase1.csv", 5, "locale", "unknown locale"),
    "missing column": (_edit("products_train.csv", 1, "id,locale,title,", "id,locale,name,"),
                       "products_train.csv", 1, "title", "missing column"),
    "bad price": (_edit("products_train.csv", 3, ",9.99,", ",9.99 EUR,"),
                  "products_train.csv", 3, "price", "non-numeric price"),
    "truncated last line (products)": (_cut("products_train.csv", 13, 40),
                                       "products_train.csv", 14, "price", "truncated last line"),
    "truncated last line inside a wrapped array": (
        _cut("sessions_train.csv", 5, 30), "sessions_train.csv", 6, "prev_items", "truncated last line"),
    "empty file": (_empty("sessions_train.csv"), "sessions_train.csv", 1, None, "empty file"),
    "not UTF-8": (_latin1("products_train.csv"), "products_train.csv", 2, "title", "not UTF-8"),
    "empty next_item": (_edit("sessions_train.csv", 5, ",B08N5WRWNW,", ",,"),
                        "sessions_train.csv", 5, "next_item", "empty next_item"),
    "duplicate product": (_edit("products_train.csv", 3, "B09JSPLN1M,DE", "B09W9FND7K,DE"),
                          "products_train.csv", 3, "id", "duplicate (id, locale)"),
}


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=project, capture_output=True, text=True)


def _assert_one_line_error(result: subprocess.CompletedProcess, where: str, field: str | None,
                           reason: str) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip("\n").endswith(errors[0]), result.stderr[-3000:]
    head = f"error: {where}" + (f" field {field!r}: " if field else ": ")
    assert errors[0].startswith(head) and reason in errors[0], (head, errors[0])


@pytest.fixture()
def project(tmp_path) -> Path:
    """params.yaml (data.test_files: the sample's one test file) and the sample files in data/raw."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["test_files"] = ["task1_phase1"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / RAW).mkdir(parents=True)
    for name in ("products_train.csv", "sessions_train.csv", "sessions_test_task1_phase1.csv"):
        shutil.copy(SAMPLE / name, tmp_path / RAW / name)
    return tmp_path


def test_the_undamaged_sample_prepares(project):
    result = _run(project, *PREPARE)
    assert result.returncode == 0, result.stderr[-3000:]
    sessions = pl.read_parquet(project / "data" / "prepared" / "sessions.parquet")
    assert set(sessions["dataset"]) == {"train", "task1_phase1"}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_prepare_reports_damage_in_one_line(project, kind):
    damage, name, line, field, reason = DAMAGE[kind]
    damage(project / RAW)
    _assert_one_line_error(_run(project, *PREPARE), f"data/raw/{name}:{line}", field, reason)


@pytest.mark.parametrize("kind",
                         ["array without closing bracket", "unknown locale", "not UTF-8", "empty file"])
def test_stats_stage_and_cli_report_damage_in_one_line(project, kind):
    damage, name, line, field, reason = DAMAGE[kind]
    damage(project / RAW)
    stats = _run(project, "pipeline.stats", "--raw", "data/raw", "--out", "metrics/data_stats.json")
    cli = _run(project, "pipeline.cli", "stats", "data/raw")
    if name == "sessions_train.csv" and kind != "empty file":  # stats skips malformed train records
        assert stats.returncode == 0 and cli.returncode == 0, stats.stderr[-3000:]
        return
    if name.startswith("sessions_test_"):  # stats reads no test file (their probes moved to score, with gt/)
        assert stats.returncode == 0 and cli.returncode == 0, stats.stderr[-3000:]
        return
    for result in (stats, cli):
        _assert_one_line_error(result, f"data/raw/{name}:{line}", field, reason)


def test_stages_reading_test_files_report_damage_in_one_line(project):
    DAMAGE["unknown locale"][0](project / RAW)
    frame = pl.DataFrame({"locale": ["DE", "UK", "JP"], "next_item_prediction": [["B09W9FND7K"]] * 3})
    (project / "submissions" / "validated").mkdir(parents=True)  # publish.task1 (stage choose's folder)
    frame.write_parquet(project / "submissions" / "task1_phase1.parquet")
    frame.write_parquet(project / "submissions" / "validated" / "task1_phase1.parquet")
    where = "data/raw/sessions_test_task1_phase1.csv:5"
    _assert_one_line_error(_run(project, "pipeline.cli", "validate", "--task", "1", "--phase", "1",
                                "submissions/task1_phase1.parquet"), where, "locale", "unknown locale")
    _assert_one_line_error(_run(project, "pipeline.publish", "--submissions", "submissions", "--raw",
                                "data/raw"),
                           where, "locale", "unknown locale")


def test_damaged_ground_truth_is_one_line_from_the_score_stage(project):
    gt = project / RAW / "gt"
    gt.mkdir()
    (gt / "gt_task1_phase1.csv").write_text("next_item,locale\nB09W9FND7K,DE\nB07XJ8C8F5,Uk\nB07XJ8C8F5,JP\n")
    frame = pl.DataFrame({"locale": ["DE", "UK", "JP"], "next_item_prediction": [["B09W9FND7K"]] * 3})
    (project / "submissions").mkdir()
    frame.write_parquet(project / "submissions" / "task1_phase1.parquet")
    result = _run(project, "pipeline.score", "--submissions", "submissions", "--gt", "data/raw/gt",
                  "--out", "metrics/leaderboard.json", "--table", "metrics/leaderboard.md")
    _assert_one_line_error(result, "data/raw/gt/gt_task1_phase1.csv:3", "locale", "unknown locale")


def test_a_listed_test_file_that_is_absent_is_named(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["test_files"] = ["task1_phase1", "task3_phase2"]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    _assert_one_line_error(_run(project, *PREPARE), "data/raw/sessions_test_task3_phase2.csv", None,
                           "file not found (data.test_files lists task3_phase2")
    # the same from generate with data.source=files: the file is named where the user keeps it
    params["data"].update(source="files", raw_dir="kdd")
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(project / RAW, project / "kdd")
    _assert_one_line_error(_run(project, "pipeline.generate", "--out", "data/raw"),
                           "kdd/sessions_test_task3_phase2.csv", None, "file not found")


def test_unlisted_test_files_are_left_out(project):
    shutil.copy(project / RAW / "sessions_test_task1_phase1.csv",
                project / RAW / "sessions_test_task2_phase1.csv")
    result = _run(project, *PREPARE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sessions_test_task2_phase1.csv: not in data.test_files, left out" in result.stderr
    sessions = pl.read_parquet(project / "data" / "prepared" / "sessions.parquet")
    assert set(sessions["dataset"]) == {"train", "task1_phase1"}


def test_publish_is_one_stage_per_listed_test_file():
    """dvc.yaml: publish runs foreach data.test_files, so an unlisted file means one submission fewer."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["publish"]["foreach"] == "${data.test_files}"
    assert stages["publish"]["do"]["outs"] == [{"submissions/${item}.parquet": {"cache": False}}]
    assert "data.test_files" in stages["prepare"]["params"]
