"""Shared fixtures: a tiny generated world, prepared and split, built once per test session."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "kdd_format_sample"
TINY_SCALE = 0.005
SEED = 7


@dataclass
class TinyWorld:
    root: Path
    raw: Path
    prepared: Path
    split: Path

    def read(self, name: str) -> pl.DataFrame:
        return pl.read_parquet(self.prepared / f"{name}.parquet")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE.exists():
        pytest.fail(f"{SAMPLE} is missing: the shared/ folder must sit beside the repository")
    return SAMPLE


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> TinyWorld:
    """Synthetic data at TINY_SCALE, run through prepare and split (the real stage cores)."""
    from pipeline import prepare, split, synthetic
    from tests._params import section, synthetic_config

    root = tmp_path_factory.mktemp("world")
    raw_dir = root / "data" / "raw"
    synthetic.generate(raw_dir, scale=TINY_SCALE, seed=SEED, cfg=synthetic_config())
    products, train, tests, _ = prepare.read_raw(raw_dir, "raise")
    prepared = prepare.prepare(products, train, tests)
    prepared_dir = root / "data" / "prepared"
    prepared_dir.mkdir(parents=True)
    for name in ("items", "sessions", "events", "targets"):
        getattr(prepared, name).write_parquet(prepared_dir / f"{name}.parquet")
    split_dir = root / "data" / "split"
    # the tiny world holds out 10% of its sessions, uncapped (params.yaml: 25%, at most 60,000)
    cfg = section(split.SplitConfig, "split", valid_fraction=0.1, max_valid_sessions=0)
    folds = split.make_folds(prepared.sessions, prepared.events, prepared.targets, cfg, SEED)
    for name, fold in folds.items():
        (split_dir / name).mkdir(parents=True)
        fold.history.write_parquet(split_dir / name / "history.parquet")
        fold.queries.write_parquet(split_dir / name / "queries.parquet")
        if fold.targets is not None:
            fold.targets.write_parquet(split_dir / name / "targets.parquet")
    return TinyWorld(root, raw_dir, prepared_dir, split_dir)


@pytest.fixture()
def project_dir(tmp_path) -> Path:
    """A scratch directory holding a copy of params.yaml, to run stage mains in."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path
