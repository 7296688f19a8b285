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

Prints one JSON line (MRR@100 and Recall@100 of each, also split into ``cold`` targets, which the
scoring split's history (train sessions and test prefixes) never shows, and ``warm`` ones; training
seconds, epochs, the best epoch and the held-out MRR per epoch, session passes per item) and, with
``--record``, appends it to a JSON record ({"runs": [...]}) with the label, the overrides, the
workspace's folder name and the commit. :func:`evaluate` is the same run as a function
(benchmarks/paper_baselines.py calls it for every encoder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale import code_of  # noqa: E402
from candidates.base import query_sessions  # noqa: E402
from candidates.deep.config import ARCHS  # noqa: E402
from candidates.registry import source_class  # noqa: E402
from candidates.union import load_source_defaults  # noqa: E402
from core import config  # noqa: E402
from core.io import setup_logging, write_json  # noqa: E402
from core.metrics import ranking_metrics_from_ranks  # noqa: E402
from core.raw import TASK_LOCALES, gt_file, read_ground_truth  # noqa: E402

RARE = 5  # the rare targets: shown by the history at most this many times


def _rounded(ranks: pl.Series) -> dict:
    metrics = ranking_metrics_from_ranks(ranks)
    return {"mrr@100": round(metrics["mrr@100"], 4), "recall@100": round(metrics["recall@100"], 4),
            "n": len(ranks)}


def scores(top: pl.DataFrame, queries: pl.DataFrame, targets: pl.DataFrame,
           history: pl.DataFrame | None = None) -> dict:
    """MRR@100 / Recall@100 of ``top`` (session, item, rank) for ``queries`` against ``targets``
    (session, target); with ``history`` (session, position, item) also under ``cold`` (targets no history
    session shows, unknown ones included), ``warm`` (the rest) and ``rare`` (targets the history shows
    at most :data:`RARE` times, cold ones included)."""
    ranked = (queries.select("session").join(targets, on="session", how="left")
              .join(top, left_on=["session", "target"], right_on=["session", "item"], how="left"))
    out = _rounded(ranked["rank"])
    if history is not None:
        seen = history.drop_nulls("item").group_by(pl.col("item").alias("target")).agg(_seen=pl.len())
        ranked = ranked.join(seen, on="target", how="left")
        cold = ranked["_seen"].is_null()
        out["cold"] = _rounded(ranked.filter(cold)["rank"])
        out["warm"] = _rounded(ranked.filter(~cold)["rank"])
        out["rare"] = _rounded(ranked.filter(cold | (ranked["_seen"] <= RARE))["rank"])
    return out


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


def evaluate(model: str, overrides: dict, workspace: Path, datasets: Sequence[str] = ("task2_phase1",),
             label: str = "") -> dict:
    """Train ``deep.models.<model>`` (``overrides`` applied) on the workspace's valid history and score it
    alone (see the module docstring) on the valid split and on each test file of ``datasets``; returns
    the result line."""
    params = config.read_params()
    knobs = {**params["deep"]["models"][model], **overrides}
    arch = knobs.pop("arch", model)

    data = workspace / "data"
    items = pl.read_parquet(data / "prepared" / "items.parquet")
    events = pl.read_parquet(data / "prepared" / "events.parquet")
    valid_history = pl.read_parquet(data / "split" / "valid" / "history.parquet")
    test_history = pl.read_parquet(data / "split" / "test" / "history.parquet")
    valid_queries = pl.read_parquet(data / "split" / "valid" / "queries.parquet")
    valid_targets = pl.read_parquet(data / "split" / "valid" / "targets.parquet").rename({"item": "target"})
    test_queries = pl.read_parquet(data / "split" / "test" / "queries.parquet")

    code = code_of()  # the commit the run starts at
    start = time.perf_counter()  # fit trains (no checkpoint given), one thread, with params' seed
    cls = source_class(arch)
    source_knobs = {**load_source_defaults()[arch], "threads": 1, "device": "", "model": knobs}
    source_cfg = config.from_dict(cls.Config, source_knobs, f"source_defaults.{arch}")
    source = cls(source_cfg, config.seed()).fit(valid_history, items)
    seconds = time.perf_counter() - start
    meta = source.trained.meta

    def top_of(queries: pl.DataFrame) -> pl.DataFrame:
        own = events.join(queries.select("session"), on="session")
        return source.generate(query_sessions(queries, own), 100)

    valid_top = top_of(valid_queries)
    task2 = valid_queries.filter(pl.col("locale").is_in(TASK_LOCALES[2]))
    tested = {dataset: test_queries.filter(pl.col("dataset") == dataset) for dataset in datasets}
    return {
        "label": label, "model": model, "arch": arch, "overrides": overrides,
        "valid": scores(valid_top, valid_queries, valid_targets, valid_history),
        "valid_task2": scores(valid_top, task2, valid_targets, valid_history),
        **{dataset: scores(top_of(rows), rows, test_targets(workspace, dataset, test_queries, items),
                           test_history)
           for dataset, rows in tested.items()},
        "train_s": round(seconds, 1), "epochs": meta["epoch"], "best_epoch": meta.get("best_epoch"),
        "stopped_by": meta.get("stopped_by"),
        "held_out_mrr": [round(m, 4) for m in meta.get("valid_mrr", [])],
        "passes_per_item": round(meta["passes_per_item"], 2),
        "session_passes": int(sum(meta.get("sessions", []))),
        "indexed_items": int(len(meta.get("indexable", []))),
        "parameters": int(sum(p.numel() for p in source.trained.model.parameters())),
        "workspace": workspace.resolve().name,
        "code": code,
    }


def append_record(result: dict, record: Path) -> None:
    """Append ``result`` to the JSON record ``{"runs": [...], ...}`` (created when absent); its other keys
    (encoders.json's ``pipeline``) are kept."""
    data = json.loads(record.read_text()) if record.exists() else {}
    write_json({**data, "runs": [*data.get("runs", []), result]}, record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a deep.models entry of params.yaml, e.g. " + ", ".join(ARCHS))
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
    result = evaluate(args.model, overrides, args.workspace, [args.dataset], args.label)
    print(json.dumps(result))
    if args.record:
        append_record(result, args.record)


if __name__ == "__main__":
    main()
