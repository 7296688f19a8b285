"""The report's figures: each takes a frame shaped by pipeline.reporting.analysis and writes one PNG.

Same inputs give byte-identical files (no "Software" metadata, fixed sizes and orders). A method has
one colour everywhere (:func:`method_colours`): a candidate source is the same colour in the recall
curves and, as ``source_<name>``, on the leaderboard.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from core.io import atomic_path
from pipeline.reporting.analysis import locale_order

log = logging.getLogger(__name__)

# Feature-name prefixes (STYLE.md practice 8) -> the family a bar is coloured by.
FAMILIES = (("cand_", "candidate source"), ("si_", "session-item"), ("s_", "session"), ("i_", "item"))


def _save(fig: Figure, path: Path, dpi: int) -> None:
    # No "Software" metadata: same inputs give byte-identical files across matplotlib versions.
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    log.info("wrote %s", path)


def plot_session_lengths(lengths: pl.DataFrame, path: Path, dpi: int) -> None:
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for locale in locale_order(lengths):
        part = lengths.filter(pl.col("locale") == locale)
        share = part["sessions"] / part["sessions"].sum()
        ax.plot(part["length"].to_numpy(), share.to_numpy(), marker=".", linewidth=1, label=locale)
    # Both axes log: real sessions run past 100 items, but most of the mass sits below 10.
    ax.set_xscale("log")
    ax.set_yscale("log")
    longest = int(lengths["length"].max() or 1)
    ticks = [t for t in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= longest]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("session length (items, target included; log)")
    ax.set_ylabel("share of train sessions (log)")
    ax.set_title("Session length per locale")
    ax.grid(alpha=0.3)
    ax.legend(ncol=2)
    _save(fig, path, dpi)


def plot_popularity(curve: pl.DataFrame, path: Path, dpi: int) -> None:
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for locale in locale_order(curve):
        part = curve.filter(pl.col("locale") == locale)
        ax.plot(part["rank"].to_numpy(), part["count"].to_numpy(), linewidth=1.2, label=locale)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("item popularity rank in its locale (log)")
    ax.set_ylabel("views (log)")
    ax.set_title("Product popularity long tail")
    ax.grid(alpha=0.3, which="both")
    ax.legend(ncol=2)
    _save(fig, path, dpi)


def plot_repeats(repeats: pl.DataFrame, path: Path, dpi: int) -> None:
    order = pl.DataFrame({"locale": locale_order(repeats)}).with_row_index("_o")
    repeats = repeats.join(order, on="locale").sort("_o")
    x = np.arange(repeats.height)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for offset, column, label in ((-0.2, "repeated", "repeats an item"),
                                  (0.2, "consecutive", "consecutive duplicate")):
        bars = ax.bar(x + offset, repeats[column].to_numpy(), width=0.4, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, repeats["locale"].to_list())
    ax.set_ylabel("share of train sessions")
    ax.set_title("Sessions with repeated items")
    ax.set_ylim(0, max(1e-9, float(repeats["repeated"].max() or 0)) * 1.25)
    ax.legend()
    _save(fig, path, dpi)


def plot_overlap(overlap: pl.DataFrame, path: Path, dpi: int) -> None:
    locales = locale_order(overlap, "locale_a")
    index = {loc: i for i, loc in enumerate(locales)}
    matrix = np.zeros((len(locales), len(locales)))
    for a, b, value in overlap.iter_rows():
        matrix[index[a], index[b]] = value
    fig = Figure(figsize=(5.6, 4.8))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    for i in range(len(locales)):
        for j in range(len(locales)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if matrix[i, j] > 0.6 else "white")
    ax.set_xticks(range(len(locales)), locales)
    ax.set_yticks(range(len(locales)), locales)
    ax.set_xlabel("locale B")
    ax.set_ylabel("locale A")
    ax.set_title("Product overlap |A and B| / |A|")
    fig.colorbar(image, ax=ax)
    _save(fig, path, dpi)


def method_colours(names: list[str]) -> dict[str, str]:
    """One colour per method, the same in every plot: ``source_<name>`` is coloured as ``<name>``.

    Colours follow the sorted names: tab20's ten strong hues first, then its ten light ones, then
    tab20b and tab20c (60 before any repeats), so neighbours in the order do not share a hue and a
    method keeps its colour wherever it appears on the page.
    """
    tab20 = [colormaps["tab20"](i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
    palette = tab20 + [colormaps[name](i) for name in ("tab20b", "tab20c") for i in range(20)]
    keys = sorted({_colour_key(n) for n in names})
    to_hex = {key: "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in palette[i % len(palette)][:3]))
              for i, key in enumerate(keys)}
    return {name: to_hex[_colour_key(name)] for name in names}


def _colour_key(name: str) -> str:
    return name.removeprefix("source_")


def plot_recall(curves: pl.DataFrame, path: Path, dpi: int, colours: dict[str, str]) -> None:
    """Recall@K per source and for the union; a source's curve stops where it was measured.

    ``curves``: analysis.recall_curves (a source with a ``max_rank`` has points only up to it, and
    one at it), so a short list does not read as a flat line to K = 200.
    """
    by_locale = curves.filter(pl.col("scope") == "locale")
    fig = Figure(figsize=(14 if by_locale.height else 9, 5.5))
    axes = fig.subplots(1, 2 if by_locale.height else 1, squeeze=False)[0]
    panels = [(axes[0], curves.filter(pl.col("scope") == "source"), "per source (overall)")]
    if by_locale.height:
        panels.append((axes[1], by_locale, "union per locale"))
    for ax, frame, title in panels:
        ends = []
        for i, ((name,), part) in enumerate(frame.group_by("name", maintain_order=True)):
            union = name == "union"
            # locales get their own palette (Dark2), so no locale line takes a method's colour
            colour = "black" if union else colours.get(name) or colormaps["Dark2"](i % 8)
            ax.plot(part["k"].to_numpy(), part["recall"].to_numpy(), marker="o", markersize=3,
                    linewidth=2.5 if union else 1.2, color=colour, label=name)
            if part.height:  # named where it ends: at its deepest rank, or the last K
                ends.append((name, float(part["k"][-1]), float(part["recall"][-1]), colour))
        ax.set_xscale("log")
        # Ticks at the measured K grid (the union's), and at the caps below it; caps between grid
        # points (25, 40, 45) sit too close to label.
        grid = sorted(set(frame.filter(pl.col("name") == "union")["k"].to_list())) or sorted(set(frame["k"]))
        ks = sorted(set(grid) | {k for k in frame["k"].to_list() if k < grid[0]})
        ax.set_xticks(ks, [str(k) for k in ks], fontsize=7)
        ax.set_xlim(min(ks) / 1.15, max(ks) * 1.6)  # room on the right for the end labels
        ax.minorticks_off()
        ax.set_xlabel("K (log); a source's curve ends at its k")
        ax.set_ylabel("recall@K")
        ax.set_title(f"Candidate recall@K, {title}")
        ax.grid(alpha=0.3, which="both")
        _end_labels(ax, ends)
    # The legend outside the axes, so it never covers a curve.
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0 if len(axes) == 1 else -0.02, -0.12),
                   ncol=6 if len(axes) > 1 else 4, frameon=False)
    _save(fig, path, dpi)


def _end_labels(ax, ends: list[tuple[str, float, float, str]], gap: float = 0.045) -> None:
    """Name each curve at its last point; labels of curves that end at nearby K are pushed apart
    vertically (at least ``gap`` of the y range) so none overlaps another."""
    low, high = ax.get_ylim()
    step = gap * (high - low)
    placed: list[tuple[float, float]] = []  # (x, y) of labels already placed
    for name, x, y, colour in sorted(ends, key=lambda e: (e[2], e[0])):
        y_text = y
        for px, py in placed:
            if abs(np.log(px / x)) < 0.25 and y_text < py + step:
                y_text = py + step
        placed.append((x, y_text))
        ax.annotate(name, (x, y), xytext=(x * 1.06, y_text), textcoords="data", fontsize=7, va="center",
                    color=colour, arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.5}
                    if abs(y_text - y) > step / 2 else None)
    if placed:
        ax.set_ylim(low, max(high, max(py for _, py in placed) + step))


def plot_importance(table: pl.DataFrame, path: Path, dpi: int, top: int) -> None:
    table = table.head(top)
    fig = Figure(figsize=(7, 1.5 + 0.25 * table.height))
    ax = fig.add_subplot()
    names = table["feature"].to_list()
    family = [next((label for prefix, label in FAMILIES if n.startswith(prefix)), "other") for n in names]
    palette = {label: f"C{i}" for i, label in enumerate([f for _, f in FAMILIES] + ["other"])}
    y = np.arange(len(names))[::-1]
    ax.barh(y, table["gain_share"].to_numpy(), color=[palette[f] for f in family])
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("share of total gain")
    ax.set_title(f"Ranker feature importance (top {table.height})")
    ax.legend(handles=[Patch(color=palette[label], label=label) for label in dict.fromkeys(family)],
              fontsize=8, loc="lower right")
    _save(fig, path, dpi)


PUBLISHED = "submission"  # the leaderboard's name for the published files (pipeline.score)


def _bar_colour(method: str, part: pl.DataFrame, colours: dict[str, str]) -> str:
    """A method's colour; the published files take the colour of the method they equal (hatched)."""
    if method == PUBLISHED:
        score = part.filter(pl.col("method") == method)["score"][0]
        twins = part.filter((pl.col("method") != method) & (pl.col("score") == score))["method"].to_list()
        if twins:
            return colours[sorted(twins)[0]]
    return colours[method]


