"""The measurement pages of docs/, rendered from the records in benchmarks/results/*.json.

    python -m benchmarks.render            # rewrite docs/*.md and the README's measured block
    python -m benchmarks.render --check    # exit 1 naming every page that differs from its records

Every table in docs/ is generated here, so a figure there is always the record's figure; the README
quotes a few headline figures, between the ``<!-- measured -->`` markers, rendered here too. A page whose
record is absent (encoders.json until the encoders are benchmarked) is not written, and ``--check``
then expects no page. tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from core.io import write_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
README = ROOT / "README.md"
BEGIN, END = "<!-- measured: rendered by python -m benchmarks.render -->", "<!-- /measured -->"
HEADER = (
    "<!-- rendered by python -m benchmarks.render from {sources}: "
    "edit the records or the script, not this page -->"
)

# The runs the README's measured block quotes (scale.json and real_run.json labels): the default world at
# the current code, and the real files with today's files_overrides.
README_RUNS = {"default": "default_G", "real": "real_G"}
LEADERBOARD = ("task1_phase1", "task1_phase2", "task2_phase1", "task2_phase2")
GIB_PER_MIB = 1 / 1024


# ---------------------------------------------------------------- formatting


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def num(value: object, digits: int = 1) -> str:
    """Thousands separators; ``digits`` decimals for floats; '-' for a missing value."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def mrr(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def share(value: float | None) -> str:
    return "" if value is None else f" ({100 * value:.1f}%)"


def code(commit: str | None) -> str:
    return "-" if not commit else f"`{commit[:8]}`" + (" +wt" if "working tree" in commit else "")


def load(name: str, results: Path) -> dict | None:
    path = results / name
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


# ------------------------------------------------ whole-graph runs (scale.json, real_run.json)


def _board(run: dict, dataset: str) -> str:
    entry = run.get("leaderboard", {}).get(dataset)
    if not entry or entry.get("mrr") is None:
        return "-"
    return mrr(entry["mrr"]) + share(entry.get("ceiling_share"))


def _bleu(run: dict) -> str:
    board = run.get("leaderboard", {})
    values = [board.get(f"task3_phase{p}", {}).get("bleu") for p in (1, 2)]
    return " / ".join(mrr(v) for v in values) if any(v is not None for v in values) else "-"


def runs_table(runs: list[dict]) -> str:
    rows = [
        (
            r["label"],
            r["scale"],
            code(r.get("code")),
            " ".join(f"`{o}`" for o in r.get("overrides", [])) or "-",
            num(r.get("interactions")),
            num(r.get("total_wall_s")),
            num(r.get("peak_rss_gib"), 2),
            *(_board(r, d) for d in LEADERBOARD),
            _bleu(r),
        )
        for r in runs
    ]
    return table(
        (
            "run",
            "scale",
            "code",
            "overrides",
            "interactions",
            "stages wall s",
            "peak RSS GiB",
            *(f"{d} MRR@100 (share of ceiling)" for d in LEADERBOARD),
            "task3 BLEU p1 / p2",
        ),
        rows,
    )


def _stage_group(name: str) -> str:
    return name.split("@")[0]


def stage_totals(run: dict) -> dict[str, float]:
    totals: dict[str, float] = {}
    for name, stage in run["stages"].items():
        totals[_stage_group(name)] = totals.get(_stage_group(name), 0.0) + stage["wall_s"]
    return totals


def ladder_table(runs: list[dict], exponents: dict[str, float]) -> str:
    per_run = [stage_totals(r) for r in runs]
    stages = sorted(
        {s for totals in per_run for s in totals}, key=lambda s: -max(t.get(s, 0) for t in per_run)
    )
    rows = [(s, *(num(t.get(s)) for t in per_run), num(exponents.get(s), 2)) for s in stages]
    return table(("stage", *(f"wall s at {r['scale']}" for r in runs), "exponent"), rows)


def stages_table(run: dict) -> str:
    rows = [
        (
            name,
            num(s.get("wall_s")),
            num(s.get("cpu_s")),
            num(s.get("peak_rss_gib"), 2),
            num(s.get("rows_in")),
            num(s.get("rows_out")),
            num(s.get("mean_load"), 2),
        )
        for name, s in sorted(run["stages"].items(), key=lambda kv: -kv[1].get("wall_s", 0))
    ]
    return table(("stage", "wall s", "CPU s", "peak RSS GiB", "rows in", "rows out", "mean load"), rows)


def page_scale(results: Path) -> str | None:
    record = load("scale.json", results)
    if record is None:
        return None
    runs = record["runs"]
    ladder = [r for r in runs if r["label"] == "scale"]
    full = [r for r in runs if r["scale"] == 1.0]
    parts = [
        "# The whole graph on the synthetic world, by scale",
        "Each run is `python benchmarks/scale.py --scales S --label L [-S KEY=VALUE ...]`: the whole `dvc "
        "repro` "
        "graph in a scratch workspace, stage by stage, on a 2-core machine; wall and CPU seconds, the peak "
        "RSS "
        "of each stage's process tree, its rows in and out and the machine's mean load. Scale 1.0 is the "
        "paper's Table 2 size. Runs of other machines or under other load differ; compare runs of one "
        "machine "
        "only. The leaderboard columns are the published ranker's MRR@100 and its share of the oracle "
        "ceiling.",
        "## Every run",
        runs_table(runs),
    ]
    if ladder:
        parts += [
            "## Wall seconds per stage along the scale ladder",
            "Stages of a `foreach` summed; `exponent`: the least-squares slope of log wall time against "
            "log interactions (scale.json `exponents`).",
            ladder_table(ladder, record.get("exponents", {})),
        ]
    for run in full:
        parts += [f"## Stages of the scale {run['scale']} run (`{run['label']}`)", stages_table(run)]
    return "\n\n".join(parts)


