"""The union frame's per-source column names, written in one place: ``cand_<name>_score`` and
``cand_<name>_rank`` for every source of params ``candidates.sources``."""

from __future__ import annotations

import re
from collections.abc import Iterable

_SCORE = re.compile(r"^cand_(.+)_score$")


def score_col(name: str) -> str:
    return f"cand_{name}_score"


def rank_col(name: str) -> str:
    return f"cand_{name}_rank"


def source_names(columns: Iterable[str]) -> list[str]:
    """Names of the sources whose score and rank columns are both in ``columns``, in column order."""
    columns = list(columns)
    present = set(columns)
    return [m.group(1) for c in columns if (m := _SCORE.match(c)) and rank_col(m.group(1)) in present]
