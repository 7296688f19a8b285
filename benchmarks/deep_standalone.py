"""Standalone quality of one deep session encoder: train on the valid history, rank every valid query.

    python benchmarks/deep_standalone.py gru4rec
    python benchmarks/deep_standalone.py sasrec --set epochs=8 --set negatives=2048
    python benchmarks/deep_standalone.py gru4rec --set max_epoch_sessions=25000 \
        --record benchmarks/results/deep_budget.json

Reads the knobs of ``deep.models.<model>`` from params.yaml, overrides them with ``--set key=value``
(YAML values), trains on data/split/valid/history.parquet (no valid target in it) and prints one JSON
line: the overrides, MRR@100 and Recall@100 of the model's own top 100 over all valid queries, and
the training seconds (``--record``: also appended, with the scale, the session passes trained and the
items of the history, to a JSON record). This is how the epoch/negative sweep in params.yaml was
measured; the pipeline's own figure for the same model is ``source_<model>`` on the leaderboard.
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
from core.io import write_json  # noqa: E402
from core.metrics import ranking_metrics_from_ranks  # noqa: E402

SOURCES = {"gru4rec": GRU4RecSource, "sasrec": SASRecSource}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(SOURCES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model knob")
    parser.add_argument("--split", type=Path, default=Path("data/split/valid"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--record", type=Path, help="append the result to this JSON record ({'runs': [...]})")
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    params = config.read_params()
    knobs = {**params["deep"]["models"][args.model], **overrides}
    knobs.pop("arch", None)

    history = pl.read_parquet(args.split / "history.parquet")
    queries = pl.read_parquet(args.split / "queries.parquet")
    targets = pl.read_parquet(args.split / "targets.parquet")
    items = pl.read_parquet(args.prepared / "items.parquet")
    events = pl.read_parquet(args.prepared / "events.parquet").join(queries.select("session"), on="session")

    start = time.perf_counter()  # fit trains (no checkpoint given), with params' seed
    knobs_of = {**load_source_defaults()[args.model], "threads": args.threads, "model": knobs}
    source_cfg = config.from_dict(SOURCES[args.model].Config, knobs_of, f"source_defaults.{args.model}")
    source = SOURCES[args.model](source_cfg, config.seed()).fit(history, items)
    seconds = time.perf_counter() - start
    top = source.generate(query_sessions(queries, events), 100)
    target_col = next(c for c in targets.columns if c != "session")
    ranks = (queries.select("session").join(targets.rename({target_col: "target"}), on="session", how="left")
             .join(top, left_on=["session", "target"], right_on=["session", "item"], how="left")["rank"])
    metrics = ranking_metrics_from_ranks(ranks)
    result = {"model": args.model, **overrides, "mrr@100": round(metrics["mrr@100"], 4),
              "recall@100": round(metrics["recall@100"], 4), "train_s": round(seconds, 1),
              "scale": params["data"]["scale"],
              "session_passes": int(sum(source.trained.meta.get("sessions", []))),
              "history_items": history["item"].n_unique(), "code": code_of()}
    print(json.dumps(result))
    if args.record:
        runs = json.loads(args.record.read_text())["runs"] if args.record.exists() else []
        write_json({"runs": [*runs, result]}, args.record)



if __name__ == "__main__":
    main()
