"""Configs for tests: the repository's params.yaml section, then the test's overrides.

params.yaml is the only source of values (pipeline.config), so a test that wants a smaller or
different setting says which, instead of leaning on dataclass defaults that no longer exist.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from pipeline import config

T = TypeVar("T")

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def section(cls: type[T], name: str, **overrides: Any) -> T:
    """``cls`` read from params.yaml's ``name`` section, with ``overrides`` replaced."""
    return dataclasses.replace(config.load_section(cls, name, PARAMS), **overrides)
