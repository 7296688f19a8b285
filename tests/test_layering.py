"""Import layering, statically (tests/depcheck.py's import graph; ast, nothing imported).

The packages stack as the two stages run: ``candidates`` (stage one) at the bottom, ``features``
above it, ``rankers`` on top, and each layer imports only the one below it:

    candidates  imports neither features nor rankers
    features    may import candidates, never rankers
    rankers     may import features (the registry names the ranker's columns), never candidates

Task 3 (``titles``) stacks the same way inside its package: ``titles/candidates.py`` (stage one, the
title sources) is the only module of it that may reach a candidate source of ``candidates``; its
features, chooser and generator see candidate frames, never a source.

``core`` is the ground floor (params, file formats, io, metrics, guards, devices): any layer may import
it and it imports none of them. ``pipeline`` holds the stage modules, the report, the generator and the
engines: it sits on top, and no layer imports it. A stage module (one a dvc.yaml cmd runs with
``python -m``) never imports another: what two stages share belongs in a module of its own, so
editing one stage does not rerun the other.

The violations that exist are listed in KNOWN: their rule's test is ``xfail(strict=True)`` and flips
to a failure once they are all fixed (then delete the entry); ``test_no_new_violations`` fails on
any violation not listed. Lines in KNOWN are where each import was when it was listed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import depcheck

REPO = Path(__file__).resolve().parents[1]

TITLES_STAGE_TWO = ("titles/features.py", "titles/chooser.py", "titles/mt5.py")
LAYERS = {  # rule -> (importing files, imported files): a folder "pkg/" or a file path each
    "candidates does not import rankers": (("candidates/",), ("rankers/",)),
    "candidates does not import features": (("candidates/",), ("features/",)),
    "features does not import rankers": (("features/",), ("rankers/",)),
    "rankers does not import candidates": (("rankers/",), ("candidates/",)),
    "titles' features, chooser and generator do not import candidates": (TITLES_STAGE_TWO, ("candidates/",)),
    "candidates, features and rankers do not import titles": (
        ("candidates/", "features/", "rankers/"), ("titles/",)),
    "core imports no layer above it": (
        ("core/",), ("pipeline/", "candidates/", "features/", "rankers/", "titles/")),
    "no layer imports pipeline": (("candidates/", "features/", "rankers/", "titles/"), ("pipeline/",)),
}
STAGES = "no stage module imports another stage module"
RULES = [*LAYERS, STAGES]

KNOWN: dict[str, set[tuple[str, int, str]]] = {}  # rule -> {(importer, line, imported)}


@pytest.fixture(scope="module")
def graph() -> tuple[depcheck.Project, set[str]]:
    project = depcheck.Project(REPO)
    stage_files = {project.module_file(m) for s in depcheck.load_stages(REPO) for m in s.modules}
    return project, stage_files - {None}


def violations(graph, rule: str) -> list[depcheck.Import]:
    project, stage_files = graph
    found = []
    for rel in project.files():
        for imp in project.imports(rel):
            if rule == STAGES:
                bad = imp.src in stage_files and imp.dst in stage_files
            else:
                src, dst = LAYERS[rule]
                bad = _within(imp.src, src) and _within(imp.dst, dst)
            if bad:
                found.append(imp)
    return found


def _within(rel: str, paths: tuple[str, ...]) -> bool:
    return any(rel.startswith(p) if p.endswith("/") else rel == p for p in paths)


def _listed(imports) -> str:
    return "; ".join(f"{i.src}:{i.line} imports {i.dst}" for i in imports)


def _known_reason(rule: str) -> str:
    return "known violations: " + "; ".join(f"{s}:{n} imports {d}" for s, n, d in sorted(KNOWN[rule]))


@pytest.mark.parametrize("rule", [
    pytest.param(r, marks=pytest.mark.xfail(strict=True, reason=_known_reason(r))) if r in KNOWN else r
    for r in RULES
])
def test_layering(graph, rule):
    found = violations(graph, rule)
    assert not found, f"{rule}: {_listed(found)}"


@pytest.mark.parametrize("rule", RULES)
def test_no_new_violations(graph, rule):
    known = {(s, d) for s, _, d in KNOWN.get(rule, ())}
    new = [i for i in violations(graph, rule) if (i.src, i.dst) not in known]
    assert not new, f"{rule}: {_listed(new)}"


def test_rules_see_the_stage_modules(graph):
    """The stage rule is vacuous if the dvc.yaml parse finds no stage modules."""
    _, stage_files = graph
    assert {"pipeline/train_ranker.py", "pipeline/predict.py", "pipeline/features_stage.py"} <= stage_files


def test_a_planted_violation_is_reported(tmp_path):
    for rel, text in {
        "dvc.yaml": "stages:\n  a:\n    cmd: python -m pipeline.a\n  b:\n    cmd: python -m pipeline.b\n",
        "pipeline/a.py": "from pipeline import b\n",
        "pipeline/b.py": "",
        "rankers/r.py": "X = 1\n",
        "features/f.py": "import os\n\nfrom rankers.r import X\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    project = depcheck.Project(tmp_path)
    graph = (project, {"pipeline/a.py", "pipeline/b.py"})
    found = _listed(violations(graph, "features does not import rankers"))
    assert found == "features/f.py:3 imports rankers/r.py"
    assert _listed(violations(graph, STAGES)) == "pipeline/a.py:1 imports pipeline/b.py"
    assert not violations(graph, "rankers does not import candidates")
