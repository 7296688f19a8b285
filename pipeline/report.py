"""Stage ``report``: the dataset analysis plots and one results page.

    python -m pipeline.report --prepared data/prepared --metrics metrics --plots plots --out reports

Writes under --out PNG plots and one page twice: ``index.md`` (Markdown, relative image links) and
``index.html`` (the same content with <img> tags, opens in a browser). This module composes the
sections; the work is in pipeline/reporting: ``analysis`` (frames from the prepared data and the
other stages' files), ``plots`` (one PNG per figure, one colour per method in every figure) and
``page`` (the blocks, rendered by the Jinja2 templates in pipeline/reporting/templates).

The dataset analysis reads only data/prepared (see core/schemas.py), so it runs on generated and
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
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core import config, raw, schemas
from core.errors import exit_on_error
from core.io import setup_logging, timed, write_text
from pipeline.reporting.analysis import (
    dataset_summary,
    interactions,
    item_counts,
    leaderboard_frame,
    locale_overlap,
    read_importance,
    recall_curves,
    repeat_shares,
    session_lengths,
    tail_curve,
    task3_gap,
    top_share,
)
from pipeline.reporting.page import Page, fmt, frame_rows, nested_tables
from pipeline.reporting.plots import (
    method_colours,
    plot_importance,
    plot_leaderboard,
    plot_overlap,
    plot_popularity,
    plot_recall,
    plot_repeats,
    plot_session_lengths,
)

log = logging.getLogger(__name__)

RECALL, RANKER, IMPORTANCE, LEADERBOARD, DATA_STATS, PUBLISH, TASK3_GAP = (
    "recall.json", "ranker.json", "ranker_importance.csv", "leaderboard.json", "data_stats.json",
    "publish.json", "task3_gap.json")
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


@dataclass(frozen=True)
class Results:
    """Where the other stages' files are; any may be absent."""

    recall: Path
    ranker: Path
    importance: Path
    leaderboard: Path
    data_stats: Path
    publish: Path
    task3_gap: Path

    @classmethod
    def under(cls, metrics: Path, plots: Path) -> Results:
        return cls(metrics / RECALL, metrics / RANKER, plots / IMPORTANCE, metrics / LEADERBOARD,
                   metrics / DATA_STATS, metrics / PUBLISH, metrics / TASK3_GAP)


@dataclass(frozen=True)
class ReportConfig:
    top_features: int        # bars in the feature-importance plot
    tail_points: int         # points per decade of rank kept for the popularity curve
    dpi: int


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


def recall_section(page: Page, path: Path, out: Path, cfg: ReportConfig, colours: dict[str, str]) -> None:
    page.heading("Candidates: recall@K")
    report = _read_json(path)
    if report is None:
        page.para(f"`{path}` (stage recall): {MISSING}.")
        return
    plot_recall(recall_curves(report), out / PLOTS["recall"], cfg.dpi, colours)
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


def leaderboard_section(page: Page, path: Path, out: Path, cfg: ReportConfig,
                        colours: dict[str, str]) -> None:
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
    plot_leaderboard(frame, out / PLOTS["leaderboard"], cfg.dpi, colours)
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


def publish_section(page: Page, path: Path, board_path: Path, gap_path: Path) -> None:
    page.heading("What is published, and why")
    choice = _read_json(path)
    if choice is None:
        page.para(f"`{path}` (stage choose): {MISSING}.")
        return
    page.para("Stage `choose` picks each task's method on the local validation split (params "
              "`publish.task{T}: validated`; naming a method there forces it). Tasks 1-2: the ranker unless "
              "a single source has a higher MRR@100 on the ranker's eval fold. Task 3: per locale, the "
              "method with the largest BLEU gain over the last title on that locale's validation sessions, "
              "else the last title.")
    rows = [[task, entry["method"], fmt(entry["valid_mrr@100"].get("ranker")),
             max((m for m in entry["valid_mrr@100"] if m != "ranker"), default="",
                 key=lambda m: entry["valid_mrr@100"][m])]
            for task, entry in choice.items() if task in ("task1", "task2")]
    page.table(["task", "published", "ranker eval MRR@100", "best single source"], rows)
    gap = task3_gap(choice, _read_json(board_path) or {})
    if gap.height:
        page.para("Task 3 per locale: BLEU gain over the last title (sacrebleu scale) on the validation "
                  "sessions and on each test phase (the valid-vs-test gap; n/a: no ground truth). "
                  "A chosen row is marked *.")
        page.table(["locale", "method", "valid gain", "test gain p1", "test gain p2"],
                   [[r["locale"], r["method"] + (" *" if r["chosen"] else "")]
                    + ["n/a" if r[c] is None else f"{r[c]:+.2f}" for c in ("valid_gain", "test_gain_p1",
                                                                          "test_gain_p2")]
                    for r in gap.iter_rows(named=True)])
    overall = (_read_json(gap_path) or {}).get("published")
    if overall:
        tests = ", ".join(f"{phase} {'n/a' if g is None else f'{g:+.2f}'}"
                          for phase, g in overall["test_gain"].items())
        page.para(f"The published Task 3 file (`{gap_path}`): valid gain over the last title "
                  f"{overall['valid_gain']:+.2f} BLEU (its locales' gains weighted by sessions), test gain "
                  f"{tests}. `task3.chooser.valid_mask` sets how much of the target's catalogue family "
                  "validation hides from the chooser, as a new product has none.")


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        log.info("%s: absent, %s", path, MISSING)
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def method_names(results: Results) -> list[str]:
    """Every method the plots colour: the recall stage's sources and the leaderboard's methods."""
    names: set[str] = set()
    recall = _read_json(results.recall)
    if recall is not None:
        names |= set(recall["overall"]["sources"])
    board = _read_json(results.leaderboard)
    if board is not None:
        names |= {m for task, methods in board.items() if task != "unscored" for m in methods}
    return sorted(names)


def build_report(prepared: dict[str, pl.DataFrame], results: Results, out: Path, cfg: ReportConfig) -> Page:
    """Write every plot under ``out`` and return the page (not yet written).

    ``prepared``: items, sessions, events, targets frames (core/schemas.py).
    """
    out.mkdir(parents=True, exist_ok=True)
    page = Page("Amazon-M2 pipeline report")
    inputs = [f"`{path}` {'present' if path.exists() else 'absent'}" for path in dataclasses.astuple(results)]
    page.para("Inputs from other stages: " + ", ".join(inputs) + ".")
    dataset_section(page, prepared, out, cfg)
    stats_section(page, results.data_stats)
    colours = method_colours(method_names(results))
    recall_section(page, results.recall, out, cfg, colours)
    ranker_section(page, results.ranker, results.importance, out, cfg)
    leaderboard_section(page, results.leaderboard, out, cfg, colours)
    publish_section(page, results.publish, results.leaderboard, results.task3_gap)
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


@exit_on_error
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
