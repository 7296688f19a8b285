"""The local leaderboard: score submissions against ground truth.

    python -m pipeline.score --submissions submissions --gt data/raw/gt --out metrics/leaderboard.json \
        --table metrics/leaderboard.md [--raw data/raw --probes metrics/gt_probes.json]

Every ``submissions/**/task{T}_phase{P}.parquet`` is scored; its method is the name of its folder
(``submissions/sources/source_sknn/`` -> ``source_sknn``; "submission" for the six published files).
Tasks 1/2: MRR@100, Recall@100, NDCG@100 overall and per locale, and the share of the oracle ceiling
where gt/ceiling.json exists (only synthetic data has one). Task 3: corpus BLEU-4 overall and per
locale. A dataset whose ground truth is absent (real data: phase 2, task 3) is not skipped silently: the
board's ``"unscored"`` entry and the table's last section list it, with its reason ("no ground truth";
for task 3 "no titles" too when every submitted title is empty, as on a catalogue without titles) and
its submissions.

With ``--gap`` (synthetic data: gt/oracle_task{T}_phase{P}.csv), the oracle gap: for every method
and target class (the target's relation to the hidden session state: the current item's first,
second or later related item, a sibling variant, the intent category, other) the share of
targets, the method's MRR@100 and Recall@100 beside the oracle's, and how much of the overall
gap to the ceiling (in MRR@100 points) each class accounts for.

With ``--task3-gap`` (and ``--publish`` metrics/publish.json, ``--task3-valid`` metrics/task3_valid.json),
the Task 3 valid-vs-test gap (:func:`task3_gap`): each method's BLEU gain over the last title on the
validation sessions beside the same gain on each test phase, per locale, for the chooser's files and
for the published file; where Task 3 has no ground truth (real data) it is empty.

With ``--probes``, the ground-truth probes of the data (pipeline/probes.py): per test file, how many
targets train never showed or never saw follow the last item, and the MRR@100 of a per-locale
popularity and a plain window-3 co-visitation. This is the only stage that reads gt/, so those figures
are computed here, not in the stats stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import polars as pl

from core import metrics, raw, submission
from core.io import setup_logging, write_json, write_text
from pipeline import probes

log = logging.getLogger(__name__)

FILE_PATTERN = re.compile(r"^task([123])_phase([12])\.parquet$")
PUBLISHED = "submission"
VALIDATED = "validated"  # stage choose's folder: what publish copies by default
LAST_TITLE = "last_title"
# Task 3 chooser files and the key of their validation BLEU in metrics/task3_valid.json.
TASK3_VALID_KEYS = {"task3_chooser_plain": "chooser", "task3_chooser": "chooser_edited"}
# board key: {dataset: {"reason", "ground_truth", "methods"}}, present only when needed
UNSCORED = "unscored"


def load_ceiling(gt_dir: Path) -> dict:
    path = gt_dir / "ceiling.json"
    return json.loads(path.read_text()) if path.exists() else {}


def score_frame(
    frame: pl.DataFrame, gt: pl.DataFrame, task: int, name: str = "submission"
) -> dict[str, dict]:
    """{"all": {...}, "<locale>": {...}} for one submission against its ground truth (same row order)."""
    if frame.height != gt.height:
        raise submission.SubmissionError(f"{name}: {frame.height} rows, ground truth has {gt.height}")
    column = submission.COLUMNS[task][1]
    if column not in frame.columns:
        raise submission.SubmissionError(f"{name}: no column {column!r} (has {frame.columns})")
    joined = pl.DataFrame({"locale": gt["locale"], "pred": frame[column], "truth": gt[gt.columns[0]]})
    groups = [("all", joined)] + [
        (loc, joined.filter(pl.col("locale") == loc)) for loc in raw.LOCALES if loc in set(joined["locale"])
    ]
    result = {}
    for key, part in groups:
        if task == 3:
            result[key] = {
                "bleu": metrics.bleu(part["pred"].fill_null("").to_list(), part["truth"].to_list()),
                "n": part.height,
            }
        else:
            result[key] = metrics.ranking_metrics(part["pred"], part["truth"])
    return result


def score_file(
    path: Path, task: int, phase: int, gt_dir: Path, ceiling: dict | None = None
) -> dict[str, dict]:
    """Score any submission file (ours or another pipeline's) against gt_dir/gt_task{T}_phase{P}.csv."""
    gt = raw.read_ground_truth(gt_dir / raw.gt_file(task, phase), task)
    return score_read(submission.read(path), gt, task, phase, path, ceiling)


def score_read(
    frame: pl.DataFrame, gt: pl.DataFrame, task: int, phase: int, path: Path, ceiling: dict | None = None
) -> dict[str, dict]:
    """:func:`score_frame` plus the locale-order warning and the share of the ceiling."""
    result = score_frame(frame, gt, task, str(path))
    wrong_locale = int((frame["locale"] != gt["locale"]).sum()) if "locale" in frame.columns else frame.height
    if wrong_locale:
        log.warning(
            "%s: %d rows whose locale differs from the ground truth (misordered?)", path, wrong_locale
        )
    ceiling = (ceiling or {}).get(f"task{task}_phase{phase}", {})
    for key, values in result.items():
        if key in ceiling and ceiling[key].get("mrr@100"):
            values["ceiling_mrr@100"] = ceiling[key]["mrr@100"]
            values["share_of_ceiling"] = values["mrr@100"] / ceiling[key]["mrr@100"]
    return result


def read_oracle(gt_dir: Path, task: int, phase: int) -> pl.DataFrame | None:
    """gt/oracle_task{T}_phase{P}.csv (target_class, related_rank, oracle_rank, locale), or None."""
    path = gt_dir / raw.oracle_file(task, phase)
    if not path.exists():
        return None
    frame = pl.read_csv(
        path,
        schema_overrides={
            "target_class": pl.String,
            "related_rank": pl.Int32,
            "oracle_rank": pl.Int64,
            "locale": pl.String,
        },
    )
    missing = {"target_class", "oracle_rank", "locale"} - set(frame.columns)
    if missing:
        raise raw.RawDataError(path, 1, sorted(missing)[0], "column missing from the header")
    return frame


def oracle_gap(
    frame: pl.DataFrame, gt: pl.DataFrame, oracle: pl.DataFrame, task: int, name: str = "submission"
) -> dict[str, dict]:
    """{class: {n, share, mrr@100, recall@100, oracle_mrr@100, oracle_recall@100, gap_points}}
    plus "all"; gap_points = share x (oracle MRR - method MRR), so the classes' points sum to the
    overall gap to the ceiling."""
    if oracle.height != gt.height or (oracle["locale"] != gt["locale"]).any():
        raise submission.SubmissionError(f"{name}: the oracle file does not match the ground truth rows")
    ranks = metrics.target_ranks(frame[submission.COLUMNS[task][1]], gt[gt.columns[0]])
    rows = pl.DataFrame(
        {
            "target_class": oracle["target_class"],
            "rank": ranks,
            "oracle": oracle["oracle_rank"].cast(pl.Float64),
        }
    )
    rr = (1.0 / pl.col("rank").cast(pl.Float64)).fill_null(0.0)
    orr = pl.when(pl.col("oracle") <= metrics.K).then(1.0 / pl.col("oracle")).otherwise(0.0)
    aggs = [
        pl.len().alias("n"),
        rr.mean().alias("mrr@100"),
        pl.col("rank").is_not_null().mean().alias("recall@100"),
        orr.mean().alias("oracle_mrr@100"),
        (pl.col("oracle") <= metrics.K).mean().alias("oracle_recall@100"),
    ]
    total = rows.height
    out = {}
    for part in [
        rows.select(aggs).with_columns(target_class=pl.lit("all")),
        rows.group_by("target_class").agg(aggs).sort("target_class"),
    ]:
        for r in part.iter_rows(named=True):
            share = r["n"] / total if total else 0.0
            out[r.pop("target_class")] = {
                **r,
                "share": share,
                "gap_points": share * (r["oracle_mrr@100"] - r["mrr@100"]),
            }
    return out


def format_gap(board: dict) -> str:
    """Per task and phase: one row per (method, class), methods best first."""
    lines = []
    for key in sorted(board):
        lines.append(f"\n### {key}: where MRR@100 is lost against the oracle\n")
        lines.append(
            "| method | class | share | mrr@100 | oracle mrr@100 | recall@100 | oracle recall@100 "
            "| gap points |"
        )
        lines.append("|" + "---|" * 8)
        for method, classes in sorted(board[key].items(), key=lambda kv: -kv[1]["all"]["mrr@100"]):
            for cls in ["all"] + [c for c in raw.TARGET_CLASSES if c in classes]:
                c = classes[cls]
                lines.append(
                    f"| {method} | {cls} | {c['share']:.3f} | {c['mrr@100']:.4f} "
                    f"| {c['oracle_mrr@100']:.4f} | {c['recall@100']:.4f} "
                    f"| {c['oracle_recall@100']:.4f} | {c['gap_points']:+.4f} |"
                )
    return "\n".join(lines).lstrip() + "\n"


def find_submissions(root: Path) -> list[tuple[str, int, int, Path]]:
    """(method, task, phase, path) of every task{T}_phase{P}.parquet under root, sorted. The method is
    the file's folder name (``submissions/sources/source_sknn/`` -> ``source_sknn``), the published
    files at the top are ``submission``; two folders of one name are an error."""
    found, folders = [], {}
    for path in sorted(root.rglob("*.parquet")):
        match = FILE_PATTERN.match(path.name)
        if match:
            method = PUBLISHED if path.parent == root else path.parent.name
            if folders.setdefault(method, path.parent) != path.parent:
                raise ValueError(f"two submission folders are both method {method!r}: "
                                 f"{folders[method]} and {path.parent}")
            found.append((method, int(match[1]), int(match[2]), path))
    return found


def leaderboard(root: Path, gt_dir: Path) -> tuple[dict, dict]:
    """The board {"task1_phase1": {method: {"all": {...}, "DE": {...}}}, ...} and the oracle gap board
    {"task1_phase1": {method: oracle_gap(...)}} (tasks 1/2 where an oracle file exists, else empty).
    Datasets with submissions but no ground truth go to board["unscored"] (see :func:`unscored_entry`).

    Each ground truth (and oracle file) is read once per task and phase, each submission once.
    """
    ceiling = load_ceiling(gt_dir)
    board: dict = {}
    gaps: dict = {}
    truth: dict[str, tuple[pl.DataFrame, pl.DataFrame | None]] = {}
    unscored: dict[str, dict[str, Path]] = {}
    for method, task, phase, path in find_submissions(root):
        key = f"task{task}_phase{phase}"
        if not (gt_dir / raw.gt_file(task, phase)).exists():
            unscored.setdefault(key, {})[method] = path
            continue
        if key not in truth:
            truth[key] = (
                raw.read_ground_truth(gt_dir / raw.gt_file(task, phase), task),
                read_oracle(gt_dir, task, phase) if task != 3 else None,
            )
        gt, oracle = truth[key]
        frame = submission.read(path)
        board.setdefault(key, {})[method] = score_read(frame, gt, task, phase, path, ceiling)
        if oracle is not None:
            gaps.setdefault(key, {})[method] = oracle_gap(frame, gt, oracle, task, str(path))
    if unscored:
        board[UNSCORED] = {key: unscored_entry(key, paths, gt_dir) for key, paths in sorted(unscored.items())}
    return board, gaps


def task3_gap(publish: dict, valid: dict, board: dict) -> dict:
    """The Task 3 valid-vs-test gap, sacrebleu scale (BLEU x 100); gap = valid gain - test gain.

    Args:
        publish: metrics/publish.json (stage choose: per locale the method and its validation figures).
        valid: metrics/task3_valid.json (stage task3: the chooser's validation BLEU over all locales).
        board: leaderboard() of the submissions (the published file is ``validated``'s).
    Returns {"methods": {method: {"valid_gain", "test_gain": {phase: gain}, "gap": {phase: gap}}},
    "per_locale": {locale: {"method", "valid_gain", "test_gain", "gap"}}, "published": the same for the
    published file, its valid gain the sessions-weighted mean of its locales' gains}; {} without Task 3
    ground truth or validation figures.
    """
    phases = [p for p in raw.PHASES if f"task3_phase{p}" in board]
    per_locale_choice = publish.get("task3", {}).get("per_locale", {})
    if not phases or not per_locale_choice or "per_locale" not in valid:
        return {}

    def test_gain(method: str, locale: str = "all") -> dict[str, float | None]:
        out = {}
        for p in phases:
            scores = board[f"task3_phase{p}"]
            ours = scores.get(method, {}).get(locale, {}).get("bleu")
            last = scores.get(LAST_TITLE, {}).get(locale, {}).get("bleu")
            out[f"phase{p}"] = None if ours is None or last is None else 100 * (ours - last)
        return out

    def entry(valid_gain: float, gains: dict[str, float | None]) -> dict:
        return {"valid_gain": valid_gain, "test_gain": gains,
                "gap": {k: None if g is None else valid_gain - g for k, g in gains.items()}}

    methods = {m: entry(100 * (valid[key] - valid["last_title"]), test_gain(m))
               for m, key in TASK3_VALID_KEYS.items() if key in valid}
    per_locale, weighted, n = {}, 0.0, 0
    for loc, choice in per_locale_choice.items():
        figures = choice["valid"].get(choice["method"])
        gain = 0.0 if figures is None else 100 * (figures["bleu"] - figures["last_title"])
        weight = next(iter(choice["valid"].values()), {}).get("n", 0)
        weighted, n = weighted + gain * weight, n + weight
        per_locale[loc] = {"method": choice["method"], **entry(gain, test_gain(choice["method"], loc))}
    return {"methods": methods, "per_locale": per_locale,
            "published": entry(weighted / max(n, 1), test_gain(VALIDATED))}


def unscored_entry(key: str, paths: dict[str, Path], gt_dir: Path) -> dict:
    """{"reason", "ground_truth", "methods"} of a dataset whose ground truth is absent (logged)."""
    gt_path = gt_dir / raw.gt_file(int(key[4]), int(key[-1]))
    reason = "no ground truth"
    if key.startswith("task3") and all(
        (submission.read(p)["next_item_title"].fill_null("") == "").all() for p in paths.values()
    ):
        reason += "; no titles (every submitted title is empty)"
    log.warning("%s: %s (%s absent): %d submissions not scored", key, reason, gt_path, len(paths))
    return {"reason": reason, "ground_truth": str(gt_path), "methods": sorted(paths)}


def format_table(board: dict) -> str:
    """A markdown table per task and phase, best method first; then the datasets not scored, and why."""
    lines = []
    for key in sorted(k for k in board if k != UNSCORED):
        methods = board[key]
        task3 = key.startswith("task3")
        metric = "bleu" if task3 else "mrr@100"
        locales = [loc for loc in raw.LOCALES if any(loc in m for m in methods.values())]
        lines.append(f"\n### {key}\n")
        extra = [] if task3 else ["recall@100", "ndcg@100", "share of ceiling"]
        head = ["method", metric, *extra, *locales]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for method, result in sorted(methods.items(), key=lambda kv: -kv[1]["all"][metric]):
            overall = result["all"]
            row = [method, f"{overall[metric]:.4f}"]
            if not task3:
                share = overall.get("share_of_ceiling")
                row += [
                    f"{overall['recall@100']:.4f}",
                    f"{overall['ndcg@100']:.4f}",
                    f"{share:.1%}" if share is not None else "n/a",
                ]
            row += [f"{result[loc][metric]:.4f}" if loc in result else "" for loc in locales]
            lines.append("| " + " | ".join(row) + " |")
        if not task3:
            ceil = next((m["all"].get("ceiling_mrr@100") for m in methods.values()), None)
            if ceil:
                lines.append(f"\noracle ceiling MRR@100: {ceil:.4f}")
    if board.get(UNSCORED):
        lines += ["\n### not scored\n", "| dataset | why | ground truth | submissions |", "|---|---|---|---|"]
        for key, entry in board[UNSCORED].items():
            lines.append(
                f"| {key} | {entry['reason']} | {entry['ground_truth']} absent | {len(entry['methods'])} |"
            )
    return "\n".join(lines).lstrip() + "\n"


@raw.exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submissions", type=Path, required=True)
    parser.add_argument("--gt", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--gap", type=Path, help="oracle gap by target class (JSON; synthetic data only)")
    parser.add_argument("--gap-table", type=Path, help="the same as markdown")
    parser.add_argument("--task3-gap", type=Path, help="Task 3 valid-vs-test gap (JSON)")
    parser.add_argument("--publish", type=Path, help="metrics/publish.json, read by --task3-gap")
    parser.add_argument("--task3-valid", type=Path, help="metrics/task3_valid.json, read by --task3-gap")
    parser.add_argument("--raw", type=Path, help="raw directory (data/raw), read by --probes")
    parser.add_argument(
        "--probes", type=Path, help="ground-truth probes JSON (metrics/gt_probes.json); needs --raw"
    )
    args = parser.parse_args()
    if args.probes and not args.raw:
        parser.error("--probes needs --raw")
    if args.task3_gap and not (args.publish and args.task3_valid):
        parser.error("--task3-gap needs --publish and --task3-valid")
    setup_logging()
    board, gaps = leaderboard(args.submissions, args.gt)
    write_json(board, args.out)
    if args.task3_gap:
        read = [json.loads(p.read_text()) if p.exists() else {} for p in (args.publish, args.task3_valid)]
        gap = task3_gap(*read, board)
        log.info("task3 valid-vs-test gap (BLEU x 100): %s", gap.get("published", "no ground truth"))
        write_json(gap, args.task3_gap)
    table = format_table(board)
    write_text(table, args.table)
    print(table)
    if args.gap:
        if not gaps:
            log.info(
                "no %s in %s (real data has no oracle): the oracle gap is empty",
                raw.oracle_file(1, 1),
                args.gt,
            )
        write_json(gaps, args.gap)
        if args.gap_table:
            write_text(
                format_gap(gaps) if gaps else "No oracle files (real data): no oracle gap.\n", args.gap_table
            )
    if args.probes:
        found = probes.compute_probes(args.raw, args.gt)
        write_json(found, args.probes)
        print(probes.format_probes(found))


if __name__ == "__main__":
    main()
