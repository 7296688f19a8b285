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

from core.errors import StageError

T = TypeVar("T")

PARAMS_FILE = Path("params.yaml")


class ParamsError(StageError, ValueError):
    """params.yaml is missing a section, has an unknown key, or a value of the wrong type."""


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: params file not found")
    with path.open(encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    return apply_files_overrides(params, path)


def apply_files_overrides(params: dict[str, Any], path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """``params`` with section ``files_overrides`` applied when ``data.source`` is ``files``.

    ``files_overrides`` maps dotted keys (``ranker.neg_sample_rate``) to the values the real
    competition files run with, so `make real` and ``dvc exp run -S data.source=files`` read one list.
    A dotted key may add the last key (a source entry that leaves a knob to source_defaults), never a
    section: a key whose parent is missing is a ParamsError naming it.
    """
    overrides = params.get("files_overrides") or {}
    if not isinstance(overrides, dict):
        raise ParamsError(f"{path}:files_overrides: expected a mapping of dotted keys")
    if (params.get("data") or {}).get("source") != "files":
        return params
    for dotted, value in overrides.items():
        *parents, last = str(dotted).split(".")
        node: Any = params
        for i, part in enumerate(parents):
            if not isinstance(node, dict) or not isinstance(node.get(part), dict):
                where = ".".join(parents[: i + 1])
                raise ParamsError(f"{path}:files_overrides: {dotted!r}: no section {where!r}")
            node = node[part]
        node[last] = value
    return params


def from_dict(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``values``, recursing into nested dataclass fields.

    Every field must be in ``values`` (a dataclass default never applies: params.yaml is the one
    source of values), and every value is checked against its field's annotation (int, float, bool,
    str, tuple/list/dict of those, ``X | None``, nested dataclasses; an int is accepted for a float, a
    bool never for a number).

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
    for name in fields:
        if name not in values:
            raise ParamsError(f"{where}: missing key {name!r} ({where}.{name})")
        kwargs[name] = _convert(values[name], hints[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # a dataclass's own validation (__post_init__)
        raise ParamsError(f"{where}: {err}") from err


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _convert(value: Any, hint: Any, where: str) -> Any:
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
                return _convert(value, arg, where)
            except ParamsError as err:
                errors.append(err)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where}: expected a list ({_type_name(hint)}), "
                              f"got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        items = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping ({_type_name(hint)}), "
                              f"got {type(value).__name__} {value!r}")
        ktype, vtype = args if args else (Any, Any)
        return {_convert(k, ktype, f"{where} key"): _convert(v, vtype, f"{where}.{k}")
                for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
            raise ParamsError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
        return value
    return value


def section(name: str, path: str | Path = PARAMS_FILE) -> Any:
    """The raw value of section ``name`` of params.yaml (dotted names allowed)."""
    node: Any = read_params(path)
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{path}: missing section {name!r}")
        node = node[part]
    return node


def load_section(cls: type[T], name: str, path: str | Path = PARAMS_FILE) -> T:
    """Read section ``name`` of params.yaml (dotted names allowed) into dataclass ``cls``: every field
    must be there with its annotated type (:func:`from_dict`)."""
    return from_dict(cls, section(name, path), f"{path}:{name}")


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
