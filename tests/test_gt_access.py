"""Nothing reads gt/ (the ground truth of the test files) except the score stage.

Three checks: no stage but score lists a path under a ``gt`` folder in its dvc.yaml deps; no project
file a stage other than score runs (its import closure, tests/depcheck.py) calls a ground-truth reader
or names the gt/ files, outside the writers that make data/raw (stage generate, synthetic.generate);
and the stats and prepare stages, run on generated data that has a gt/, open nothing under it
(an audit hook on ``open``: every gt reader of the project opens the file from Python first).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests import depcheck
from tests.conftest import REPO

SCORER = "score"
WRITER_STAGES = {"generate"}  # it copies/writes gt/ into data/raw
WRITER_FUNCTIONS = {("pipeline/synthetic/write.py", "generate")}
READERS = {
    "read_ground_truth",
    "read_oracle",
    "load_ceiling",
    "score_file",
    "compute_probes",
    "gt_file",
    "oracle_file",
}
NAMES = {"gt", "ceiling.json"}


def _is_gt_path(dep: str) -> bool:
    return (
        "gt" in Path(dep).parts
        or Path(dep).name.startswith(("gt_", "oracle_"))
        or Path(dep).name == "ceiling.json"
    )


def gt_references(root: Path, rel: str) -> list[str]:
    """``rel:line name`` of every call of a ground-truth reader and every gt/ file name in ``rel``,
    outside WRITER_FUNCTIONS."""
    tree = ast.parse((root / rel).read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = function or node.name
        if (rel, function) in WRITER_FUNCTIONS:
            return
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else None
            )
            if name in READERS:
                found.append(f"{rel}:{node.lineno} {name}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
            found.append(f"{rel}:{node.lineno} {node.value!r}")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return found


@pytest.fixture(scope="module")
def stages() -> list[depcheck.Stage]:
    return depcheck.load_stages(REPO)


def test_only_score_lists_gt_in_its_deps(stages):
    bad = [f"stage {s.name}: {d}" for s in stages if s.name != SCORER for d in s.deps if _is_gt_path(d)]
    assert not bad, "stages other than score depend on ground truth:\n" + "\n".join(bad)


def test_only_score_runs_code_that_reads_gt(stages):
    project = depcheck.Project(REPO)
    bad = []
    for stage in stages:
        if stage.name == SCORER or stage.name.split("@")[0] in WRITER_STAGES:
            continue
        for module in stage.modules:
            for rel, chain in project.closure(module).items():
                for ref in gt_references(REPO, rel):
                    via = " <- ".join(f"{i.src}:{i.line}" for i in reversed(chain)) or "its module"
                    bad.append(f"stage {stage.name}: {ref} (via {via})")
    assert not bad, "stages other than score run code that reads gt/:\n" + "\n".join(bad)


def test_the_check_sees_the_score_stage_read_gt(stages):
    """The other way round, so the check above is not vacuous: score's closure does read gt."""
    project = depcheck.Project(REPO)
    (score,) = [s for s in stages if s.name == SCORER]
    refs = [r for rel in project.closure(score.modules[0]) for r in gt_references(REPO, rel)]
    assert any("read_ground_truth()" in r for r in refs) and any("compute_probes()" in r for r in refs)


def test_gt_references_finds_a_planted_read(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "leak.py").write_text(
        "from pipeline import raw\n\ndef main(d):\n    return raw.read_ground_truth(d / 'gt' / raw.gt_file(1, 1), 1)\n"  # noqa: E501
    )
    assert gt_references(tmp_path, "pipeline/leak.py") == [
        "pipeline/leak.py:4 read_ground_truth()",
        "pipeline/leak.py:4 'gt'",
        "pipeline/leak.py:4 gt_file()",
    ]


HOOK = """
import os, runpy, sys
opened = []
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if "/gt/" in "/" + path:
            opened.append(path)
sys.addaudithook(hook)
target, *argv = sys.argv[1:]
sys.argv = [target, *argv]
try:
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
finally:
    print("GT-OPENED", opened, file=sys.stderr)
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    from pipeline import synthetic
    from tests._params import synthetic_config

    root = tmp_path_factory.mktemp("gt_access")
    synthetic.generate(root / "data" / "raw", 0.002, seed=3, cfg=synthetic_config())
    assert (root / "data" / "raw" / "gt" / "gt_task1_phase1.csv").exists()
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["pipeline.stats", "--raw", "data/raw", "--out", "metrics/data_stats.json"],
        [
            "pipeline.prepare",
            "--raw",
            "data/raw",
            "--out",
            "data/prepared",
            "--report",
            "metrics/prepare.json",
        ],
    ],
)
def test_stages_open_nothing_under_gt(generated, argv):
    result = subprocess.run(
        [sys.executable, "-c", HOOK, *argv], cwd=generated, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GT-OPENED []" in result.stderr, result.stderr[-3000:]


def test_the_hook_sees_a_gt_read(generated):
    (generated / "reads_gt.py").write_text(
        "from core import raw\nraw.read_ground_truth('data/raw/gt/gt_task1_phase1.csv', 1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", HOOK, "reads_gt.py"], cwd=generated, capture_output=True, text=True
    )
    assert "GT-OPENED ['data/raw/gt/gt_task1_phase1.csv'" in result.stderr, result.stderr[-3000:]
