"""Stage ``task3_mt5``: next product title with an mT5 seq2seq generator (rankers/mt5.py).

    python -m pipeline.task3_mt5 --prepared data/prepared --splitdir data/split --raw data/raw \
        --model models/task3_mt5 --out submissions --metrics metrics/task3_mt5.json

One model, trained on (context, next title) pairs of the valid history (which holds no held-out
target), scored on a seeded sample of the held-out sessions (``max_valid_sessions``; target title
= the target's catalogue title, an imperfect twin of Task 3's new products), then used for both
test phases (datasets task3_phase1/2, file row order). Empty generations fall back to the last
title. Writes the model (from_pretrained layout), submissions/task3_mt5/task3_phase{P}.parquet
and the validation BLEU beside the last-title BLEU of the same sessions.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import polars as pl
import torch

from pipeline import config, submission
from pipeline.io import setup_logging, timed, write_json
from pipeline.metrics import bleu
from pipeline.raw import PHASES
from pipeline.task3 import test_sessions, valid_references
from rankers import mt5
from rankers.last_title import last_titles
from rankers.titles import item_titles

log = logging.getLogger(__name__)


def predict(model, tok, sessions: pl.DataFrame, events: pl.DataFrame, items: pl.DataFrame,
            titles: pl.DataFrame, cfg: mt5.Mt5Config) -> pl.DataFrame:
    """session, next_item_title for ``sessions`` (same order); the last title when generation is empty."""
    ctx = mt5.contexts(events.join(sessions.select("session"), on="session"), titles, cfg.n_context)
    ctx = ctx.with_columns(gen=pl.Series(mt5.generate(model, tok, ctx["source"].to_list(), cfg), dtype=pl.String))
    fallback = last_titles(sessions, events, items)
    return (fallback.join(ctx.select("session", "gen"), on="session", how="left", maintain_order="left")
            .select("session", next_item_title=pl.when(pl.col("gen").str.strip_chars() != "")
                    .then("gen").otherwise("next_item_title")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--splitdir", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="output model directory")
    parser.add_argument("--out", type=Path, required=True, help="submissions root")
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    cfg = config.load_section(mt5.Mt5Config, "task3.mt5")
    seed = config.seed()
    if mt5.device().type == "cpu":
        torch.set_num_threads(cfg.threads)
    items = pl.read_parquet(args.prepared / "items.parquet")
    sessions = pl.read_parquet(args.prepared / "sessions.parquet")
    events = pl.read_parquet(args.prepared / "events.parquet")
    titles = item_titles(items)
    with timed("mt5 train"):
        pairs = mt5.training_pairs(pl.read_parquet(args.splitdir / "valid" / "history.parquet"), titles, cfg, seed)
        log.info("mt5: %d training pairs on %s", pairs.height, mt5.device())
        with tempfile.TemporaryDirectory() as work:  # the raw SentencePiece files; the tokenizer is saved below
            model, tok = mt5.build(cfg, titles["title"].unique().sort().to_list(), Path(work), seed)
        stats = mt5.train(model, tok, pairs, cfg, seed)
        mt5.save(model, tok, args.model)
    with timed("mt5 valid"):
        refs = valid_references(pl.read_parquet(args.splitdir / "valid" / "queries.parquet"),
                                pl.read_parquet(args.splitdir / "valid" / "targets.parquet"), titles)
        if refs.height > cfg.max_valid_sessions:
            refs = refs.sample(cfg.max_valid_sessions, seed=seed).sort("session")
        gen = predict(model, tok, refs, events, items, titles, cfg)
        base = last_titles(refs, events, items)
        metrics = {"mt5": bleu(gen["next_item_title"].to_list(), refs["ref_title"].to_list()),
                   "last_title_same_sessions": bleu(base["next_item_title"].to_list(), refs["ref_title"].to_list()),
                   "n_valid_sessions": refs.height, "train": stats, "params": config.as_dict(cfg)}
        log.info("valid BLEU mt5 %.4f, last title %.4f", metrics["mt5"], metrics["last_title_same_sessions"])
    with timed("mt5 test"):
        for phase in PHASES:
            fold = test_sessions(sessions, phase)
            if fold.height == 0:
                log.warning("no task3_phase%d sessions in the prepared data", phase)
                continue
            sub = fold.select("session", "locale").join(predict(model, tok, fold, events, items, titles, cfg),
                                                         on="session", maintain_order="left")
            submission.write(sub.select("locale", "next_item_title"),
                             submission.submission_path(args.out / "task3_mt5", 3, phase), 3,
                             submission.load_test_locales(args.raw, 3, phase), None)
            log.info("task3_mt5 phase %d: %d rows", phase, sub.height)
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    main()
