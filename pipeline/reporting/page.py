"""The report page: blocks (heading, paragraph, image, table) rendered to Markdown and HTML.

The two renderings are Jinja2 templates (pipeline/reporting/templates/page.md.j2, page.html.j2);
``fmt`` is how every number on the page is written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from core import raw
from pipeline.reporting.analysis import flatten

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Page:
    """A title and blocks: ("h2", text), ("p", text), ("img", (file name, alt)), ("table", (head, rows)).

    Text may hold `code` spans (Markdown backticks); the HTML rendering escapes the rest.
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def image(self, name: str, alt: str) -> None:
        self.blocks.append(("img", (name, alt)))

    def table(self, head: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (head, rows)))

    def images(self) -> list[str]:
        return [value[0] for kind, value in self.blocks if kind == "img"]

    def markdown(self) -> str:
        return _render("page.md.j2", self)

    def html(self) -> str:
        return _render("page.html.j2", self)


def _inline_html(text: str) -> Markup:
    """``text`` escaped, with `code` spans as <code> elements."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _environment(autoescape: bool) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=autoescape, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
    env.filters["inline"] = _inline_html
    return env


def _render(template: str, page: Page) -> str:
    env = _environment(autoescape=template.endswith(".html.j2"))
    return env.get_template(template).render(title=page.title, blocks=page.blocks)


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def frame_rows(frame: pl.DataFrame) -> list[list[str]]:
    return [[fmt(v) for v in row] for row in frame.iter_rows()]


def nested_tables(top: str, value: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """A nested dict as tables: a row per path to a leaf's parent, a column per leaf name; one table
    per path depth (so {"task1": {"n": 1, "covis": {"mrr": .3}}} gives an "n" table and a "mrr" table)."""
    by_depth: dict[int, dict[str, dict[str, Any]]] = {}
    for path, leaf in flatten(value):
        by_depth.setdefault(len(path), {}).setdefault(" / ".join(path[:-1]) or top, {})[path[-1]] = leaf
    tables = []
    for _, rows in sorted(by_depth.items()):
        columns = list(dict.fromkeys(c for row in rows.values() for c in row))
        if set(columns) <= set(raw.LOCALES):
            columns = [loc for loc in raw.LOCALES if loc in columns]
        tables.append((top, [""] + columns,
                       [[name] + [fmt(row.get(c)) for c in columns] for name, row in rows.items()]))
    return tables
