"""Every benchmark script imports: a module it takes names from may move (benchmarks/loop.py once
imported ``mrr_report`` from a stage module that no longer had it, and nothing ran it)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def _load_path(path: Path):
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str):
    return _load_path(BENCHMARKS[0].parent / f"{name}.py")


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_script_imports(path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # a script may edit sys.path at import
    module = _load_path(path)
    assert callable(getattr(module, "main", None)), f"{path.name}: no main()"


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


def test_scale_retime_replaces_only_the_named_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    scale = _load("scale")
    with pytest.raises(SystemExit):  # a retime needs the recorded run it amends
        scale.main(["--scales", "1.0", "--retime", "generate", "--out", str(tmp_path / "s.json")])
    run = {"scale": 1.0, "label": "scale", "total_wall_s": 110.0, "peak_rss_gib": 5.0,
           "stages": {"generate": {"wall_s": 90.0, "cpu_s": 91.0, "peak_rss_gib": 5.0, "rows_out": 7},
                      "split": {"wall_s": 20.0, "cpu_s": 20.0, "peak_rss_gib": 2.0}}}
    new = scale.merge_retimed(run, {"generate": {"wall_s": 60.0, "cpu_s": 61.0, "peak_rss_gib": 4.5}}, "abc")
    assert new["stages"]["generate"] == {"wall_s": 60.0, "cpu_s": 61.0, "peak_rss_gib": 4.5, "rows_out": 7}
    assert new["stages"]["split"] == run["stages"]["split"] and new["retimed"] == {"generate": "abc"}
    assert (new["total_wall_s"], new["peak_rss_gib"]) == (80.0, 4.5)
    assert run["stages"]["generate"]["wall_s"] == 90.0  # the recorded run is not changed in place


def test_scale_repeats_enter_the_fit_as_the_median(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    scale = _load("scale")

    def run(s, wall):
        return {"scale": s, "label": "scale", "interactions": int(1_000_000 * s),
                "stages": {"predict": {"wall_s": wall}}}

    runs = [run(0.1, 10.0), run(1.0, 150.0)]
    assert scale.exponents(runs) == {"predict": round(math.log10(15.0), 3)}
    runs[1]["repeats"] = {"predict": [{"wall_s": 100.0}, {"wall_s": 90.0}]}  # median of 150, 100, 90
    assert scale.stage_wall(runs[1], "predict") == 100.0
    assert scale.exponents(runs) == {"predict": 1.0}
    assert runs[1]["stages"]["predict"]["wall_s"] == 150.0  # the first measurement stays in the record
    with pytest.raises(FileNotFoundError):  # a repeat runs in the run's kept workspace
        scale.repeat(runs[1], ["predict"], tmp_path)
    with pytest.raises(SystemExit):  # one kind of re-measurement at a time
        scale.main(["--scales", "1.0", "--retime", "predict", "--repeat", "predict",
                    "--out", str(tmp_path / "s.json")])


def test_loop_thin_history_keeps_queries_and_test_prefixes(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    import polars as pl

    loop = _load("loop")
    n = 2000
    split = object.__new__(loop.Split)
    split.sessions = pl.DataFrame({"session": list(range(n)),
                                   "dataset": ["train"] * 1500 + ["task2_phase1"] * 500})
    split.history = pl.DataFrame({"session": [s for s in range(n) for _ in range(2)],
                                  "item": list(range(2 * n))})
    split.queries = pl.DataFrame({"session": list(range(0, 1500, 10))})  # 150 held-out train sessions
    kept = loop.thin_history(split, 0.25, 7).history["session"].unique()
    assert set(range(0, 1500, 10)) <= set(kept) and set(range(1500, n)) <= set(kept)
    others = [s for s in kept if s < 1500 and s % 10]
    assert 0.2 < len(others) / 1350 < 0.3  # about a quarter of the other train sessions
    again = object.__new__(loop.Split)
    again.sessions, again.queries = split.sessions, split.queries
    again.history = pl.DataFrame({"session": list(range(n))})
    assert set(loop.thin_history(again, 0.25, 7).history["session"]) == set(kept)  # the same draw
