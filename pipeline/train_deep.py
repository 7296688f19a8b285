"""Stage ``train_deep``: train one deep session encoder on one split's history.

    python -m pipeline.train_deep --history data/split/valid/history.parquet \
        --items data/prepared/items.parquet --model gru4rec \
        --out models/deep/valid/gru4rec.pt --metrics metrics/deep/valid/gru4rec.json

Reads params ``seed`` and ``deep`` (``deep.models.<model>`` picks the architecture and knobs).
The checkpoint is rewritten after every epoch and resumed when it matches (same knobs but the
epoch count, seed, vocabulary and history), so an interrupted run, or raising ``epochs``, continues
where it stopped; dvc.yaml marks it ``persist`` for that reason. The candidate sources load it
(candidates.deep.source); the metrics file holds the loss and seconds of every epoch.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl

from candidates.deep.config import DeepConfig
from candidates.deep.train import train
from pipeline import config
from pipeline.device import pick_device, set_threads
from pipeline.io import peak_rss_mib, setup_logging, timed, write_json

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--items", type=Path, required=True)
    parser.add_argument("--model", required=True, help="a key of params deep.models")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint (.pt)")
    parser.add_argument("--metrics", type=Path, required=True, help="per-epoch loss and timing (.json)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    parser.add_argument("--params", type=Path, default=config.PARAMS_FILE)
    args = parser.parse_args(argv)
    setup_logging()

    deep = config.load_section(DeepConfig, "deep", args.params)
    if args.model not in deep.models:
        parser.error(f"--model {args.model!r} not in params deep.models {sorted(deep.models)}")
    cfg = deep.models[args.model]
    seed = config.seed(args.params)
    device = pick_device(args.device)
    threads = set_threads(deep.threads)
    history = pl.read_parquet(args.history, columns=["session", "position", "item"])
    items = pl.read_parquet(args.items, columns=["item", "locale", "in_catalog"])
    log.info("%s: %d history events, %d items, device %s, %d CPU threads", args.model, history.height,
             items.height, device, threads)
    with timed(f"train_deep {args.model}"):
        trained = train(history, items, cfg, seed, device=device, amp=deep.amp, checkpoint=args.out)
    write_json({
        "model": args.model, "arch": cfg.arch, "device": str(device), "threads": threads,
        "epochs": trained.meta["epoch"], "loss": trained.meta["losses"],
        "epoch_seconds": trained.meta["seconds"],
        "train_seconds": sum(trained.meta["seconds"]), "peak_rss_mib": peak_rss_mib(),
        "steps": sum(trained.meta.get("steps", [])), "session_passes": sum(trained.meta.get("sessions", [])),
        "stopped_by": trained.meta.get("stopped_by", "epochs"),
    }, args.metrics)


if __name__ == "__main__":
    main()