def page_real_data(results: Path) -> str | None:
    run_record = load("real_run.json", results)
    variants = load("real_covisit_variants.json", results)
    knobs = load("real_ranker_knobs.json", results)
    curve = load("real_history_curve.json", results)
    if not any((run_record, variants, knobs, curve)):
        return None
    parts = [
        "# The real competition files",
        "Measured on the real files in `../shared/amazon_m2_real` (122,597 train sessions, the real test "
        "files, phase-1 ground truth for task 2 and task 1; placeholder titles), so task 3 and phase 2 are "
        "not scored there.",
    ]
    if run_record:
        parts += [
            "## The whole graph (`benchmarks/results/real_run.json`)",
            "`python benchmarks/scale.py --scales 0.02 --label L -S data.source=files -S data.raw_dir=DIR` "
            "plus the overrides listed.",
            runs_table(run_record["runs"]),
        ]
        runs = run_record["runs"]
        for run in [r for r in runs if r["label"] == README_RUNS["real"]] or runs[-1:]:  # the README's
            parts += [f"### Stages of `{run['label']}`", stages_table(run)]
    if variants:
        rows = [
            (
                name,
                ", ".join(f"{k}={v}" for k, v in r["config"].items()),
                mrr(r.get("valid_task2_mrr")),
                mrr(r.get("valid_all_mrr")),
                mrr(r.get("task2_phase1_mrr")),
                mrr(r.get("task2_phase1_recall")),
                mrr(r.get("valid_task2_recall_top100")),
            )
            for name, r in variants["runs"].items()
        ]
        parts += [
            "## Each co-visitation variant alone (`benchmarks/results/real_covisit_variants.json`)",
            variants["what"],
            table(
                (
                    "variant",
                    "config",
                    "valid ES/FR/IT MRR",
                    "valid all MRR",
                    "task2_phase1 MRR",
                    "task2_phase1 recall",
                    "valid ES/FR/IT recall@100",
                ),
                rows,
            ),
        ]
    if knobs:
        rows = [
            (
                name,
                r["what"],
                mrr(r.get("task2_phase1_mrr")),
                " / ".join(mrr(r.get("task2_phase1_by_locale", {}).get(loc)) for loc in ("ES", "FR", "IT")),
                mrr(r.get("valid_task2_mrr")),
                mrr(r.get("union_recall_valid_task2")),
            )
            for name, r in knobs["runs"].items()
        ]
        parts += [
            "## The ranker's knobs (`benchmarks/results/real_ranker_knobs.json`)",
            f"`{knobs['command']}`",
            table(
                (
                    "run",
                    "what",
                    "task2_phase1 MRR",
                    "ES / FR / IT",
                    "valid ES/FR/IT MRR",
                    "union recall valid ES/FR/IT",
                ),
                rows,
            ),
        ]
    if curve:
        rows = [
            (
                f"{float(fraction):.0%}",
                mrr(r.get("task2_phase1_mrr")),
                mrr(r.get("valid_task2_mrr")),
                mrr(r.get("union_recall_valid_task2")),
                mrr(r.get("sources_task2_phase1", {}).get("source_covisit_product")),
            )
            for fraction, r in sorted(curve["runs"].items(), key=lambda kv: float(kv[0]))
        ]
        parts += [
            "## How much history is worth (`benchmarks/results/real_history_curve.json`)",
            curve["what"],
            f"`{curve['command']}`",
            table(
                (
                    "history",
                    "task2_phase1 ranker MRR",
                    "valid ES/FR/IT MRR",
                    "union recall valid ES/FR/IT",
                    "covisit_product alone",
                ),
                rows,
            ),
        ]
    return "\n\n".join(parts)


# ------------------------------------------------ task 2 transfer, distributed, encoders, budgets


def page_transfer(results: Path) -> str | None:
    record = load("task2_transfer.json", results)
    if record is None:
        return None
    worlds = [w for w in ("synthetic", "real") if w in record]
    variants = list(dict.fromkeys(v for w in worlds for v in record[w]))
    rows = [
        (
            f"`{v}`",
            *(
                " / ".join(mrr(record[w].get(v, {}).get(k)) for k in ("ES", "FR", "IT", "all"))
                for w in worlds
            ),
        )
        for v in variants
    ]
    return "\n\n".join(
        [
            "# Task 2: transfer from the large locales (`benchmarks/results/task2_transfer.json`)",
            "`python benchmarks/task2_transfer.py`: `local_only` uses ES/FR/IT history, queries and ranker "
            "only; "
            "`pooled` every locale's history, the product-keyed co-visitation and the cross-locale features; "
            "`published` params.yaml as shipped; `pretrain_finetune` the encoders fine-tuned on ES/FR/IT for "
            f"{record.get('finetune_epochs')} epochs. Sources left out: "
            f"{', '.join(record.get('skip_types', []))}. "
            f"Real-file overrides: {', '.join(f'`{s}`' for s in record.get('real_sets', []))}.",
            record.get("note", ""),
            table(("variant", *(f"{w} task2_phase1 MRR@100 ES / FR / IT / all" for w in worlds)), rows),
        ]
    )


def _mib(value: object) -> str:
    if isinstance(value, list):
        return " / ".join(num(v * GIB_PER_MIB, 2) for v in value)
    return "-" if value is None else num(value * GIB_PER_MIB, 2)


STAGE_ORDER = ("candidates_valid", "candidates_test", "features_valid", "features_test", "train_ranker",
               "predict")
PLAN_FACTOR = 100.0  # the plan's data: 100 x the scale-1.0 world (about 360M sessions)
PLAN_WORKERS = (16, 64, 256)

SCALE_OUT = (
    "What runs where with `engine: dask` (pipeline/engine/):"
    "\n"
    "\n"
    "- **Scales out** (each task reads its own session range or bucket from parquet; the driver "
    "passes paths, id bounds and configs): the co-visitation counts of every `covisit` source, their "
    "grid choice and second hops (bucket shuffle on the source key, top-k per bucket), the popularity"
    " and attribute sources, the ranker's completion and predict's popularity fill (events per item: "
    "one file per range on the scratch store, summed by one task's streamed scan, which holds one row "
    "per item, never every range's rows), the feature families' counts "
    "(`session_item`, `cross_locale`, `item`: bucket shuffle on `src`), the per-chunk cut of every "
    "count table (a bucket join of the chunks' keys with the tables), the candidate union and the "
    "feature joins (one task per chunk, which writes its own part), and "
    "predict: one task per feature part scores it, keeps the top 100 per session, fills its sessions from "
    "the locale popularity and writes their submission rows."
    "\n"
    "- **Capped, fitted on one worker** (the state is bounded by the source's knobs): `als` and `bpr`"
    " on `max_fit_sessions` sessions that the workers draw (the same seeded sample as on one "
    "machine); `sknn`, `text` and the deep encoders read the whole history on one worker (their state"
    " is capped by `sample_size`, `items_per_token` and the checkpoints; their read is not, so at "
    "100x they need a history sample first); the item-level tables (one row per item, of the item "
    "columns they read: a fitted source keeps the catalogue columns, not the titles) are built on "
    "one worker and sent to the others."
    "\n"
    "- **On the driver**: the chunk edges (two ids per chunk), the figures, one union part at a time "
    "(the candidates stage streams them into its output: `candidates.chunk_size` sessions), the "
    "ranker's training and early-stopping rows (capped: `ranker.max_train_sessions`, "
    "`split.max_valid_sessions`), and in predict the assembly of the submission files: one part's rows "
    "and one row group (`core.submission.ROW_GROUP_ROWS`, 16,384 rows) at a time, validated as they "
    "arrive, beside the validator's references: the catalogue's (id, locale) pairs (read from "
    "products_train.csv on a worker) and one test file's locales (one string per test row)."
    "\n"
    "- **Not on Dask**: co-visitation `query_weight != 1` (the stage stops and names it; use `engine:"
    " polars`)."
)


