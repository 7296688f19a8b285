"""params.yaml, read into frozen dataclasses.

Every stage reads its own section once with :func:`load_section`. params.yaml is the only source of
values: an unknown key, a missing key or a value of the wrong type is a ParamsError naming the
key, so a typo or a deleted line fails loudly instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import types
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


def from_dict(cls: type[T], values: dict[str, Any], where: str, *, complete: bool = False) -> T:
    """Build dataclass ``cls`` from ``values``, recursing into nested dataclass fields.

    Every value is checked against its field's annotation (int, float, bool, str, tuple/list/dict
    of those, ``X | None``, nested dataclasses; an int is accepted for a float, a bool never for a
    number). ``complete=True`` (every params.yaml section a stage reads, see :func:`load_section`)
    requires every field, so a dataclass default never applies: params.yaml is the one source of
    values. ``complete=False`` lets ``values`` name only some fields; it is for the per-entry knobs of
    ``candidates.sources`` (candidates/union.py), where an entry names the knobs it sets.

    Raises ParamsError naming the key (e.g. ``params.yaml:split.valid_fraction``) for an unknown,
    missing or mistyped key.
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
            no_default = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            if complete or no_default:
                raise ParamsError(f"{where}: missing key {name!r} ({where}.{name})")
            continue
        kwargs[name] = _convert(values[name], hints[name], f"{where}.{name}", complete)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # a dataclass's own validation (__post_init__)
        raise ParamsError(f"{where}: {err}") from err


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _convert(value: Any, hint: Any, where: str, complete: bool) -> Any:
    """``value`` checked against annotation ``hint`` (and converted: list -> tuple, int -> float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where, complete)
            except ParamsError as err:
                errors.append(err)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where, complete=complete)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where}: expected a list ({_type_name(hint)}), "
                              f"got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        items = [_convert(v, item, f"{where}[{i}]", complete) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping ({_type_name(hint)}), "
                              f"got {type(value).__name__} {value!r}")
        ktype, vtype = args if args else (Any, Any)
        return {_convert(k, ktype, f"{where} key", complete): _convert(v, vtype, f"{where}.{k}", complete)
                for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
            raise ParamsError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
        return value
    return value


def load_section(cls: type[T], section: str, path: str | Path = PARAMS_FILE) -> T:
    """Read ``section`` of params.yaml (dotted names allowed) into dataclass ``cls``: every field
    must be there with its annotated type (``from_dict(complete=True)``)."""
    params = read_params(path)
    node: Any = params
    for part in section.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{path}: missing section {section!r}")
        node = node[part]
    return from_dict(cls, node, f"{path}:{section}", complete=True)


def seed(path: str | Path = PARAMS_FILE) -> int:
    params = read_params(path)
    if "seed" not in params:
        raise ParamsError(f"{path}: missing top-level 'seed'")
    if not isinstance(params["seed"], int) or isinstance(params["seed"], bool):
        raise ParamsError(f"{path}: seed: expected int, got {params['seed']!r}")
    return params["seed"]


def as_dict(cfg: Any) -> dict[str, Any]:
    """The resolved params, to save beside a model."""
    return dataclasses.asdict(cfg)
