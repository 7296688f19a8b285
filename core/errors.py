"""Errors the user fixes, and the stage-main wrapper that reports them in one line.

A :class:`StageError` is a wrong value in params.yaml (:class:`core.config.ParamsError`), a malformed
raw file (:class:`core.raw.RawDataError`), a frame without the columns a stage needs
(:class:`core.schemas.SchemaError`), a submission that would be rejected
(:class:`core.submission.SubmissionError`) or params that exceed the memory budget
(:class:`core.guards.ResourceBudgetError`). Every stage main under pipeline/ and every ``m2`` command
is wrapped in :func:`exit_on_error`: such an error, or an input file that does not exist, ends the
process with exit status 1 and one line on stderr naming the key, file or field, e.g.
``error: params.yaml:candidates.sources.covisit_fwd: needs 'type' and 'k'``, without a traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from typing import TypeVar


class StageError(Exception):
    """An error in the user's params or files, not in the code: reported as one line."""


F = TypeVar("F", bound=Callable)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (libraries append context lines to missing-file errors)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, FileNotFoundError):
        if exc.filename is not None:
            return f"{exc.filename}: file not found"
        named = re.search(r"\(os error 2\):\s*(\S+)", lines[0]) if lines else None  # polars' wording
        if named:
            return f"{named[1]}: file not found"
    return lines[0] if lines else type(exc).__name__


def exit_on_error(main: F) -> F:
    """Decorate a stage main or CLI command: a StageError or a missing input file becomes one
    ``error: ...`` line on stderr and exit status 1, no traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (StageError, FileNotFoundError) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]