def _stage_rows(stages: list[dict]) -> list[tuple]:
    rows = []
    for r in sorted(stages, key=lambda r: (r["scale"], STAGE_ORDER.index(r["stage"]))):
        fig = r.get("figures", {})
        rows.append((r["stage"], r["scale"], num(r["events"]), f"{r['workers']} x {r['memory_limit']}",
                     r["partitions_per_worker"], num(r["wall_s"]), _mib(r["driver_peak_rss_mib"]),
                     _mib(r["worker_peak_rss_mib"]), _peak_task(r),
                     "yes" if r.get("worker_restarted") else "no",
                     num(fig.get("shuffle_mib")), num(fig.get("cut_rows")), num(fig.get("chunks"))))
    return rows


def _peak_task(r: dict) -> str:
    """The task kind after which the highest worker peak was reached (``worker_peak_tasks``)."""
    steps = r.get("worker_peak_tasks")
    if not steps:
        return "-"
    top = max((s for s in steps if s), key=lambda s: s[-1][1], default=None)
    return f"`{top[-1][0]}`" if top else "-"


def _previous_rows(record: dict) -> list[tuple]:
    """Exponents and scale-1.0 worker peaks of the version in ``record["previous"]`` beside today's."""
    prev, exps = record["previous"], record.get("exponents", {})
    now_top = {r["stage"]: max(r["worker_peak_rss_mib"]) for r in record.get("stages", [])
               if r["scale"] == 1.0}
    rows = []
    for stage in STAGE_ORDER:
        before, after = prev["exponents"].get(stage, {}), exps.get(stage, {})
        rows.append((stage, num(before.get("driver"), 3), num(after.get("driver"), 3),
                     num(before.get("worker"), 3), num(after.get("worker"), 3),
                     _mib(prev["worker_peak_1.0"].get(stage)), _mib(now_top.get(stage))))
    return rows


def _grown_mib(mib: float, grow: float, exponent: float | None) -> float:
    return mib * grow ** exponent if exponent is not None else mib


def _grown(mib: float, grow: float, exponent: float | None) -> str:
    return _mib(_grown_mib(mib, grow, exponent)) + ("" if exponent is not None else " (no exponent)")


def _plan_rows(stages: list[dict], exps: dict) -> tuple[float, int, list[tuple], float]:
    """The 100x plan from the largest scale measured: ranges grown with the events; peaks grown by their
    measured exponents (as measured where there is none); the largest worker peak grown, MiB."""
    top = max(r["scale"] for r in stages)
    rows, per_range, worst = [], 0, 0.0
    for stage in STAGE_ORDER:
        r = next((r for r in stages if r["stage"] == stage and r["scale"] == top), None)
        if r is None:
            continue
        grow = PLAN_FACTOR / top
        ranges = r["workers"] * r["partitions_per_worker"]
        per_range = r["events"] // ranges
        fig = r.get("figures", {})
        shuffle = fig.get("shuffle_mib")
        worker_s = r["wall_s"] * r["workers"]  # the measured wall on its workers, as worker-seconds
        exp = exps.get(stage, {})
        worker = max(r["worker_peak_rss_mib"])
        worst = max(worst, _grown_mib(worker, grow, exp.get("worker")))
        rows.append((stage, num(int(r["events"] * grow)), num(int(ranges * grow)),
                     "-" if shuffle is None else num(shuffle * grow / 1024, 1), _mib(worker),
                     _grown(worker, grow, exp.get("worker")),
                     _grown(r["driver_peak_rss_mib"], grow, exp.get("driver")),
                     *(num(worker_s * grow / n / 3600, 2) for n in PLAN_WORKERS)))
    return top, per_range, rows, worst


