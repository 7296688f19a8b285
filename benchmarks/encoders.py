"""One deep session encoder alone, as the pipeline trains it: the local valid split and a test file's answers.

    python benchmarks/encoders.py gru4rec --workspace ../real --label recipe \
        --record benchmarks/results/encoders.json
    python benchmarks/encoders.py sasrec --workspace ../real --set neg_alpha=0 --set patience=0 --label no_pop

Reads the knobs of ``deep.models.<model>`` from this checkout's params.yaml (``--set key=value``
overrides them, YAML values), trains on ``<workspace>/data/split/valid/history.parquet`` exactly as
stage train_deep does (one thread, params' seed; no valid target in it), then ranks, with the
source's own retrieval (``candidates.deep.source``: faiss top 100 of the session's locale):
- every valid query (``valid``) and those of ES/FR/IT (``valid_task2``), against the valid targets;
- the sessions of test file ``--dataset`` (default task2_phase1) against ``data/raw/gt``, the model
  encoding the test split's queries as the pipeline does (its history only adds the valid targets).

Prints one JSON line (MRR@100 and Recall@100 of each, training seconds, epochs, the best epoch and the
held-out MRR per epoch, session passes per item) and, with ``--record``, appends it to a JSON record
({"runs": [...]}) with the label, the overrides, the workspace's folder name and the commit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale import code_of  # noqa: E402
from candidates.base import query_sessions  # noqa: E402
from candidates.deep.source import GRU4RecSource, SASRecSource  # noqa: E402
from candidates.union import load_source_defaults  # noqa: E402
from core import config  # noqa: E402
from core.io import setup_logging, write_json  # noqa: E402
from core.metrics import ranking_metrics_from_ranks  # noqa: E402
from core.raw import TASK_LOCALES, gt_file, read_ground_truth  # noqa: E402

SOURCES = {"gru4rec": GRU4RecSource, "sasrec": SASRecSource}


def scores(top: pl.DataFrame, queries: pl.DataFrame, targets: pl.DataFrame) -> dict:
    """MRR@100 / Recall@100 of ``top`` (session, item, rank) for ``queries`` against ``targets``
    (session, target)."""
    ranks = (queries.select("session").join(targets, on="session", how="left")
             .join(top, left_on=["session", "target"], right_on=["session", "item"], how="left")["rank"])
    metrics = ranking_metrics_from_ranks(ranks)
    return {"mrr@100": round(metrics["mrr@100"], 4), "recall@100": round(metrics["recall@100"], 4),
            "n": queries.height}


def test_targets(workspace: Path, dataset: str, queries: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """(session, target) of test file ``dataset``: its gt rows in file order, ids mapped to item indices."""
    task, phase = int(dataset[4]), int(dataset[-1])
    gt = read_ground_truth(workspace / "data" / "raw" / "gt" / gt_file(task, phase), task)
    rows = queries.filter(pl.col("dataset") == dataset).sort("row")
    if rows.height != gt.height:
        raise ValueError(f"{dataset}: {rows.height} test queries but {gt.height} ground-truth rows")
    return (rows.select("session", "locale").with_columns(id=gt["next_item"])
            .join(items.select("id", "locale", pl.col("item").alias("target")), on=["id", "locale"],
                  how="left")
            .select("session", "target"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(SOURCES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model knob")
    parser.add_argument("--workspace", type=Path, default=Path("."),
                        help="a checkout whose data/ the graph built")
    parser.add_argument("--dataset", default="task2_phase1", help="the test file scored with data/raw/gt")
    parser.add_argument("--label", default="")
    parser.add_argument("--record", type=Path, help="append the result to this JSON record ({'runs': [...]})")
    args = parser.parse_args()
    setup_logging()
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    params = config.read_params()
    knobs = {**params["deep"]["models"][args.model], **overrides}
    knobs.pop("arch", None)

    data = args.workspace / "data"
    items = pl.read_parquet(data / "prepared" / "items.parquet")
    events = pl.read_parquet(data / "prepared" / "events.parquet")
    valid_history = pl.read_parquet(data / "split" / "valid" / "history.parquet")
    valid_queries = pl.read_parquet(data / "split" / "valid" / "queries.parquet")
    valid_targets = pl.read_parquet(data / "split" / "valid" / "targets.parquet").rename({"item": "target"})
    test_queries = pl.read_parquet(data / "split" / "test" / "queries.parquet")

    code = code_of()  # the commit the run starts at
    start = time.perf_counter()  # fit trains (no checkpoint given), one thread, with params' seed
    source_knobs = {**load_source_defaults()[args.model], "threads": 1, "device": "", "model": knobs}
    source_cfg = config.from_dict(SOURCES[args.model].Config, source_knobs, f"source_defaults.{args.model}")
    source = SOURCES[args.model](source_cfg, config.seed()).fit(valid_history, items)
    seconds = time.perf_counter() - start
    meta = source.trained.meta

    def top_of(queries: pl.DataFrame) -> pl.DataFrame:
        own = events.join(queries.select("session"), on="session")
        return source.generate(query_sessions(queries, own), 100)

    valid_top = top_of(valid_queries)
    task2 = valid_queries.filter(pl.col("locale").is_in(TASK_LOCALES[2]))
    tested = test_queries.filter(pl.col("dataset") == args.dataset)
    result = {
        "label": args.label, "model": args.model, "overrides": overrides,
        "valid": scores(valid_top, valid_queries, valid_targets),
        "valid_task2": scores(valid_top, task2, valid_targets),
        args.dataset: scores(top_of(tested), tested,
                             test_targets(args.workspace, args.dataset, test_queries, items)),
        "train_s": round(seconds, 1), "epochs": meta["epoch"], "best_epoch": meta.get("best_epoch"),
        "stopped_by": meta.get("stopped_by"),
        "held_out_mrr": [round(m, 4) for m in meta.get("valid_mrr", [])],
        "passes_per_item": round(meta["passes_per_item"], 2),
        "session_passes": int(sum(meta.get("sessions", []))),
        "indexed_items": int(len(meta.get("indexable", []))),
        "workspace": args.workspace.resolve().name,
        "code": code,
    }
    print(json.dumps(result))
    if args.record:
        runs = json.loads(args.record.read_text())["runs"] if args.record.exists() else []
        write_json({"runs": [*runs, result]}, args.record)


if __name__ == "__main__":
    main()
