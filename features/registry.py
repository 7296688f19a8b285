"""Feature families, in the order they run, and the feature columns the ranker uses.

The ranker's feature list is whatever columns the families produced with an entity prefix; no
hand-kept list of names exists anywhere.
"""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILIES: dict[str, str] = {
    "candidate": "features.candidate",
    "session": "features.session",
    "item": "features.item",
    "session_item": "features.session_item",
    "cross_locale": "features.cross_locale",
    "deep": "features.deep",
}

PREFIXES = ("cand_", "s_", "i_", "si_")

# An upper bound on the columns the families add to a candidate frame, for the memory guard
# (core.guards); tests/test_guards.py checks the families stay within it.
FAMILY_COLUMNS = 90

# Integer codes that are categories, not magnitudes.
CATEGORICAL = ("s_locale",)


def family(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise KeyError(f"unknown feature family {name!r}; known: {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])


def feature_columns(columns: list[str]) -> list[str]:
    """The model's features among ``columns``, in frame order."""
    return [c for c in columns if c.startswith(PREFIXES)]
