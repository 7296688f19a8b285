"""Stage ``report``: the dataset analysis plots and one results page.

    python -m pipeline.report --prepared data/prepared --metrics metrics --plots plots --out reports

Writes under --out PNG plots and one page twice: ``index.md`` (Markdown, relative image links) and
``index.html`` (the same content with <img> tags, opens in a browser).

The dataset analysis reads only data/prepared (see pipeline/schemas.py), so it runs on generated and
real files alike: session length distribution per locale, product popularity long tail, share of
sessions with a repeated item, and the locale-by-locale product overlap heatmap.

The results come from files other stages write under --metrics and --plots, each optional (the page
then says "not produced by this run"):
  metrics/recall.json            stage ``recall``: recall@K per candidate source and for the union
  metrics/ranker.json            stage ``train_ranker``: the ranker's validation MRR@100
  plots/ranker_importance.csv    stage ``train_ranker``: feature, gain_share, gain, split
  metrics/leaderboard.json       stage ``score``: {"task1_phase1": {method: {"all": {...}, "DE": {...}}}}
  metrics/data_stats.json        stage ``stats``: the data report, shown as tables
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from pipeline import config, raw, schemas
from pipeline.io import atomic_path, setup_logging, timed, write_text

log = logging.getLogger(__name__)

RECALL, RANKER, IMPORTANCE, LEADERBOARD, DATA_STATS = (
    "recall.json", "ranker.json", "ranker_importance.csv", "leaderboard.json", "data_stats.json")
PLOTS = {
    "session_length": "session_length.png",
    "popularity": "popularity_tail.png",
    "repeats": "repeats.png",
    "overlap": "locale_overlap.png",
    "recall": "recall_curves.png",
    "importance": "feature_importance.png",
    "leaderboard": "leaderboard.png",
}
MISSING = "not produced by this run"
# Feature-name prefixes (STYLE.md practice 8) -> the family a bar is coloured by.
FAMILIES = (("cand_", "candidate source"), ("si_", "session-item"), ("s_", "session"), ("i_", "item"))


@dataclass(frozen=True)
class Results:
    """Where the other stages' files are; any may be absent."""

    recall: Path
    ranker: Path
    importance: Path
    leaderboard: Path
    data_stats: Path

    @classmethod
    def under(cls, metrics: Path, plots: Path) -> Results:
        return cls(metrics / RECALL, metrics / RANKER, plots / IMPORTANCE, metrics / LEADERBOARD,
                   metrics / DATA_STATS)


@dataclass(frozen=True)
class ReportConfig:
    top_features: int        # bars in the feature-importance plot
    tail_points: int         # points per decade of rank kept for the popularity curve
    dpi: int


# --------------------------------------------------------------------------------------------
# Dataset analysis: pure functions of the prepared frames.
# --------------------------------------------------------------------------------------------

def _locale_order(frame: pl.DataFrame, column: str = "locale") -> list[str]:
    present = set(frame.get_column(column).unique().to_list())
    return [loc for loc in raw.LOCALES if loc in present] + sorted(present - set(raw.LOCALES))


