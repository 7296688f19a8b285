"""Resource guards: refuse, before any work, params that would hold more rows than the memory budget.

An out-of-memory kill says nothing about which knob was too big and can leave a machine unusable
for minutes; the stages that materialise candidate rows (``candidates``, ``features``; ``predict`` and
``train_ranker`` read the feature parts one at a time, so the features check bounds them) instead
check the worst case their params allow against ``resources.memory_budget_gib`` and stop with an
error naming the knobs to lower.

The estimate is rows x columns x ``BYTES_PER_CELL``: int32/float32 columns are 4 bytes, and a polars
join or sort holds its input and its output at once, hence 8.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.errors import StageError

BYTES_PER_CELL = 8
GIB = 1 << 30

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResourcesConfig:
    memory_budget_gib: float          # what one stage may hold in candidate/feature rows at once


class ResourceBudgetError(StageError, RuntimeError):
    """The params would build more rows at once than ``resources.memory_budget_gib`` allows."""


def estimate_gib(rows: int, columns: int) -> float:
    return rows * columns * BYTES_PER_CELL / GIB


def check_rows(what: str, rows: int, columns: int, cfg: ResourcesConfig, knobs: str) -> float:
    """Raise ResourceBudgetError when ``rows`` x ``columns`` exceed the budget; else return the GiB estimate.

    Args:
        what: the stage and the frame, for the message ("candidates: one chunk's source outputs").
        rows, columns: the worst case the params allow.
        knobs: the params keys that set ``rows`` (named in the message so the user knows what to lower).
    """
    need = estimate_gib(rows, columns)
    if need > cfg.memory_budget_gib:
        raise ResourceBudgetError(
            f"{what}: params allow {rows:,} rows x {columns} columns at once, about {need:.1f} GiB, over "
            f"resources.memory_budget_gib = {cfg.memory_budget_gib:g}; lower {knobs} (or raise the budget "
            f"on a bigger machine)")
    return need


def require(what: str, rows: int, columns: int, cfg: ResourcesConfig, knobs: str) -> None:
    """:func:`check_rows` for a stage's ``main``: log the estimate, or exit with the message (no
    traceback)."""
    try:
        need = check_rows(what, rows, columns, cfg, knobs)
    except ResourceBudgetError as exc:
        raise SystemExit(f"error: {exc}") from None
    log.info("%s: memory estimate %.2f GiB", what, need)
