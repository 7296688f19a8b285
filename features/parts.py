"""The on-disk layout of a split's feature frame: ``<dir>/part-<n>.parquet``, one part per session chunk.

Written by the features stage (either engine), read part by part by train_ranker and predict.
"""

from __future__ import annotations

from pathlib import Path

PART = "part-{:05d}.parquet"


def part_path(features_dir: str | Path, n: int) -> Path:
    return Path(features_dir) / PART.format(n)


def part_paths(features_dir: str | Path) -> list[Path]:
    """The feature parts of a split, in session order."""
    return sorted(Path(features_dir).glob("part-*.parquet"))