def page_distributed(results: Path) -> str | None:
    record = load("distributed.json", results)
    if record is None:
        return None
    out = ["# Scale-out on Dask (`benchmarks/results/distributed.json`)", SCALE_OUT]
    stages = record.get("stages", [])
    if stages:
        exps = record.get("exponents", {})
        out += [
            "## Memory per process against the data",
            "`python benchmarks/distributed.py --scales S --partitions-per-worker P` (P 4, 10, 20 and 40 at "
            "S 0.1, 0.25, 0.5 and 1.0: ranges sized by events): each stage main run as DVC runs it, "
            "in its own process (the driver), against a cluster started as separate processes with `dask "
            "scheduler` and `dask worker --memory-limit` (pipeline/engine/cluster.py; the workers restarted "
            "before each stage, so each peak is the stage's own). Sources: the types listed in the records "
            f"({', '.join(sorted({t for r in stages for t in r.get('source_types', [])}))}), no deep "
            "checkpoints. Memory in GiB (MiB / 1024); events: the split's history interactions; shuffle: "
            "the bytes the map tasks wrote into the buckets; cut rows: the count-table rows the chunks "
            "received through the bucket join. A 2-core machine shared with other jobs: the wall times "
            "are an upper bound.",
            table(("stage", "scale", "events", "workers", "partitions per worker", "wall s",
                   "driver peak GiB", "worker peak GiB", "peak set by", "worker restarted", "shuffle MiB",
                   "cut rows", "chunks"),
                  _stage_rows(stages)),
            "Exponents: the least-squares slope of log(peak RSS) on log(events) over the scales listed "
            "(targets: driver <= 0.2, worker <= 0.3).",
            table(("stage", "scales", "driver exponent", "worker exponent"),
                  [(s, " / ".join(map(str, e["scales"])), num(e["driver"], 3), num(e["worker"], 3))
                   for s, e in exps.items() if e["scales"]]),
        ]
        if record.get("previous"):
            prev = record["previous"]
            out += [f"Before (commit {prev['commit']}): {prev['what']}",
                    table(("stage", "driver exponent before", "driver exponent", "worker exponent before",
                           "worker exponent", "worker peak GiB at 1.0 before", "worker peak GiB at 1.0"),
                          _previous_rows(record))]
        top, per_range, rows, worst = _plan_rows(stages, exps)
        limits = sorted({r["memory_limit"] for r in stages})
        out += [
            f"## On paper at {PLAN_FACTOR:g}x (about 360M sessions)",
            f"From the largest scale measured ({top:g}), grown {PLAN_FACTOR / top:g}-fold (the events grow "
            f"linearly with the scale). Session ranges (= buckets) grow with the events, about {per_range:,} "
            "events each as measured, so every map, reduce and join task reads what it read when measured "
            "and the shuffle volume grows linearly. The peaks are grown by their measured exponents: what "
            "still grows per worker is what no range bounds (the item-level tables, which grow with the "
            "catalogue, and each chunk's cut as keys gain neighbours up to `top_n`). Wall time on N workers: "
            "the measured worker-seconds (wall x workers) grown linearly and divided by N, with no allowance "
            "for stragglers or an object store's latency.",
            table(("stage", "events", "session ranges", "shuffle GiB", "worker peak GiB measured",
                   f"worker peak GiB at {PLAN_FACTOR:g}x", f"driver peak GiB at {PLAN_FACTOR:g}x",
                   *(f"wall h on {n} workers" for n in PLAN_WORKERS)), rows),
            "What would change at that size: the ranker's training sample stays capped "
            "(`ranker.max_train_sessions`, `split.max_valid_sessions`: its driver does not grow); predict's "
            "driver streams the workers' pieces into the files a row group at a time (what grows is the test "
            "files' locales, one string per test row, and the number of pieces read); `sknn`, `text` and "
            "the deep encoders would fit "
            f"on a drawn session sample as `als`/`bpr` do; the largest worker peak grown by its exponent is "
            f"{_mib(worst)} GiB, against the {' / '.join(limits)} `--memory-limit` measured with (a peak "
            "grown past it would mean splitting the item-level states by item bucket too: today one worker "
            "builds each and every task that needs it receives all of it); the scratch store would be an "
            "object store "
            "(`dask.scratch_dir: s3://...`), whose request latency makes small bucket files costly, so "
            "ranges should be sized by events, not by workers (`dask.partitions_per_worker` grown with the "
            "data, as these records do: 4 per worker at 0.1, 20 at 0.5).",
        ]
    if record.get("runs"):
        rows = []
        for r in record["runs"]:
            shuffle_rows = sum(r["shuffle_rows"].values()) if "shuffle_rows" in r else None
            shuffle_mib = sum(r["shuffle_mib"].values()) if "shuffle_mib" in r else None
            rows.append((r["what"], r["engine"], r["scale"], num(r.get("sessions")), num(r.get("events")),
                         f"{r['workers']} x {r['memory_limit']}", r["partitions_per_worker"],
                         num(r.get("wall_s")),
                         num(r.get("fit_s")), _mib(r.get("driver_peak_rss_mib")),
                         _mib(r.get("worker_peak_rss_mib")), num(shuffle_rows), num(shuffle_mib)))
        out += [
            "## Before: the driver-side Dask path (commit 390f310)",
            "Measured by the previous version of `benchmarks/distributed.py` (`--what covisit|features`): "
            "the co-visitation counts and the feature joins with `engine: polars` and with the Dask path "
            "that read the whole history on the driver and cut the count tables there, on a LocalCluster.",
            table(("what", "engine", "scale", "sessions", "events", "workers", "partitions per worker",
                   "wall s", "fit s", "driver peak GiB", "worker peak GiB", "shuffle rows", "shuffle MiB"),
                  rows),
        ]
    return "\n\n".join(out)


def _encoder_scores(entry: dict | None) -> str:
    if not entry:
        return "-"
    return f"{mrr(entry.get('mrr@100'))} / {mrr(entry.get('recall@100'))}"


# benchmarks/encoders.py --workspace folder -> the data it holds
ENCODER_WORLDS = {"realrun": "real", "realdata": "real", "final-real": "real", "scale01": "synthetic 0.1",
                  "scale1": "synthetic 1.0", "scale1ws": "synthetic 1.0"}


def page_encoders(results: Path) -> str | None:
    record = load("encoders.json", results)
    if record is None:
        return None
    def test_file(r: dict) -> str:
        return next((k for k in ("task2_phase1", "task1_phase1") if k in r), "task2_phase1")

    rows = [
        (
            r["label"],
            r["model"],
            ENCODER_WORLDS.get(r.get("workspace", ""), r.get("workspace", "-")),
            mrr((r.get("valid") or {}).get("mrr@100")),
            mrr((r.get("valid_task2") or {}).get("mrr@100")),
            f"{test_file(r)}: {_encoder_scores(r.get(test_file(r)))}",
            num(r.get("train_s")),
            f"{r.get('best_epoch', '-')} / {r.get('epochs', '-')}",
            num(r.get("passes_per_item"), 2),
            num(r.get("indexed_items")),
            " ".join(f"`{k}={v}`" for k, v in (r.get("overrides") or {}).items()) or "-",
            code(r.get("code")),
        )
        for r in record["runs"]
    ]
    return "\n\n".join(
        [
            "# The deep encoders alone (`benchmarks/results/encoders.json`)",
            "`python benchmarks/encoders.py`: one encoder trained as the `train_deep` stage trains it, then "
            "ranked "
            "alone: MRR@100 on the valid split (all locales and ES/FR/IT), and MRR@100 / Recall@100 on the "
            "answers of a test file (task 2 phase 1 on the real files, task 1 phase 1 on a synthetic world). "
            "Best epoch: the epoch of the best held-out MRR, the one served. Seconds on a shared 2-core "
            "machine under load (upper bounds).",
            table(
                (
                    "run",
                    "model",
                    "world",
                    "valid MRR@100",
                    "valid ES/FR/IT MRR@100",
                    "test file: MRR / Recall@100",
                    "train s",
                    "best epoch / epochs",
                    "passes per item",
                    "indexed items",
                    "overrides",
                    "code",
                ),
                rows,
            ),
            *(
                [
                    "## In the pipeline (`make real` on the real files, `make run` on the synthetic world)",
                    "The whole graph, the encoders before and after, and without them: each encoder alone "
                    "(`source_<name>`, MRR@100), the ranker, and the recall@100 of the ranker's submission, "
                    "on task 2 phase 1; the ranker on task 1 phase 1 (on the real files its targets are "
                    "mostly products the history never shows). Wall time as each row's command says, on "
                    "a shared, loaded 2-core machine.",
                    table(
                        ("run", "world", "ranker task2_phase1", "encoders alone", "ranker recall@100",
                         "ranker task1_phase1", "wall s", "code"),
                        [
                            (
                                r["label"],
                                r.get("world", "real"),
                                mrr(r["task2_phase1"]["ranker"]),
                                ", ".join(f"{k.removeprefix('source_')} {mrr(v)}"
                                          for k, v in r["task2_phase1"].items()
                                          if k.startswith("source_") and v is not None) or "none",
                                mrr(r["task2_phase1"].get("union_recall@100_ranker")),
                                mrr(r["task1_phase1"]["ranker"]),
                                num(r.get("wall_s")),
                                code(r.get("code")),
                            )
                            for r in record["pipeline"]
                        ],
                    ),
                ]
                if record.get("pipeline")
                else []
            ),
            *_ranker_ablation(results),
            *_complementarity(results),
        ]
    )


