"""Training throughput of the deep session encoders, and the full-scale training time it implies.

    python benchmarks/deep_throughput.py --device cpu --threads 2
    python benchmarks/deep_throughput.py --device cuda --sessions 200000

Trains one epoch of each model (params.yaml ``deep.models`` knobs, ``epochs`` forced to 1) on
``--sessions`` random sessions (Zipf items, lengths like Amazon-M2: mean ~4) over a catalogue of
``--items`` item indices: the full-scale vocabulary by default, since the embedding table and its
Adam update grow with it. ``--history``/``--items-parquet`` time real split data instead.
Prints sessions/second and the estimated wall time of ``epochs`` epochs over the real-scale
training set (3,606,249 train sessions + 361,659 test sessions' prev_items).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import torch

from candidates.deep.config import DeepConfig
from candidates.deep.data import training_sequences
from candidates.deep.train import train, vocabulary
from core import config
from core.device import pick_device, set_threads
from core.io import setup_logging

FULL_SCALE_SESSIONS = 3_606_249 + 361_659
FULL_SCALE_ITEMS = 1_410_675
LOCALES = ("DE", "JP", "UK", "ES", "FR", "IT")


def random_world(n_sessions: int, n_items: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(history, items): sessions of 2+ events (length 1 + geometric, mean ~4) over Zipf items."""
    rng = np.random.default_rng(seed)
    lengths = 1 + rng.geometric(1 / 3, n_sessions)
    per_locale = n_items // len(LOCALES)
    locale = rng.integers(0, len(LOCALES), n_sessions)
    ranks = np.minimum(rng.zipf(1.2, lengths.sum()), per_locale) - 1
    item = (np.repeat(locale, lengths) * per_locale + ranks).astype(np.int32)
    session = np.repeat(np.arange(n_sessions, dtype=np.int32), lengths)
    position = (np.arange(len(item)) - np.repeat(np.cumsum(lengths) - lengths, lengths)).astype(np.int32)
    history = pl.DataFrame({"session": session, "position": position, "item": item})
    items = pl.DataFrame({"item": np.arange(per_locale * len(LOCALES), dtype=np.int32),
                          "locale": np.repeat(LOCALES, per_locale), "in_catalog": True})
    return history, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: params deep.threads)")
    parser.add_argument("--sessions", type=int, default=20_000, help="random sessions to time")
    parser.add_argument("--items", type=int, default=FULL_SCALE_ITEMS,
                        help="item vocabulary of the random world")
    parser.add_argument("--history", type=Path, help="time this history.parquet instead of random sessions")
    parser.add_argument("--items-parquet", type=Path, help="items.parquet matching --history")
    parser.add_argument("--models", nargs="*", default=None, help="keys of params deep.models (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for the estimate (default: params)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    setup_logging(logging.WARNING)

    deep = config.load_section(DeepConfig, "deep")
    device = pick_device(args.device)
    threads = set_threads(deep.threads if args.threads is None else args.threads)
    if args.history:
        history = pl.read_parquet(args.history, columns=["session", "position", "item"])
        items = pl.read_parquet(args.items_parquet, columns=["item", "locale", "in_catalog"])
        what = str(args.history)
    else:
        history, items = random_world(args.sessions, args.items, config.seed())
        what = f"random sessions over {args.items} items"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    print(f"device: {device} ({name}); data: {what}")
    results = {}
    for model in args.models or list(deep.models):
        cfg = deep.models[model].replace(epochs=1)
        n_train = len(training_sequences(history, items, cfg.max_len, vocabulary(items)[1]).session)
        trained = train(history, items, cfg, config.seed(), device=device, amp=deep.amp, progress=False)
        seconds = trained.meta["seconds"][0]
        rate = n_train / seconds
        epochs = args.epochs or deep.models[model].epochs
        full_h = FULL_SCALE_SESSIONS * epochs / rate / 3600
        results[model] = {"sessions": n_train, "seconds": seconds, "sessions_per_s": rate, "epochs": epochs,
                          "full_scale_hours": full_h}
        print(f"{model:10s} {n_train:9d} sessions in {seconds:7.1f}s = {rate:9.0f} sessions/s; "
              f"full scale ({FULL_SCALE_SESSIONS:,} sessions x {epochs} epochs) ~ {full_h:.2f} h")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": str(device), "name": name, "data": what, **results},
                                       indent=2))


if __name__ == "__main__":
    main()