def interactions(sessions: pl.DataFrame, events: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Every viewed item: prev_items of all sessions plus each train target.

    Returns session:Int32, locale:String, item:Int32.
    """
    viewed = pl.concat([events.select("session", "item"), targets.select("session", "item")])
    return viewed.join(sessions.select("session", "locale"), on="session").select("session", "locale", "item")


def session_lengths(sessions: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Length distribution of train sessions, target included (as the paper counts them).

    Returns locale:String, length:Int32, sessions:UInt32, sorted by locale and length.
    """
    return (sessions.filter(pl.col("dataset") == "train")
            .with_columns(length=pl.col("length")
                          + pl.col("session").is_in(targets["session"].implode()).cast(pl.Int32))
            .group_by("locale", "length").agg(sessions=pl.len())
            .sort("locale", "length"))


def repeat_shares(sessions: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Share of train sessions whose prev_items repeat an item, and hold a consecutive duplicate.

    The target never repeats a session item, so prev_items alone decide.
    Returns locale:String, sessions:UInt32, repeated:Float64, consecutive:Float64.
    """
    train = sessions.filter(pl.col("dataset") == "train").select("session", "locale")
    flags = (events.join(train, on="session", how="semi")
             .group_by("session").agg(
                 repeated=pl.col("item").n_unique() < pl.len(),
                 consecutive=(pl.col("item").sort_by("position").diff() == 0).any()))
    return (train.join(flags, on="session", how="left").fill_null(False)
            .group_by("locale").agg(sessions=pl.len(), repeated=pl.col("repeated").mean(),
                                    consecutive=pl.col("consecutive").mean())
            .sort("locale"))


def item_counts(viewed: pl.DataFrame) -> pl.DataFrame:
    """Views per item, ranked within its locale: locale, item, count:UInt32, rank:Int32 (1 = most viewed).

    Ties are broken by item index so the curve is deterministic.
    """
    return (viewed.group_by("locale", "item").agg(count=pl.len())
            .sort(["locale", "count", "item"], descending=[False, True, False])
            .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("locale")))


def tail_curve(counts: pl.DataFrame, points_per_decade: int) -> pl.DataFrame:
    """The rank-count curve thinned to about ``points_per_decade`` ranks per power of ten (a real
    locale has ~500k items; a log-log plot cannot show more). Keeps each locale's first and last rank.

    Returns locale:String, rank:Int32, count:UInt32.
    """
    bucket = (pl.col("rank").cast(pl.Float64).log10() * points_per_decade).floor()
    last = pl.col("rank") == pl.col("rank").max().over("locale")
    return (counts.filter((bucket != bucket.shift(1).over("locale")).fill_null(True) | last)
            .select("locale", "rank", "count").sort("locale", "rank"))


def top_share(counts: pl.DataFrame, fraction: float = 0.01) -> pl.DataFrame:
    """Share of views going to the top ``fraction`` of viewed items: locale, top_share:Float64."""
    cut = (pl.len() * fraction).ceil().clip(lower_bound=1)
    return (counts.group_by("locale")
            .agg(top_share=pl.col("count").filter(pl.col("rank") <= cut).sum() / pl.col("count").sum())
            .sort("locale"))


def locale_overlap(items: pl.DataFrame) -> pl.DataFrame:
    """|A and B| / |A| over the catalogue ASINs of each pair of locales (A = locale_a).

    Returns locale_a:String, locale_b:String, overlap:Float64, every pair (0 where none is shared).
    """
    catalogue = items.filter(pl.col("in_catalog")).select("id", "locale").unique()
    sizes = catalogue.group_by("locale").agg(size=pl.len()).rename({"locale": "locale_a"})
    shared = (catalogue.rename({"locale": "locale_a"})
              .join(catalogue.rename({"locale": "locale_b"}), on="id")
              .group_by("locale_a", "locale_b").agg(shared=pl.len()))
    locales = pl.DataFrame({"locale_a": _locale_order(catalogue)})
    return (locales.join(locales.rename({"locale_a": "locale_b"}), how="cross")
            .join(shared, on=["locale_a", "locale_b"], how="left")
            .join(sizes, on="locale_a", how="left")
            .select("locale_a", "locale_b",
                    overlap=(pl.col("shared").fill_null(0) / pl.col("size")).fill_null(0.0).fill_nan(0.0)))


def dataset_summary(items: pl.DataFrame, sessions: pl.DataFrame, viewed: pl.DataFrame,
                    lengths: pl.DataFrame, repeats: pl.DataFrame, tops: pl.DataFrame) -> pl.DataFrame:
    """One row per locale: train_sessions, catalogue_products, interactions, mean_length, repeated,
    consecutive, top1pct_share."""
    mean_length = lengths.group_by("locale").agg(
        mean_length=(pl.col("length") * pl.col("sessions")).sum() / pl.col("sessions").sum())
    products = items.filter(pl.col("in_catalog")).group_by("locale").agg(catalogue_products=pl.len())
    views = viewed.group_by("locale").agg(interactions=pl.len())
    frame = (repeats.rename({"sessions": "train_sessions"})
             .join(products, on="locale", how="full", coalesce=True)
             .join(views, on="locale", how="full", coalesce=True)
             .join(mean_length, on="locale", how="left")
             .join(tops, on="locale", how="left"))
    order = pl.DataFrame({"locale": _locale_order(frame)}).with_row_index("_order")
    return (frame.join(order, on="locale").sort("_order")
            .select("locale", "train_sessions", "catalogue_products", "interactions", "mean_length",
                    "repeated", "consecutive", "top_share"))


# --------------------------------------------------------------------------------------------
# Results files written by other stages, reshaped for plotting.
# --------------------------------------------------------------------------------------------

def recall_curves(report: dict) -> pl.DataFrame:
    """From recall.json: scope:String ("source" or "locale"), name:String, k:Int32, recall:Float64.

    scope "source": every source and the union, overall; scope "locale": the union per locale.
    """
    def curve(metrics: dict) -> list[tuple[int, float]]:
        return sorted((int(key.split("@")[1]), float(value)) for key, value in metrics.items()
                      if key.startswith("recall@"))

    overall = report["overall"]
    rows = [("source", name, k, r) for name, m in sorted(overall["sources"].items()) for k, r in curve(m)]
    rows += [("source", "union", k, r) for k, r in curve(overall["union"])]
    rows += [("locale", loc, k, r) for loc, part in report.get("by_locale", {}).items()
             for k, r in curve(part["union"])]
    return pl.DataFrame(rows,
                        schema={"scope": pl.String, "name": pl.String, "k": pl.Int32, "recall": pl.Float64},
                        orient="row")


def read_importance(path: Path) -> pl.DataFrame:
    """ranker_importance.csv: feature:String, gain_share:Float64 (plus gain, split), best first."""
    table = pl.read_csv(path, schema_overrides={"feature": pl.String, "gain_share": pl.Float64})
    for column in ("feature", "gain_share"):
        if column not in table.columns:
            raise ValueError(f"{path}: no column {column!r} (has {table.columns})")
    return table.sort(["gain_share", "feature"], descending=[True, False])


def leaderboard_frame(board: dict) -> pl.DataFrame:
    """leaderboard.json, one row per (task, method): task:String, method:String, metric:String
    ("mrr@100" or "bleu"), score, recall@100, ndcg@100, share_of_ceiling, ceiling (Float64, null where
    not applicable), best score first within a task."""
    rows = []
    for task, methods in board.items():
        if task == "unscored":  # pipeline.score.UNSCORED: the datasets without ground truth, and why
            continue
        for method, result in methods.items():
            overall = result["all"]
            metric = "bleu" if "bleu" in overall else "mrr@100"
            rows.append((task, method, metric, overall[metric], overall.get("recall@100"),
                         overall.get("ndcg@100"),
                         overall.get("share_of_ceiling"), overall.get("ceiling_mrr@100")))
    schema = {"task": pl.String, "method": pl.String, "metric": pl.String, "score": pl.Float64,
              "recall@100": pl.Float64, "ndcg@100": pl.Float64, "share_of_ceiling": pl.Float64,
              "ceiling": pl.Float64}
    return (pl.DataFrame(rows, schema=schema, orient="row")
            .sort(["task", "score", "method"], descending=[False, True, False]))


def flatten(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Leaves of a nested dict as (key path, value)."""
    if isinstance(obj, dict):
        return [leaf for key, value in obj.items() for leaf in flatten(value, (*prefix, str(key)))]
    return [(prefix, obj)]


# --------------------------------------------------------------------------------------------
# Plots: each takes a frame shaped above and writes one PNG atomically.
# --------------------------------------------------------------------------------------------

def _save(fig: Figure, path: Path, dpi: int) -> None:
    # No "Software" metadata: same inputs give byte-identical files across matplotlib versions.
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    log.info("wrote %s", path)


def plot_session_lengths(lengths: pl.DataFrame, path: Path, dpi: int) -> None:
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for locale in _locale_order(lengths):
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
    for locale in _locale_order(curve):
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
    order = pl.DataFrame({"locale": _locale_order(repeats)}).with_row_index("_o")
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
    locales = _locale_order(overlap, "locale_a")
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


def plot_recall(curves: pl.DataFrame, path: Path, dpi: int) -> None:
    by_locale = curves.filter(pl.col("scope") == "locale")
    fig = Figure(figsize=(11 if by_locale.height else 7, 4.5))
    axes = fig.subplots(1, 2 if by_locale.height else 1, squeeze=False)[0]
    panels = [(axes[0], curves.filter(pl.col("scope") == "source"), "per source (overall)")]
    if by_locale.height:
        panels.append((axes[1], by_locale, "union per locale"))
    for ax, frame, title in panels:
        for (name,), part in frame.group_by("name", maintain_order=True):
            union = name == "union"
            ax.plot(part["k"].to_numpy(), part["recall"].to_numpy(), marker="o", markersize=3,
                    linewidth=2.5 if union else 1, color="black" if union else None, label=name)
        ax.set_xscale("log")
        ks = sorted(set(frame["k"].to_list()))
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("K (log)")
        ax.set_ylabel("recall@K")
        ax.set_title(f"Candidate recall@K, {title}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    _save(fig, path, dpi)


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


def plot_leaderboard(board: pl.DataFrame, path: Path, dpi: int) -> None:
    panels = [(metric, board.filter(pl.col("metric") == metric)) for metric in ("mrr@100", "bleu")]
    panels = [(metric, frame) for metric, frame in panels if frame.height]
    fig = Figure(figsize=(6 * len(panels), 4.5))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metric, frame) in zip(axes, panels, strict=True):
        tasks = sorted(set(frame["task"]))
        methods = sorted(set(frame["method"]))
        width = min(0.8 / len(methods), 0.3)
        for m, method in enumerate(methods):
            part = frame.filter(pl.col("method") == method)
            scores = dict(zip(part["task"], part["score"], strict=True))
            # NaN: the method has no submission for that task; no bar rather than a zero bar.
            bars = ax.bar([t + (m - (len(methods) - 1) / 2) * width for t in range(len(tasks))],
                          [scores.get(task, math.nan) for task in tasks], width=width, label=method)
            ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ceilings = frame.group_by("task").agg(pl.col("ceiling").max())
        ceiling = dict(zip(ceilings["task"], ceilings["ceiling"], strict=True))
        for t, task in enumerate(tasks):
            if ceiling.get(task) is not None:
                ax.hlines(ceiling[task], t - 0.45, t + 0.45, colors="red", linestyles="--",
                          label="oracle ceiling" if t == 0 else None)
        ax.set_xticks(range(len(tasks)), tasks, rotation=20)
        ax.set_xlim(-0.6, len(tasks) - 0.4)
        # Head room above the highest bar or ceiling for the legend.
        top = max(float(frame["score"].max() or 0.0), float(frame["ceiling"].max() or 0.0))
        ax.set_ylim(0, max(top, 1e-9) * 1.35)
        ax.set_ylabel(metric)
        ax.set_title(f"Local leaderboard: {metric}")
        ax.legend(fontsize=7, ncol=3, loc="upper center")
    _save(fig, path, dpi)


# --------------------------------------------------------------------------------------------
# The page: a list of blocks rendered to Markdown and to HTML.
# --------------------------------------------------------------------------------------------

@dataclass
class Page:
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
        out = [f"# {self.title}"]
        for kind, value in self.blocks:
            if kind == "h2":
                out.append(f"## {value}")
            elif kind == "p":
                out.append(value)
            elif kind == "img":
                out.append(f"![{value[1]}]({value[0]})")
            else:
                head, rows = value
                lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                out.append("\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]))
        return "\n\n".join(out) + "\n"

    def html(self) -> str:
        def inline(text: str) -> str:
            return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

        body = [f"<h1>{inline(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "h2":
                body.append(f"<h2>{inline(value)}</h2>")
            elif kind == "p":
                body.append(f"<p>{inline(value)}</p>")
            elif kind == "img":
                body.append(f'<p><img src="{html.escape(value[0])}" alt="{html.escape(value[1])}"></p>')
            else:
                head, rows = value
                cells = ["<tr>" + "".join(f"<th>{inline(h)}</th>" for h in head) + "</tr>"]
                cells += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in rows]
                body.append("<table>\n" + "\n".join(cells) + "\n</table>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
                 "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;"
                 "text-align:right}th{background:#eee}td:first-child,th:first-child{text-align:left}"
                 "img{max-width:100%}code{background:#f4f4f4}")
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{html.escape(self.title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
                + "\n".join(body) + "\n</body>\n</html>\n")


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


# --------------------------------------------------------------------------------------------
# Building the report.
# --------------------------------------------------------------------------------------------

def dataset_section(page: Page, prepared: dict[str, pl.DataFrame], out: Path, cfg: ReportConfig) -> None:
    items, sessions, events, targets = (prepared[n] for n in ("items", "sessions", "events", "targets"))
    viewed = interactions(sessions, events, targets)
    lengths = session_lengths(sessions, targets)
    repeats = repeat_shares(sessions, events)
    counts = item_counts(viewed)
    overlap = locale_overlap(items)
    summary = dataset_summary(items, sessions, viewed, lengths, repeats, top_share(counts))
    log.info("dataset: %d items, %d sessions, %d interactions", items.height, sessions.height, viewed.height)

    page.heading("Dataset")
    n_train = int((sessions['dataset'] == 'train').sum())
    page.para(f"From the prepared data: {sessions.height:,} sessions ({n_train:,} "
              f"train), {int(items['in_catalog'].sum()):,} catalogue items (ASIN and locale), "
              f"{viewed.height:,} interactions (prev_items of every session plus the train targets). "
              "Lengths and repeats are over train sessions; popularity over all interactions.")
    page.table(["locale", "train sessions", "catalogue products", "interactions", "mean length",
                "repeats an item",
                "consecutive duplicate", "top 1% items' share of views"], frame_rows(summary))
    plot_session_lengths(lengths, out / PLOTS["session_length"], cfg.dpi)
    page.image(PLOTS["session_length"], "session length distribution per locale")
    plot_popularity(tail_curve(counts, cfg.tail_points), out / PLOTS["popularity"], cfg.dpi)
    page.image(PLOTS["popularity"], "product popularity long tail per locale")
    plot_repeats(repeats, out / PLOTS["repeats"], cfg.dpi)
    page.image(PLOTS["repeats"], "share of sessions with repeated items per locale")
    plot_overlap(overlap, out / PLOTS["overlap"], cfg.dpi)
    page.image(PLOTS["overlap"], "locale-by-locale product overlap")


def stats_section(page: Page, path: Path) -> None:
    page.heading("Data statistics (stage stats)")
    stats = _read_json(path)
    if stats is None:
        page.para(f"`{path}` (stage stats): {MISSING}.")
        return
    scalars = {key: value for key, value in stats.items() if not isinstance(value, dict)}
    if scalars:
        page.table(["", "value"], [[key, fmt(value)] for key, value in scalars.items()])
    for top, value in stats.items():
        if top in scalars:
            continue
        for title, head, rows in nested_tables(top, value):
            page.para(f"`{title}`")
            page.table(head, rows)


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


def recall_section(page: Page, path: Path, out: Path, cfg: ReportConfig) -> None:
    page.heading("Candidates: recall@K")
    report = _read_json(path)
    if report is None:
        page.para(f"`{path}` (stage recall): {MISSING}.")
        return
    plot_recall(recall_curves(report), out / PLOTS["recall"], cfg.dpi)
    page.image(PLOTS["recall"], "candidate recall@K curves")
    overall = report["overall"]
    union = overall["union"]
    page.para(f"Valid split, {overall['n']:,} sessions. The union holds the target for "
              f"{union['recall']:.1%} of them with {union['candidates_per_session']:.0f} candidates per "
              "session: the ceiling of the ranker.")
    ks = sorted({key for m in overall["sources"].values() for key in m if key.startswith("recall@")},
                key=lambda key: int(key.split("@")[1]))
    rows = [[name] + [fmt(m.get(k)) for k in ks] + [fmt(m.get("marginal"))]
            for name, m in sorted(overall["sources"].items(), key=lambda kv: -kv[1].get("recall@100", 0.0))]
    rows.append(["union"] + [fmt(union.get(k)) for k in ks] + [fmt(union.get("recall"))])
    page.table(["source"] + ks + ["marginal (union: recall at any rank)"], rows)


def ranker_section(page: Page, ranker_path: Path, importance_path: Path, out: Path,
                   cfg: ReportConfig) -> None:
    page.heading("Ranker")
    ranker = _read_json(ranker_path)
    if ranker is None:
        page.para(f"`{ranker_path}` (stage train_ranker): {MISSING}.")
    else:
        page.table(["validation MRR@100 (eval fold)", "best single source", "its MRR@100",
                    "target in candidates", "eval sessions"],
                   [[fmt(ranker.get("mrr@100")), fmt(ranker.get("best_source")),
                     fmt(ranker.get("best_source_mrr@100")),
                     fmt(ranker.get("target_in_candidates")), fmt(ranker.get("eval_sessions"))]])
    if not importance_path.exists():
        page.para(f"`{importance_path}` (stage train_ranker): {MISSING}.")
        return
    plot_importance(read_importance(importance_path), out / PLOTS["importance"], cfg.dpi, cfg.top_features)
    page.image(PLOTS["importance"], "ranker feature importance")


def leaderboard_section(page: Page, path: Path, out: Path, cfg: ReportConfig) -> None:
    page.heading("Local leaderboard")
    board = _read_json(path)
    if board is None:
        page.para(f"`{path}` (stage score): {MISSING}.")
        return
    frame = leaderboard_frame(board)
    if board.get("unscored"):
        page.para("Not scored: "
                  + "; ".join(f"{key} ({entry['reason']})" for key, entry in board["unscored"].items())
                  + ".")
    if frame.height == 0:
        page.para("The leaderboard is empty: no submission was scored.")
        return
    plot_leaderboard(frame, out / PLOTS["leaderboard"], cfg.dpi)
    page.image(PLOTS["leaderboard"], "local leaderboard")
    page.para("Share of ceiling: the submission's MRR@100 over the oracle's (ranking by the generator's true "
              "next-item probabilities); synthetic data only.")
    for (task,), part in frame.group_by("task", maintain_order=True):
        locales = [loc for loc in raw.LOCALES if any(loc in board[task][m] for m in part["method"])]
        metric = part["metric"][0]
        rows = []
        for row in part.iter_rows(named=True):
            share = row["share_of_ceiling"]
            cells = [row["method"], fmt(row["score"])]
            if metric != "bleu":
                cells += [fmt(row["recall@100"]), fmt(row["ndcg@100"]),
                          f"{share:.1%}" if share is not None else "n/a"]
            cells += [fmt(board[task][row["method"]].get(loc, {}).get(metric)) for loc in locales]
            rows.append(cells)
        head = ["method", metric] + ([] if metric == "bleu"
                                     else ["recall@100", "ndcg@100", "share of ceiling"])
        page.para(f"`{task}`" + (f", oracle ceiling MRR@100 {part['ceiling'].max():.4f}"
                                 if part["ceiling"].max() is not None else ""))
        page.table(head + [f"{metric} {loc}" for loc in locales], rows)


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        log.info("%s: absent, %s", path, MISSING)
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def build_report(prepared: dict[str, pl.DataFrame], results: Results, out: Path, cfg: ReportConfig) -> Page:
    """Write every plot under ``out`` and return the page (not yet written).

    ``prepared``: items, sessions, events, targets frames (pipeline/schemas.py).
    """
    out.mkdir(parents=True, exist_ok=True)
    page = Page("Amazon-M2 pipeline report")
    inputs = [f"`{path}` {'present' if path.exists() else 'absent'}" for path in dataclasses.astuple(results)]
    page.para("Inputs from other stages: " + ", ".join(inputs) + ".")
    dataset_section(page, prepared, out, cfg)
    stats_section(page, results.data_stats)
    recall_section(page, results.recall, out, cfg)
    ranker_section(page, results.ranker, results.importance, out, cfg)
    leaderboard_section(page, results.leaderboard, out, cfg)
    return page


def write_page(page: Page, out: Path) -> None:
    write_text(page.markdown(), out / "index.md")
    write_text(page.html(), out / "index.html")
    log.info("wrote %s and %s (%d plots)", out / "index.md", out / "index.html", len(page.images()))


def read_prepared(prepared: Path) -> dict[str, pl.DataFrame]:
    frames = {
        "items": pl.read_parquet(prepared / "items.parquet", columns=["item", "id", "locale", "in_catalog"]),
        "sessions": schemas.check(pl.read_parquet(prepared / "sessions.parquet"), schemas.SESSIONS,
                                  "sessions"),
        "events": schemas.check(pl.read_parquet(prepared / "events.parquet"), schemas.EVENTS, "events"),
        "targets": schemas.check(pl.read_parquet(prepared / "targets.parquet"), schemas.TARGETS, "targets"),
    }
    schemas.check(frames["items"], {k: schemas.ITEMS[k] for k in frames["items"].columns}, "items")
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True, help="data/prepared")
    parser.add_argument("--metrics", type=Path, required=True,
                        help="metrics/: recall, ranker, leaderboard, data stats")
    parser.add_argument("--plots", type=Path, required=True, help="plots/: the ranker's feature importance")
    parser.add_argument("--out", type=Path, required=True, help="reports/")
    args = parser.parse_args()
    setup_logging()
    cfg = config.load_section(ReportConfig, "report")
    with timed("report"):
        page = build_report(read_prepared(args.prepared), Results.under(args.metrics, args.plots), args.out,
                            cfg)
        write_page(page, args.out)


if __name__ == "__main__":
    main()