def _ranker_ablation(results: Path) -> list[str]:
    """encoders.md's section of ranker_ablation.json: the ranker retrained on the same union's features."""
    record = load("ranker_ablation.json", results)
    if not record:
        return []
    rows = [
        (
            r["label"],
            r["workspace"],
            f"`{r['drop']}` ({len(r['dropped'])} columns)".replace("|", "\\|") if r["drop"] else "-",
            " ".join(f"`{k}={v}`" for k, v in (r.get("overrides") or {}).items()) or "-",
            f"{mrr(r['task2_phase1']['mrr@100'])} / {mrr(r['task2_phase1']['recall@100'])}",
            ", ".join(str(v) for v in r["best_iteration"].values()),
            num(r.get("seconds")),
            code(r.get("code")),
        )
        for r in record["runs"]
    ]
    return [
        "## The ranker on the same union (`benchmarks/results/ranker_ablation.json`)",
        "`python benchmarks/ranker_ablation.py`: the ranker retrained as stage train_ranker trains it on a "
        "finished real workspace's features, without the columns matching a pattern or with other ranker "
        "knobs, and scored on task 2 phase 1: what the encoders' *features* add to the same candidates.",
        table(("run", "workspace", "dropped", "ranker knobs", "task2_phase1 MRR / Recall@100",
               "best iteration", "seconds", "code"), rows),
    ]


def _best_weight(scores: dict[str, float]) -> str:
    """'MRR (w, gain over w = 0)' of the best weight of a {w: MRR} sweep."""
    w, best = max(scores.items(), key=lambda kv: (kv[1], -float(kv[0])))
    return f"{mrr(best)} (w {w}, {best - scores['0.0']:+.4f})"


def _complementarity(results: Path) -> list[str]:
    """encoders.md's section of complementarity.json: what the encoders know that others do not."""
    record = load("complementarity.json", results)
    if not record:
        return []
    rows = [
        (
            r["label"],
            r["workspace"],
            r["dataset"],
            "own" if r["ranker"] == "models/ranker" else f"`{Path(r['ranker']).parent.parent.name}`",
            mrr(r["on_ranker"]["0.0"]),
            f"{r['best_source']} {mrr(r['alone'][r['best_source']])}",
            mrr(r["alone"]["deep_sum"]),
            _best_weight(r["fusion"]),
            _best_weight(r["on_ranker"]),
            code(r.get("code")),
        )
        for r in record["runs"]
    ]
    return [
        "## Do the encoders know what the others do not? (`benchmarks/results/complementarity.json`)",
        "`python benchmarks/complementarity.py`: on a finished workspace's test features, the union "
        "ranked by the best classical source alone, by the encoders' summed score alone, by reciprocal-"
        "rank fusion of the two (`1/(60 + r_source) + w/(60 + r_deep)`, best `w`), and by the ranker's "
        "score plus `w` times the encoders' score (both standardised per session, best `w`; the gain is "
        "over `w = 0`, the ranker itself). A fusion gain says the encoders know what co-visitation does "
        "not; a gain on the ranker would say the ranker leaves it unused. The ranker column names the "
        "workspace whose model scored (own: the workspace's ranker, trained with the encoder features).",
        table(("run", "workspace", "test file", "ranker", "ranker MRR@100", "best source alone",
               "encoders alone", "fusion with the source", "ranker + w x encoders", "code"), rows),
    ]


def best_real_encoder(results: Path) -> float | None:
    """The best encoder alone on real task2_phase1 in encoders.json (full recipe): issue 32's 0.8x bar."""
    record = load("encoders.json", results) or {"runs": []}
    scores = [r["task2_phase1"]["mrr@100"] for r in record["runs"]
              if ENCODER_WORLDS.get(r.get("workspace", "")) == "real" and "task2_phase1" in r]
    return max(scores, default=None)


def _split_scores(entry: dict | None) -> str:
    if not entry:
        return "-"
    return f"{mrr(entry.get('mrr@100'))} / {mrr(entry.get('recall@100'))} ({num(entry.get('n'))})"


