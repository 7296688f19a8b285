"""Resource guards: params that would hold too many rows stop the stage up front with a clear message."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from core.guards import ResourceBudgetError, ResourcesConfig, check_rows
from features import registry
from features.assemble import add_features, fit_families
from features.base import FeaturesConfig
from tests import _features_world as world
from tests._params import section


def test_check_rows_passes_under_the_budget_and_names_the_knobs_over_it():
    cfg = section(ResourcesConfig, "resources", memory_budget_gib=1.0)
    assert check_rows("x", 1_000, 10, cfg, "knob") < 1.0
    with pytest.raises(ResourceBudgetError,
                       match=r"candidates: .*about 2\.2 GiB.*lower candidates\.chunk_size"):
        check_rows("candidates: one chunk", 10_000_000, 30, cfg, "candidates.chunk_size")


def test_family_column_bound_holds():
    """The guard's FAMILY_COLUMNS must bound what the families really add, or it under-estimates."""
    cfg, cands = section(FeaturesConfig, "features", deep_models={}), world.union()
    frame = add_features(cands, world.chunk(), fit_families(world.inputs(), cfg), cfg)
    assert frame.width - cands.width <= registry.FAMILY_COLUMNS


def test_candidates_stage_refuses_an_oversized_chunk(tiny_world, project_dir):
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    params["resources"]["memory_budget_gib"] = 0.001
    (project_dir / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.candidate_gen", "--split", "valid", "--prepared",
         str(tiny_world.prepared),
         "--splitdir", str(tiny_world.split), "--out", str(project_dir / "union.parquet")],
        cwd=project_dir, capture_output=True, text=True)
    assert result.returncode != 0
    assert "resources.memory_budget_gib" in result.stderr and "candidates.chunk_size" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project_dir / "union.parquet").exists()


def test_train_ranker_refuses_more_rows_than_the_budget_and_names_its_knobs(project_dir, monkeypatch):
    import polars as pl

    from pipeline.train_ranker import require_memory
    from rankers.lgbm import RankerConfig, assign_folds

    part = project_dir / "part-00000.parquet"
    pl.DataFrame({"session": [s for s in range(200) for _ in range(50)],
                  "item": list(range(50)) * 200, "si_x": [0.5] * 10_000}).write_parquet(part)
    folds = assign_folds(pl.Series("session", range(200)), 0.2, seed=1)
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    params["resources"]["memory_budget_gib"] = 1e-5  # ~1,400 rows x 3 columns
    (project_dir / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project_dir)
    with pytest.raises(SystemExit, match=r"train_ranker: .*lower ranker\.max_train_sessions"):
        require_memory([part], folds, 200,
                       section(RankerConfig, "ranker", neg_sample_rate=1.0, max_train_sessions=0))
    # a capped sample of training sessions and few negatives fit
    no_eval = assign_folds(pl.Series("session", range(200)), 0.0, seed=1)
    require_memory([part], no_eval, 200,
                   section(RankerConfig, "ranker", neg_sample_rate=0.01, max_train_sessions=5))
