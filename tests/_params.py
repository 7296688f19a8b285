"""Configs for tests: the repository's params.yaml section, then the test's overrides.

params.yaml is the only source of values (core.config), so a test that wants a smaller or
different setting says which, instead of leaning on dataclass defaults that no longer exist.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from core import config

T = TypeVar("T")

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def section(cls: type[T], name: str, **overrides: Any) -> T:
    """``cls`` read from params.yaml's ``name`` section, with ``overrides`` replaced."""
    return dataclasses.replace(config.load_section(cls, name, PARAMS), **overrides)


def source_defaults() -> dict[str, dict[str, Any]]:
    """params.yaml ``source_defaults``: registry type -> every knob of its Config."""
    from candidates.union import load_source_defaults

    return load_source_defaults(PARAMS)


def source_config(kind: str, **knobs: Any) -> Any:
    """The Config of candidate source type ``kind``: params.yaml ``source_defaults.<kind>`` with ``knobs``
    replaced (an unknown knob is a ParamsError, as in a params entry)."""
    from candidates.registry import source_class

    return config.from_dict(source_class(kind).Config, {**source_defaults()[kind], **knobs}, f"test {kind}")


def source(kind: str, seed: int = 0, **knobs: Any) -> Any:
    """An unfitted candidate source of type ``kind`` (:func:`source_config`)."""
    from candidates.registry import source_class

    return source_class(kind)(source_config(kind, **knobs), seed)


def sources(specs: dict[str, dict[str, Any]], seed: int) -> list:
    """``candidates.union.build_sources`` of params-style entries, completed from ``source_defaults``."""
    from candidates.union import build_sources, with_defaults

    return build_sources(with_defaults(specs, source_defaults()), seed)


def synthetic_config() -> Any:
    """params.yaml ``synthetic``: the generated world's knobs."""
    from pipeline.synthetic import SyntheticConfig

    return section(SyntheticConfig, "synthetic")