def page_paper_baselines(results: Path) -> str | None:
    from benchmarks.paper_baselines import RECBOLE

    record = load("paper_baselines.json", results)
    if record is None:
        return None
    best_full = best_real_encoder(results)
    sweeps: dict[tuple, list[dict]] = {}
    for r in record["runs"]:
        for dataset in r["datasets"]:
            sweeps.setdefault((r["label"], r["workspace"], dataset), []).append(r)
    parts = [
        "# The dataset paper's baselines, each alone (`benchmarks/results/paper_baselines.json`)",
        "`python benchmarks/paper_baselines.py`: every encoder of the one trainer (`candidates/deep`: the "
        "same data, sampled-softmax loss, negatives, early stopping and faiss retrieval) trained on the "
        "valid split's history at one shared budget (the sweep's overrides) and ranked alone: MRR@100 / "
        "Recall@100 (rows) on the test file's answers, on all of them, on the cold targets (no history "
        "session, train or test prefix, shows them: no id-based encoder can rank them), on the warm "
        "rest, and on the rare ones (the history shows them at most 5 times, cold included); MRR@100 on "
        "the valid split. RecBole: its own implementation with its defaults on the same "
        "real files under a 15-minute CPU budget (issue 32); x RecBole: this row's MRR over that figure. "
        f"x best: over the best encoder of the same sweep, and over the project's best encoder alone at "
        f"full budget ({mrr(best_full)}, `docs/encoders.md`); the issue's bars are 10x RecBole and 0.8x "
        "the best.",
    ]
    for (label, workspace, dataset), runs in sweeps.items():
        best = max(r[dataset]["mrr@100"] for r in runs)
        real = dataset == "task2_phase1" and runs[0].get("real_files", False)
        rows = []
        knobs = [[f"`{k}={v}`" for k, v in (r.get("overrides") or {}).items()] for r in runs]
        shared = [k for k in knobs[0] if all(k in other for other in knobs)]  # the sweep's common budget
        for r, own in zip(runs, knobs, strict=True):
            score = r[dataset]["mrr@100"]
            recbole = RECBOLE.get(r["model"]) if real else None
            rows.append((
                " ".join([r["model"], *(k for k in own if k not in shared)]),
                _split_scores(r[dataset]),
                _split_scores(r[dataset].get("cold")),
                _split_scores(r[dataset].get("warm")),
                _split_scores(r[dataset].get("rare")),
                mrr(r["valid"]["mrr@100"]),
                num(r.get("train_s")),
                f"{r.get('best_epoch', '-')} / {r.get('epochs', '-')}",
                num(r.get("passes_per_item"), 2),
                mrr(recbole) if recbole else "-",
                f"{score / recbole:.0f}x" if recbole else "-",
                f"{score / best:.2f}" + (f" / {score / best_full:.2f}" if real and best_full else ""),
                code(r.get("code")),
            ))
        overrides = " ".join(shared) or "none"
        parts += [
            f"## `{label}`: {dataset}, workspace `{workspace}`, overrides {overrides}",
            table(("model", f"{dataset} MRR / Recall@100 (n)", "cold", "warm", "rare (<= 5 views)",
                   "valid MRR@100", "train s",
                   "best epoch / epochs", "passes per item", "RecBole", "x RecBole", "x best", "code"), rows),
        ]
    return "\n\n".join(parts + _recbole_export(results))


def _recbole_export(results: Path) -> list[str]:
    """paper_baselines.md's section of recbole_export.json: RecBole reading ``m2 export-recbole``'s files."""
    record = load("recbole_export.json", results)
    if not record:
        return []
    return [
        "## RecBole reads `m2 export-recbole` (`benchmarks/results/recbole_export.json`)",
        "`benchmarks/recbole_check.py`, run with a Python that has RecBole: the exported `m2.inter` and "
        "`m2.item` loaded as a RecBole session dataset (session as user), RecBole's own model trained with "
        "its defaults and scored on its leave-one-out split of those sessions: a check that the files load "
        "and train, not a comparison (sequences: RecBole's training sequences after its augmentation).",
        table(("data", "RecBole", "model", "sessions", "items", "sequences", "item features", "epochs",
               "MRR@100", "Recall@100", "seconds", "code"),
              [(r["data"], r["recbole"], r["model"], num(r["sessions"]), num(r["items"]), num(r["sequences"]),
                ", ".join(r["item_features"]), r["epochs"], mrr(r["mrr@100"]), mrr(r["recall@100"]),
                num(r["seconds"]), code(r.get("code"))) for r in record["runs"]]),
    ]


def page_budgets(results: Path) -> str | None:
    deep = load("deep_budget.json", results)
    chunk = load("chunk_profile.json", results)
    part = load("predict_part.json", results)
    trees = load("ranker_trees.json", results)
    stats = load("stats_prepare.json", results)
    if not any((deep, chunk, part, trees, stats)):
        return None
    parts = ["# Budgets at scale: where the time goes and what the caps cost"]
    if deep:
        rows = [
            (
                r["model"],
                r["scale"],
                num(r["history_items"]),
                num(r["max_epoch_sessions"]),
                num(r["session_passes"]),
                num(r["session_passes"] / r["history_items"], 1),
                mrr(r["mrr@100"]),
                mrr(r["recall@100"]),
                num(r["train_s"]),
            )
            for r in deep["runs"]
        ]
        parts += [
            "## Encoder passes per item (`benchmarks/results/deep_budget.json`)",
            "One encoder alone on the valid split, 8 epochs of `max_epoch_sessions` sessions each.",
            table(
                (
                    "model",
                    "scale",
                    "items",
                    "sessions per epoch",
                    "session passes",
                    "passes per item",
                    "MRR@100",
                    "Recall@100",
                    "train s",
                ),
                rows,
            ),
        ]
    if chunk:
        for r in chunk["runs"]:
            sources = list(r["fit_s"])
            rows = [
                (s, num(r["fit_s"].get(s), 1), num(r["generate_s"].get(s), 1), num(r["rows"].get(s)))
                for s in sources
            ]
            parts += [
                f"## One candidates chunk: {r['label']} (`benchmarks/results/chunk_profile.json`)",
                f"{r['note']} {num(r['query_sessions'])} query sessions over {num(r['history_events'])} "
                "history "
                f"events; union {num(r['union_s'])} s, {num(r['union_rows'])} rows; features fit "
                f"{num(r['features_fit_s'])} s; peak RSS {num(r['peak_rss_mib'] * GIB_PER_MIB, 2)} GiB.",
                table(("source", "fit s", "generate s", "rows"), rows),
            ]
            if r.get("features_s"):
                parts.append(
                    table(("feature family", "s"), [(k, num(v)) for k, v in r["features_s"].items()])
                )
    if part:
        rows = [
            (
                name.replace("scale_", ""),
                r["parts"],
                r["trees"],
                num(r["rows"]),
                num(r["read_s"]),
                num(r["matrix_s"]),
                num(r["predict_s"]),
                num(r["rank_s"]),
                num(r["part_s"]),
                num(r["ns_per_row_tree"]),
                num(r.get("stage_s_per_part")),
            )
            for name, r in part.items()
        ]
        parts += [
            "## One predict part (`benchmarks/results/predict_part.json`)",
            "`python benchmarks/predict_part.py --workspaces WS ...`: one features part read, cast, "
            "predicted "
            "and ranked in a fresh process.",
            table(
                (
                    "scale",
                    "parts",
                    "trees",
                    "rows",
                    "read s",
                    "matrix s",
                    "predict s",
                    "rank s",
                    "part s",
                    "ns per row and tree",
                    "stage s per part",
                ),
                rows,
            ),
        ]
    if trees:
        rows = [(n, mrr(v["all"]), mrr(v["task2"])) for n, v in trees["mrr@100_by_trees"].items()]
        parts += [
            "## Ranker trees against eval MRR (`benchmarks/results/ranker_trees.json`)",
            f"The scale-1.0 ranker ({trees['trees']} trees) truncated; {num(trees['eval_sessions'])} eval "
            f"sessions, {num(trees['task2_eval_sessions'])} of them ES/FR/IT.",
            table(("trees", "eval MRR@100", "eval ES/FR/IT MRR@100"), rows),
        ]
    if stats:
        rows = [
            (
                r["stage"],
                r["scale"],
                code(r.get("code")),
                r["rc"],
                num(r["wall_s"]),
                num(r["cpu_s"]),
                num(r["peak_rss_gib"], 2),
                r.get("note", ""),
            )
            for r in stats["runs"]
        ]
        parts += [
            "## stats and prepare at scale 1.0 (`benchmarks/results/stats_prepare.json`)",
            table(("stage", "scale", "code", "exit", "wall s", "CPU s", "peak RSS GiB", "note"), rows),
        ]
    return "\n\n".join(parts)


