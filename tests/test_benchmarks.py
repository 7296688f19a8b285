"""Every benchmark script imports: a module it takes names from may move (benchmarks/loop.py once
imported ``mrr_report`` from a stage module that no longer had it, and nothing ran it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_script_imports(path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # a script may edit sys.path at import
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{path.name}: no main()"


def _load(name: str):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_exponents_fit_scale_runs_from_0_1(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    scale = _load("scale")

    def run(s, label="scale"):
        n = int(1_000_000 * s)  # predict linear, split quadratic; foreach items are summed per stage
        return {"scale": s, "label": label, "interactions": n,
                "stages": {"predict": {"wall_s": n / 1e3},
                           "split@a": {"wall_s": (n / 1e5) ** 2}, "split@b": {"wall_s": (n / 1e5) ** 2}}}

    runs = [run(0.05), run(0.1), run(0.25), run(1.0), run(0.02, "default"), run(0.5, "other")]
    runs[0]["stages"]["predict"]["wall_s"] = 1e6  # below 0.1: not in the fit
    assert scale.exponents(runs) == {"predict": 1.0, "split": 2.0}


def test_scale_params_only_needs_a_recorded_run(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    scale = _load("scale")
    with pytest.raises(SystemExit):  # a params-only resume continues a run: --resume is required
        scale.main(["--scales", "1.0", "--params-only", "--out", str(tmp_path / "s.json")])
    with pytest.raises(SystemExit):  # and a recorded run whose code it keeps
        scale.main(["--scales", "1.0", "--resume", "--params-only", "--out", str(tmp_path / "s.json"),
                    "--workdir", str(tmp_path)])
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "scale_1").exists()
