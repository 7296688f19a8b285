"""What both Task 3 stages (``task3``, ``task3_mt5``) read the same way: references and test sessions.

Validation = the held-out train sessions of data/split/valid, target title = the target item's
catalogue title; test = the task3_phase{P} sessions in file row order.
"""

from __future__ import annotations

import logging

import polars as pl

log = logging.getLogger(__name__)


def valid_references(queries: pl.DataFrame, targets: pl.DataFrame, titles: pl.DataFrame) -> pl.DataFrame:
    """session, locale, target, ref_title, ref (tokens): held-out sessions whose target has a title."""
    return (queries.select("session", "locale")
            .join(targets.select("session", target="item"), on="session")
            .join(titles.select(target="item", ref_title="title", ref="tokens"), on="target")
            .sort("session"))


def test_sessions(sessions: pl.DataFrame, phase: int) -> pl.DataFrame:
    return (sessions.filter(pl.col("dataset") == f"task3_phase{phase}").sort("row")
            .select("session", "locale", "row"))


def no_titles(titles: pl.DataFrame, refs: pl.DataFrame, method: str) -> dict | None:
    """None when ``method`` can learn; else the metrics that say why not (logged)."""
    if refs.height:
        return None
    log.warning("%s: %d catalogue items have a title, no held-out target has one: not trained; its "
                "submissions hold the last title of each session ('' where no session item has a title)",
                method, titles.height)
    return {"skipped": "no titles", "titled_items": titles.height, "n_sessions": 0}
