"""params.yaml, read into frozen dataclasses.

Every stage reads its own section once with :func:`load_section`; unknown keys are rejected so a
typo in params.yaml fails loudly instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml is missing a section, has an unknown key, or a value of the wrong type."""


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: params file not found")
    with path.open(encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    return params


def from_dict(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``values``, recursing into nested dataclass fields.

    Raises ParamsError naming ``where`` (e.g. ``params.yaml:data``) for unknown or missing keys.
    """
    if not isinstance(values, dict):
        raise ParamsError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name not in values:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ParamsError(f"{where}: missing key {name!r}")
            continue
        value = values[name]
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value, f"{where}.{name}")
        elif typing.get_origin(hint) is dict and value is not None:
            _, vtype = typing.get_args(hint)
            if dataclasses.is_dataclass(vtype):
                value = {k: from_dict(vtype, v, f"{where}.{name}.{k}") for k, v in value.items()}
        elif typing.get_origin(hint) in (list, tuple) and value is not None:
            value = tuple(value) if typing.get_origin(hint) is tuple else list(value)
        elif hint is float and isinstance(value, int):
            value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


def load_section(cls: type[T], section: str, path: str | Path = PARAMS_FILE) -> T:
    """Read ``section`` of params.yaml (dotted names allowed) into dataclass ``cls``."""
    params = read_params(path)
    node: Any = params
    for part in section.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{path}: missing section {section!r}")
        node = node[part]
    return from_dict(cls, node, f"{path}:{section}")


def seed(path: str | Path = PARAMS_FILE) -> int:
    params = read_params(path)
    if "seed" not in params:
        raise ParamsError(f"{path}: missing top-level 'seed'")
    return int(params["seed"])


def as_dict(cfg: Any) -> dict[str, Any]:
    """The resolved params, to save beside a model."""
    return dataclasses.asdict(cfg)
