"""dvc.yaml's deps cover what each stage's ``python -m MODULE`` imports (tests/depcheck.py; ast, nothing
imported).

A project file a stage runs but does not list is an edit DVC cannot see: the stage would not rerun.
Fix a failure by adding the named file (or its folder, when the stage runs nearly all of it) to
the stage's ``deps:``.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from tests import depcheck

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project() -> depcheck.Project:
    return depcheck.Project(REPO)


def test_every_stage_runs_a_project_module(project):
    """Otherwise the coverage check below would pass vacuously for a cmd it cannot parse."""
    stages = depcheck.load_stages(REPO)
    assert stages
    for stage in stages:
        assert stage.modules, f"stage {stage.name}: no `python -m MODULE` found in {stage.cmd!r}"
        for module in stage.modules:
            assert project.module_file(module), f"stage {stage.name}: {module} is not a project module"


def test_deps_cover_each_stage_imports(project):
    findings = depcheck.undeclared(REPO, project=project)
    assert not findings, ("project files a stage runs but its deps do not cover:\n"
                          + "\n".join(map(str, findings)))


def test_no_code_dep_the_stage_does_not_run(project):
    """A listed .py file or package folder the stage never imports reruns it for nothing."""
    stale = depcheck.unused(REPO, project=project)
    listed = "\n".join(f"stage {s}: {d}" for s, d in stale)
    assert not stale, "deps that cover no file the stage runs:\n" + listed


# ---------------------------------------------------------------------------------------------
# planted failures: the real tree with one dep removed / one undeclared import added


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    for pkg in depcheck.PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def _edit_deps(root: Path, stage: str, drop: str) -> None:
    doc = yaml.safe_load((root / "dvc.yaml").read_text())
    body = doc["stages"][stage]
    body = body.get("do", body)
    assert drop in body["deps"]
    body["deps"].remove(drop)
    (root / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def test_planted_dropped_dep_is_named(tree_copy):
    _edit_deps(tree_copy, "score", "core/metrics.py")
    findings = depcheck.undeclared(tree_copy)
    assert [(f.stage, f.file) for f in findings] == [("score", "core/metrics.py")]
    assert str(findings[0]).startswith("stage score: core/metrics.py is not covered by its deps")


def test_planted_undeclared_import_is_named(tree_copy):
    recall = tree_copy / "pipeline" / "recall.py"
    recall.write_text(recall.read_text() + "\n\ndef _late():\n    from pipeline.report import main  # noqa\n")
    findings = depcheck.undeclared(tree_copy)
    assert {(f.stage, f.file) for f in findings} >= {("recall", "pipeline/report.py")}
    assert {f.stage for f in findings} == {"recall"}
    (msg,) = [str(f) for f in findings if f.file == "pipeline/report.py"]
    assert msg.startswith("stage recall: pipeline/report.py") and "pipeline/recall.py:" in msg


def test_planted_dropped_dep_in_a_foreach_stage_names_each_item(tree_copy):
    _edit_deps(tree_copy, "features", "core/guards.py")
    found = {(f.stage, f.file) for f in depcheck.undeclared(tree_copy)}
    assert found == {(f"features@{split}", "core/guards.py") for split in ("valid", "test")}


# ---------------------------------------------------------------------------------------------
# the parser on a small fake project


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))


FAKE = {
    "params.yaml": """
        splits: [a, b]
        sources: {x: {k: 1}, y: {k: 2}}
    """,
    "pipeline/__init__.py": '"""docstring only: a dep all the same (an edit may add code)."""\n',
    "pipeline/io.py": "X = 1\n",
    "pipeline/cfg.py": "from . import io\n",
    "pipeline/stage_a.py": """
        from pipeline import cfg
        from .util import helper
        import features.sub.leaf
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from pipeline import typing_only
        def late():
            from rankers import lazy
    """,
    "pipeline/util/__init__.py": "VALUE = 2  # code: a dep\n",
    "pipeline/util/helper.py": "from ..io import X\n",
    "pipeline/typing_only.py": "",
    "pipeline/stage_b.py": """
        from candidates.registry import load, CONSTANT
        def run(kind):
            return load(kind)
    """,
    "pipeline/stage_c.py": "from candidates.registry import CONSTANT\n",
    "features/sub/leaf.py": "",
    "rankers/lazy.py": "",
    "candidates/registry.py": """
        import importlib
        CONSTANT = 3
        KINDS = {"one": "candidates.one:One", "two": "candidates.two"}
        def load(kind):
            module, _, cls = KINDS[kind].partition(":")
            return importlib.import_module(module)
    """,
    "candidates/one.py": "",
    "candidates/two.py": "",
    "dvc.yaml": """
        stages:
          plain:
            cmd: python -X utf8 -m pipeline.stage_a --out x
            deps: [pipeline/stage_a.py, pipeline/cfg.py, pipeline/util]
          each:
            foreach: ${splits}
            do:
              cmd: python3 -m pipeline.stage_b --split ${item}
              deps: [pipeline/stage_b.py, candidates/registry.py, candidates/one.py]
          bydict:
            foreach: ${sources}
            do:
              cmd: python -m pipeline.stage_${key} --k ${item.k}
              deps: [pipeline/stage_x.py]
          grid:
            matrix:
              split: [a, b]
              size: [1, 2]
            cmd: python -m pipeline.stage_c --split ${item.split} --size ${item.size}
            deps: [pipeline/stage_c.py, candidates]
    """,
}


@pytest.fixture
def fake(tmp_path) -> Path:
    _write(tmp_path, FAKE)
    _write(tmp_path, {"pipeline/stage_x.py": "", "pipeline/stage_y.py": "from pipeline import io\n"})
    return tmp_path


def test_fake_stages_expand_like_dvc(fake):
    stages = {s.name: s for s in depcheck.load_stages(fake)}
    assert list(stages) == ["plain", "each@a", "each@b", "bydict@x", "bydict@y",
                            "grid@a-1", "grid@a-2", "grid@b-1", "grid@b-2"]
    assert stages["plain"].modules == ("pipeline.stage_a",)
    assert stages["bydict@y"].modules == ("pipeline.stage_y",)
    assert stages["bydict@y"].cmd.endswith("--k 2")
    assert stages["grid@b-2"].cmd.endswith("--split b --size 2")


def test_fake_import_closure(fake):
    project = depcheck.Project(fake)
    assert set(project.closure("pipeline.stage_a")) == {
        "pipeline/stage_a.py", "pipeline/cfg.py", "pipeline/io.py", "pipeline/util/__init__.py",
        "pipeline/util/helper.py", "features/sub/leaf.py", "rankers/lazy.py", "pipeline/__init__.py",
    }  # no typing_only.py (TYPE_CHECKING)
    # referencing the registry's loader imports every module its strings name; a constant does not
    assert set(project.closure("pipeline.stage_b")) == {
        "pipeline/__init__.py", "pipeline/stage_b.py", "candidates/registry.py", "candidates/one.py",
        "candidates/two.py"}
    assert set(project.closure("pipeline.stage_c")) == {
        "pipeline/__init__.py", "pipeline/stage_c.py", "candidates/registry.py"}


def test_fake_findings_name_stage_and_file(fake):
    found = {(f.stage, f.file) for f in depcheck.undeclared(fake)}
    init = {(f.stage, "pipeline/__init__.py") for f in depcheck.undeclared(fake)}  # every stage's
    assert len(init) == 9 and init <= found
    assert found - init == {
        ("plain", "pipeline/io.py"), ("plain", "features/sub/leaf.py"), ("plain", "rankers/lazy.py"),
        ("each@a", "candidates/two.py"), ("each@b", "candidates/two.py"),
        ("bydict@y", "pipeline/io.py"), ("bydict@y", "pipeline/stage_y.py"),
    }
    chain = next(f for f in depcheck.undeclared(fake) if f.stage == "plain" and f.file == "pipeline/io.py")
    assert str(chain) == ("stage plain: pipeline/io.py is not covered by its deps "
                          "(imported via pipeline/cfg.py:1 <- pipeline/stage_a.py:2)")
    assert ("bydict@x", "pipeline/stage_x.py") not in found


def test_fake_unused_code_deps(fake):
    doc = yaml.safe_load((fake / "dvc.yaml").read_text())
    doc["stages"]["plain"]["deps"] += ["pipeline/typing_only.py", "rankers", "data/raw"]
    (fake / "dvc.yaml").write_text(yaml.safe_dump(doc))
    stale = depcheck.unused(fake)
    assert ("plain", "pipeline/typing_only.py") in stale
    assert ("plain", "rankers") not in stale and ("plain", "data/raw") not in stale
    assert ("bydict@y", "pipeline/stage_x.py") in stale


@pytest.mark.parametrize("cmd, modules", [
    ("python -m pipeline.a --x 1", ["pipeline.a"]),
    ("python3.11 -X utf8 -u -m pipeline.a", ["pipeline.a"]),
    (".venv/bin/python -mpipeline.a", ["pipeline.a"]),
    ("mkdir -p out && python -m pipeline.a; python pipeline/b.py --y", ["pipeline.a", "pipeline.b"]),
    ("dvc --version", []),
])
def test_python_modules(cmd, modules):
    assert depcheck.python_modules(cmd) == modules


def test_covered():
    assert depcheck.covered("candidates/deep/train.py", ["candidates"])
    assert depcheck.covered("candidates/deep/train.py", ["candidates/deep/"])
    assert depcheck.covered("pipeline/io.py", ["pipeline/io.py"])
    assert not depcheck.covered("pipeline/io.py", ["pipeline/io"])
    assert not depcheck.covered("candidates_extra/x.py", ["candidates"])