def plot_leaderboard(board: pl.DataFrame, path: Path, dpi: int, colours: dict[str, str]) -> None:
    """One panel per dataset (task and phase): its methods as horizontal bars, best on top, the value
    at the end of each bar, the oracle ceiling as a dashed line where there is one.

    ``board``: analysis.leaderboard_frame; ``colours``: method_colours over every method.
    """
    tasks = sorted(set(board["task"]))
    columns = 2 if len(tasks) > 1 else 1
    rows = -(-len(tasks) // columns)
    most = max(board.group_by("task").len()["len"].max() or 1, 1)
    fig = Figure(figsize=(6.5 * columns, rows * (1.0 + 0.24 * most)))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, task in zip(axes, tasks, strict=False):
        part = board.filter(pl.col("task") == task).sort(["score", "method"], descending=[False, True])
        metric = part["metric"][0]
        y = np.arange(part.height)
        scores = part["score"].to_numpy()
        methods = part["method"].to_list()
        bars = ax.barh(y, scores, color=[_bar_colour(m, part, colours) for m in methods], height=0.7,
                       hatch=["//" if m == PUBLISHED else "" for m in methods], edgecolor="white")
        ax.bar_label(bars, fmt="%.4f", fontsize=7, padding=2)
        ax.set_yticks(y, part["method"].to_list(), fontsize=7)
        ceiling = part["ceiling"].max()
        right = max(float(scores.max() or 0.0), float(ceiling or 0.0), 1e-9)
        if ceiling is not None:
            ax.axvline(ceiling, color="red", linestyle="--", linewidth=1)
            ax.annotate(f"oracle ceiling {ceiling:.4f}", (ceiling, part.height - 0.5), fontsize=7,
                        color="red", ha="right", va="bottom", xytext=(-2, 2), textcoords="offset points")
        ax.set_xlim(0, right * 1.18)  # room for the value labels
        ax.set_ylim(-0.6, part.height - 0.4 + (0.6 if ceiling is not None else 0))
        ax.set_xlabel(metric)
        ax.set_title(task, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    fig.suptitle("Local leaderboard (sorted; one colour per method in every panel; hatched: the published "
                 "submission, in the colour of the method it equals)")
    _save(fig, path, dpi)
