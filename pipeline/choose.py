"""Stage ``choose``: what validation prefers, per task (and per locale for Task 3), as submissions/validated/.

    python -m pipeline.choose --submissions submissions --raw data/raw --metrics metrics \
        --out submissions/validated --report metrics/publish.json

A method is published only where the local validation split prefers it:

- Tasks 1 and 2 (a guard): the ranker, unless a single candidate source (each ranked by its own score)
  has a higher MRR@100 on the ranker's held-out eval fold over the task's locales
  (metrics/ranker.json ``eval``); then that source's files (submissions/sources/source_<name>/).
- Task 3, per locale: each method of ``choose.task3_methods`` against the last title on the same
  validation sessions (metrics/task3_valid.json and metrics/task3_mt5.json ``per_locale``). A
  locale takes the method with the largest BLEU gain over the last title, if that gain is above
  ``choose.task3_min_gain`` and above ``choose.task3_min_z`` times its paired-bootstrap standard
  deviation over the locale's valid sessions (``<key>_gain_sd``, where the stage writes one); otherwise
  the last title: a method must prove itself where the last title is a strong baseline.
  submissions/validated/task3_phase{P}.parquet
  holds, row by row, the title of its locale's method.

The choice and the validation figures behind it go to --report (metrics/publish.json). The
``publish`` stage copies submissions/validated/ when ``publish.task{T}`` is ``validated`` (the
default); naming a method there forces it.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core import config, raw, submission
from core.io import setup_logging, write_json

log = logging.getLogger(__name__)

LAST_TITLE = "last_title"
# Which metrics file holds a Task 3 method's per-locale validation BLEU, and under which key.
TASK3_FIGURES = {"task3_chooser_plain": ("task3_valid.json", "chooser"),
                 "task3_chooser": ("task3_valid.json", "chooser_edited"),
                 "task3_mt5_fallback": ("task3_mt5.json", "mt5_fallback")}


@dataclass(frozen=True)
class ChooseConfig:
    """params.yaml ``choose``."""

    task3_methods: tuple[str, ...]  # Task 3 methods weighed against the last title (TASK3_FIGURES keys)
    task3_min_gain: float           # BLEU (0-1) to gain over the last title on a locale's valid sessions
    task3_min_z: float              # and at least this many bootstrap standard deviations of that gain

    def __post_init__(self) -> None:
        unknown = sorted(set(self.task3_methods) - set(TASK3_FIGURES))
        if unknown:
            raise ValueError(f"choose.task3_methods: unknown method(s) {unknown}; "
                             f"known: {sorted(TASK3_FIGURES)}")


def ranking_choice(report: dict, task: int) -> dict:
    """The ranker unless a single source beats it on the eval fold's task-``task`` sessions.

    Args:
        report: metrics/ranker.json ``eval``: {"ranker" | "source_<name>": {"task1": {"mrr@100": ...}, ...}}.
    Returns {"method": submissions folder, "valid_mrr@100": {method: MRR}}.
    """
    key = f"task{task}"
    figures = {name: part[key]["mrr@100"] for name, part in report.items() if key in part}
    if "ranker" not in figures:
        raise ValueError(f"metrics/ranker.json: no eval figures of the ranker for {key}")
    best = max(figures, key=lambda name: (figures[name], name == "ranker"))
    method = "ranker" if best == "ranker" else f"sources/{best}"
    return {"method": method, "valid_mrr@100": dict(sorted(figures.items()))}


def task3_choice(figures: dict[str, dict[str, dict]], min_gain: float, min_z: float = 0.0) -> dict[str, dict]:
    """Per locale, the method whose validation BLEU gains most over the last title, among those whose gain
    is above ``min_gain`` and above ``min_z`` times its bootstrap standard deviation.

    Args:
        figures: method -> locale -> {"bleu": the method's BLEU, "last_title": the last title's BLEU on
            the same sessions, "n": sessions, "gain_sd" (optional, 0 if absent): the gain's spread}.
    Returns locale -> {"method", "gain" (over the last title, 0 for the last title), "valid": figures}.
    A method with no figures for a locale is not weighed there; ties keep the last title.
    """
    locales = sorted({loc for per_locale in figures.values() for loc in per_locale})
    out = {}
    for loc in locales:
        gains = {m: per[loc]["bleu"] - per[loc]["last_title"] for m, per in figures.items()
                 if loc in per and per[loc]["bleu"] - per[loc]["last_title"] > max(
                     min_gain, min_z * per[loc].get("gain_sd", 0.0))}
        method = max(gains, key=gains.get, default=LAST_TITLE)
        out[loc] = {"method": method, "gain": gains.get(method, 0.0),
                    "valid": {m: per[loc] for m, per in figures.items() if loc in per}}
    return out


def task3_figures(metrics: Path, methods: tuple[str, ...]) -> dict[str, dict[str, dict]]:
    """method -> locale -> {"bleu", "last_title", "n"} from the Task 3 stages' ``per_locale`` metrics."""
    out = {}
    for method in methods:
        name, key = TASK3_FIGURES[method]
        data = json.loads((metrics / name).read_text())
        if "skipped" in data:
            continue
        out[method] = locale_figures(data["per_locale"], key)
    return out


def locale_figures(per_locale: dict[str, dict], key: str) -> dict[str, dict]:
    """locale -> {"bleu", "last_title", "n", "gain_sd"}: metric ``key`` of a Task 3 stage's ``per_locale``
    metrics (gain_sd: ``<key>_gain_sd``, 0 where the stage writes none)."""
    return {loc: {"bleu": v[key], "last_title": v["last_title"], "n": v["n"],
                  "gain_sd": v.get(f"{key}_gain_sd", 0.0)}
            for loc, v in per_locale.items()}


def chooser_figures(valid_metrics: dict) -> dict[str, dict[str, dict]]:
    """:func:`task3_figures` of the methods stage task3's metrics (task3_valid.json) hold, from those metrics
    in memory."""
    return {method: locale_figures(valid_metrics["per_locale"], key)
            for method, (name, key) in TASK3_FIGURES.items() if name == "task3_valid.json"}


def combine_by_locale(frames: dict[str, pl.DataFrame], choice: dict[str, str], default: str) -> pl.DataFrame:
    """locale, next_item_title: each row from the frame of its locale's method (``default`` elsewhere).

    ``frames``: method -> one phase's Task 3 submission, all in the same row order.
    """
    base = frames[default]
    for name, frame in frames.items():
        if frame.height != base.height or not frame["locale"].equals(base["locale"]):
            raise submission.SubmissionError(f"{name}: its rows differ from {default}'s (another test file?)")
    method = base.select(pl.col("locale").replace_strict(choice, default=default).alias("m"))["m"]
    titles = pl.DataFrame([f["next_item_title"].alias(name) for name, f in frames.items()])
    chosen = titles.select(pl.coalesce(pl.when(method == name).then(pl.col(name)) for name in frames))
    return base.select("locale").with_columns(next_item_title=chosen.to_series())


@raw.exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="ranker, task3_valid, task3_mt5 json")
    parser.add_argument("--out", type=Path, required=True, help="submissions/validated")
    parser.add_argument("--report", type=Path, required=True, help="metrics/publish.json")
    args = parser.parse_args()
    setup_logging()
    cfg = config.load_section(ChooseConfig, "choose")
    report: dict = {}
    ranker = json.loads((args.metrics / "ranker.json").read_text())["eval"]
    catalogue = None
    for task in (1, 2):
        phases = [p for p in raw.PHASES if (args.raw / raw.test_file(task, p)).exists()]
        if not phases:
            continue
        report[f"task{task}"] = ranking_choice(ranker, task)
        for phase in phases:
            catalogue = submission.load_catalogue(args.raw) if catalogue is None else catalogue
            method = report[f"task{task}"]["method"]
            source = submission.submission_path(args.submissions / method, task, phase)
            submission.write(submission.read(source), submission.submission_path(args.out, task, phase),
                             task, submission.load_test_locales(args.raw, task, phase), catalogue)
        log.info("task%d: %s (eval MRR@100 %s)", task, report[f"task{task}"]["method"],
                 report[f"task{task}"]["valid_mrr@100"].get("ranker"))
    per_locale = task3_choice(task3_figures(args.metrics, cfg.task3_methods), cfg.task3_min_gain,
                              cfg.task3_min_z)
    choice = {loc: v["method"] for loc, v in per_locale.items()}
    report["task3"] = {"method": "per locale", "per_locale": per_locale, "min_gain": cfg.task3_min_gain,
                       "min_z": cfg.task3_min_z}
    for phase in raw.PHASES:
        if not (args.raw / raw.test_file(3, phase)).exists():
            continue
        frames = {m: submission.read(submission.submission_path(args.submissions / m, 3, phase))
                  for m in (LAST_TITLE, *cfg.task3_methods)}
        submission.write(combine_by_locale(frames, choice, LAST_TITLE),
                         submission.submission_path(args.out, 3, phase), 3,
                         submission.load_test_locales(args.raw, 3, phase), None)
    log.info("task3 per locale: %s", choice)
    write_json(report, args.report)


if __name__ == "__main__":
    main()
