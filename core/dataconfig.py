"""The ``data`` section of params.yaml: where the raw competition files come from.

Read by the stages ``generate`` (which builds data/raw), ``prepare`` (which parses it) and ``publish``; a
library
module of its own so that neither stage imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.raw import TEST_DATASETS


@dataclass(frozen=True)
class DataConfig:
    source: str
    raw_dir: str
    scale: float
    on_error: str
    test_files: tuple[str, ...]  # the test files that exist; a listed one absent is an error

    def __post_init__(self) -> None:
        if self.source not in ("synthetic", "files"):
            raise ValueError(f"data.source must be 'synthetic' or 'files', got {self.source!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"data.on_error must be 'raise' or 'skip', got {self.on_error!r}")
        unknown = sorted(set(self.test_files) - set(TEST_DATASETS))
        if unknown or len(set(self.test_files)) != len(self.test_files):
            raise ValueError(
                f"data.test_files: {list(self.test_files)} must list distinct names of {TEST_DATASETS}"
            )
