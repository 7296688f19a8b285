"""Stage ``train_deep``: train the deep session encoders of params ``deep.train`` on one split's history.

    python -m pipeline.train_deep --history data/split/valid/history.parquet \
        --items data/prepared/items.parquet --out models/deep/valid --metrics metrics/deep/valid.json
    python -m pipeline.train_deep ... --model sasrec     # one of them (the others' metrics are left out)

Reads params ``seed`` and ``deep`` (``deep.models.<model>`` picks the architecture and knobs) and
writes ``<out>/<model>.pt`` per model. ``deep.parallel`` trainings run at once, each in a process of
its own with ``deep.threads`` torch threads: these encoders are small and use a second thread poorly,
so on 2 cores the two side by side with one thread each finish sooner than one after the other with
two (162.5 s against 202.0 s at scale 0.02, benchmarks/results/scale.json). A training's result
depends on its thread count, never on what runs beside it.

Each checkpoint is rewritten after every epoch and resumed when it matches (same knobs but the epoch
count, seed, vocabulary and history), so an interrupted run, or raising ``epochs``, continues where
it stopped; dvc.yaml marks the folder ``persist`` for that reason. The candidate sources load them
(candidates.deep.source); the metrics file holds, per model, the loss and seconds of every epoch.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl

from candidates.deep.config import DeepConfig
from candidates.deep.train import train
from core import config
from core.device import pick_device, set_threads
from core.errors import exit_on_error
from core.io import peak_rss_mib, setup_logging, timed, write_json

log = logging.getLogger(__name__)


def train_one(model: str, history_path: Path, items_path: Path, out: Path, device_name: str | None,
              params: Path, progress: bool) -> dict:
    """Train ``deep.models.<model>`` into ``out`` (in this process) and return its metrics."""
    setup_logging()
    deep = config.load_section(DeepConfig, "deep", params)
    cfg = deep.models[model]
    device = pick_device(device_name)
    threads = set_threads(deep.threads)
    history = pl.read_parquet(history_path, columns=["session", "position", "item"])
    shared = ["product"] if cfg.share_products else []  # the ASIN each item index belongs to
    items = pl.read_parquet(items_path, columns=["item", "locale", "in_catalog", *shared])
    log.info("%s: %d history events, %d items, device %s, %d CPU threads", model, history.height,
             items.height, device, threads)
    with timed(f"train_deep {model}"):
        trained = train(history, items, cfg, config.seed(params), device=device, amp=deep.amp,
                        checkpoint=out, progress=progress)
    return {
        "model": model, "arch": cfg.arch, "device": str(device), "threads": threads,
        "epochs": trained.meta["epoch"], "loss": trained.meta["losses"],
        "epoch_seconds": trained.meta["seconds"],
        "train_seconds": sum(trained.meta["seconds"]), "peak_rss_mib": peak_rss_mib(),
        "steps": sum(trained.meta.get("steps", [])), "session_passes": sum(trained.meta.get("sessions", [])),
        "stopped_by": trained.meta.get("stopped_by", "epochs"),
        "passes_per_item": round(trained.meta["passes_per_item"], 3),
    }


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--items", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder: <out>/<model>.pt")
    parser.add_argument("--metrics", type=Path, required=True, help="per model: losses and timing (.json)")
    parser.add_argument("--model", default=None, help="only this deep.models key (default: deep.train)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    parser.add_argument("--params", type=Path, default=config.PARAMS_FILE)
    args = parser.parse_args(argv)
    setup_logging()

    deep = config.load_section(DeepConfig, "deep", args.params)
    if args.model is not None and args.model not in deep.models:
        parser.error(f"--model {args.model!r} not in params deep.models {sorted(deep.models)}")
    models = [args.model] if args.model else list(deep.train)
    jobs = {m: (m, args.history, args.items, args.out / f"{m}.pt", args.device, args.params) for m in models}
    workers = min(max(deep.parallel, 1), len(models))
    log.info("training %s, %d at a time", ", ".join(models), workers)
    if workers == 1:
        metrics = {m: train_one(*job, progress=True) for m, job in jobs.items()}
    else:  # spawn: a forked child would inherit torch's thread pool state
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {m: pool.submit(train_one, *job, progress=False) for m, job in jobs.items()}
            metrics = {m: future.result() for m, future in futures.items()}
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    main()