class Page(NamedTuple):
    name: str
    sources: tuple[str, ...]
    render: Callable[[Path], str | None]


def _family_departures(valid: dict) -> str:
    if "departures" not in valid:
        return "-"
    return (f"{valid['departures']['to_target_family']:.1%} "
            f"({num(100 * valid['chooser_without_target_family'], 2)})")


def _task3_masks(run: dict) -> str:
    """The run's valid_mask (with its new_line_share when mixed or new_line) and its train_mask when it
    differs."""
    share = run["valid_mask"] in ("mixed", "new_line")
    mask = run["valid_mask"] + (f" {run['new_line_share']}" if share else "")
    train = run.get("train_mask") or run["valid_mask"]
    min_z = run.get("choose", {}).get("task3_min_z", 0.0)
    return (f"`{mask}`" + (f", learns on `{train}`" if train != run["valid_mask"] else "")
            + (f", min_z {min_z:g}" if min_z else ""))


def page_task3_worlds(results: Path) -> str | None:
    record = load("task3_worlds.json", results)
    if record is None:
        return None
    rows = []
    for run in record["runs"]:
        knobs, valid = run["knobs"], run["valid"]
        new_families, new_codes = 1 - knobs.get("task3_new_variant", 0.8), knobs.get("task3_new_code", 0.0)
        world = (f"`{run['world']}` ({knobs.get('title_layout', 'amazon')}, new families {new_families:.0%}, "
                 f"new codes {new_codes:.0%})")
        test = [run["test"][f"phase{p}"] for p in (1, 2)]
        rows.append((world, _task3_masks(run),
                     " / ".join(num(100 * valid[k], 2) for k in ("last_title", "chooser_edited")),
                     *(" / ".join(num(t[k], 2) for k in ("last_title", "task3_chooser", "published"))
                       + f" ({t['published'] - t['last_title']:+.2f}"
                       + (f" ± {t['published_gain_sd']:.2f})" if "published_gain_sd" in t else ")")
                       for t in test),
                     " / ".join(f"{run['gap']['task3_chooser'][f'phase{p}']:+.2f}" for p in (1, 2)),
                     " / ".join(f"{t['chooser_departs']:.0%}" for t in test), _family_departures(valid)))
    return "\n\n".join([
        "# Task 3 on two generated worlds (`benchmarks/results/task3_worlds.json`)",
        "`python benchmarks/task3_worlds.py --world default --world world2 -S valid_mask=<mask> "
        "[-S train_mask=<mask>] [-S new_line_share=<share>]`: each "
        "world generated at the default scale, prepared and split as the stages do, the chooser of stage "
        "`task3` learned on the valid split with `task3.chooser.train_mask` and scored (departure margins, "
        "editor, the figures of stage `choose`) with `task3.chooser.valid_mask` as given, stage `choose`'s "
        "per-locale pick (chooser, chooser + edits or the last title), both test phases scored with "
        "sacrebleu on the generated answers (BLEU x 100; ± the paired-bootstrap standard deviation of the "
        "published file's gain over the last title, 1129 test sessions a phase). Masks: `item` the target, "
        "`family` also its family's titles, `mixed q` `family` on a hashed share q of the valid sessions "
        "and `item` on the rest, `new_line q` `item` with the references of that share recast as new "
        "product lines (their family-only words replaced); \"learns on\": the train_mask where it is not "
        "the valid_mask; \"min_z\": stage `choose` published a method on a locale only where its valid gain "
        "exceeded that many bootstrap standard deviations (`choose.task3_min_z`; runs without it: 0). "
        "params.yaml's default: `mixed 0.5`, learns on `item`, min_z 1. "
        "`world2`: titles "
        "`Brand Model words noun colour size CODE`, longer pseudo-words, 30 colours (the world of "
        "tests/test_task3_worlds.py); `new families`: the share of Task 3 targets that open a new product "
        "line of their family's brand (the rest a new colour/size of a catalogue family). Gap: the chooser's "
        "valid gain over the last title minus its test gain.",
        "Valid departures to the target's family: the share of valid sessions where the chooser departs "
        "to a neighbour whose first tokens are the target's (a sibling a new product line has not), and the "
        "chooser's valid BLEU with those sessions back on the last title (runs before that metric: -).",
        table(("world", "masks", "valid last / chooser", "phase 1 last / chooser / published",
               "phase 2 last / chooser / published", "gap p1 / p2", "departs p1 / p2",
               "valid departures to the target's family (chooser without them)"), rows),
    ])


PAGES = (
    Page("scale.md", ("scale.json",), page_scale),
    Page(
        "real_data.md",
        ("real_run.json", "real_covisit_variants.json", "real_ranker_knobs.json", "real_history_curve.json"),
        page_real_data,
    ),
    Page("transfer.md", ("task2_transfer.json",), page_transfer),
    Page("distributed.md", ("distributed.json",), page_distributed),
    Page("encoders.md", ("encoders.json", "ranker_ablation.json", "complementarity.json"), page_encoders),
    Page("paper_baselines.md", ("paper_baselines.json", "encoders.json", "recbole_export.json"),
         page_paper_baselines),
    Page("task3_worlds.md", ("task3_worlds.json",), page_task3_worlds),
    Page(
        "budgets.md",
        (
            "deep_budget.json",
            "chunk_profile.json",
            "predict_part.json",
            "ranker_trees.json",
            "stats_prepare.json",
        ),
        page_budgets,
    ),
)


# ---------------------------------------------------------------- the README's headline figures


def labelled(runs: list[dict], label: str) -> dict | None:
    """The last run called ``label``."""
    found = [r for r in runs if r["label"] == label]
    return found[-1] if found else None


def default_run(runs: list[dict]) -> dict | None:
    return labelled(runs, README_RUNS["default"])


def headlines(results: Path) -> dict[str, str]:
    """The figures the README quotes, formatted as it quotes them."""
    out: dict[str, str] = {}
    scale = load("scale.json", results)
    if scale:
        run = default_run(scale["runs"])
        if run:
            out["default_wall_min"] = f"{run['total_wall_s'] / 60:.0f}"
            out["default_peak_gib"] = f"{run['peak_rss_gib']:.1f}"
            for d in LEADERBOARD:
                out[f"default_{d}"] = mrr(run["leaderboard"][d]["mrr"])
                out[f"default_{d}_share"] = f"{100 * run['leaderboard'][d]['ceiling_share']:.1f}"
        full = [r for r in scale["runs"] if r["scale"] == 1.0]
        if full:
            out["full_wall_h"] = f"{full[-1]['total_wall_s'] / 3600:.1f}"
            out["full_peak_gib"] = f"{full[-1]['peak_rss_gib']:.1f}"
            out["full_interactions_m"] = f"{full[-1]['interactions'] / 1e6:.1f}"
    real = load("real_run.json", results)
    if real:
        run = labelled(real["runs"], README_RUNS["real"])
    if real and run:
        out["real_wall_min"] = f"{run['total_wall_s'] / 60:.0f}"
        out["real_peak_gib"] = f"{run['peak_rss_gib']:.1f}"
        out["real_task2_phase1"] = mrr(run["leaderboard"]["task2_phase1"]["mrr"])
    return out


def measured_block(results: Path) -> str:
    h = headlines(results)
    rows = []
    if "default_wall_min" in h:
        rows.append(
            (
                "the default run (synthetic, scale 0.02)",
                f"{h['default_wall_min']} min",
                f"{h['default_peak_gib']} GiB",
                f"task 1 phase 1 MRR@100 {h['default_task1_phase1']} ({h['default_task1_phase1_share']}% of "
                "the "
                f"oracle ceiling); task 2 phase 1 {h['default_task2_phase1']} "
                f"({h['default_task2_phase1_share']}%)",
            )
        )
    if "full_wall_h" in h:
        rows.append(
            (
                f"full size (synthetic, scale 1.0, {h['full_interactions_m']}M interactions)",
                f"{h['full_wall_h']} h",
                f"{h['full_peak_gib']} GiB",
                "see [docs/scale.md](docs/scale.md)",
            )
        )
    if "real_wall_min" in h:
        rows.append(
            (
                "real sessions in the competition layout (122,597 train, real ES/FR/IT test sessions)",
                f"{h['real_wall_min']} min",
                f"{h['real_peak_gib']} GiB",
                f"task 2 phase 1 MRR@100 {h['real_task2_phase1']}",
            )
        )
    return "\n".join([BEGIN, table(("run, on 2 cores", "wall", "peak RSS", "score"), rows), END])


# ---------------------------------------------------------------- writing and checking


def rendered(results: Path = RESULTS) -> dict[str, str | None]:
    """docs page name -> its text (None: its records are absent, so no page)."""
    out: dict[str, str | None] = {}
    for page in PAGES:
        body = page.render(results)
        if body is None:
            out[page.name] = None
            continue
        present = [s for s in page.sources if (results / s).exists()]
        out[page.name] = (
            HEADER.format(sources=", ".join(f"benchmarks/results/{s}" for s in present))
            + "\n\n"
            + body.rstrip()
            + "\n"
        )
    out["index.md"] = index_page(out)
    return out


def index_page(pages: dict[str, str | None]) -> str:
    rows = [
        (f"[{p.name}]({p.name})", ", ".join(f"`{s}`" for s in p.sources)) for p in PAGES if pages.get(p.name)
    ]
    return (
        "\n\n".join(
            [
                HEADER.format(sources="benchmarks/results/*.json"),
                "# Measurements",
                "Every figure on these pages is rendered from a record in `benchmarks/results/` by "
                "`python -m benchmarks.render`; `make test` fails when a page differs from its records.",
                table(("page", "records"), rows),
            ]
        )
        + "\n"
    )


def readme_with_block(readme: str, results: Path = RESULTS) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"error: {README.name}: no {BEGIN!r} ... {END!r} block")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + measured_block(results) + tail


def stale(docs: Path = DOCS, readme: Path = README, results: Path = RESULTS) -> list[str]:
    """Every page (and the README block) that differs from what the records render."""
    problems = []
    for name, text in rendered(results).items():
        path = docs / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            problems.append(
                f"{path}: "
                + (
                    "should not exist (its records are absent)"
                    if text is None
                    else "missing"
                    if current is None
                    else "differs from its records"
                )
            )
    text = readme.read_text(encoding="utf-8")
    if readme_with_block(text, results) != text:
        problems.append(f"{readme}: the measured block differs from the records")
    return problems


def write(docs: Path = DOCS, readme: Path = README, results: Path = RESULTS) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    for name, text in rendered(results).items():
        path = docs / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            write_text(text, path)
    write_text(readme_with_block(readme.read_text(encoding="utf-8"), results), readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing; exit 1 when stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for problem in problems:
            print(f"error: {problem}; run python -m benchmarks.render", file=sys.stderr)
        return 1 if problems else 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
