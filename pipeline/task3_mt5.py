"""Stage ``task3_mt5``: next product title with an mT5 seq2seq generator (titles/mt5.py).

    python -m pipeline.task3_mt5 --prepared data/prepared --splitdir data/split --raw data/raw \
        --model models/task3_mt5 --out submissions --metrics metrics/task3_mt5.json

One model, trained on (context, next title) pairs of the valid history (which holds no held-out
target), scored on a seeded sample of the held-out sessions (``max_valid_sessions``; target title
= the target's catalogue title, an imperfect twin of Task 3's new products), then used for both
test phases (datasets task3_phase1/2, file row order).

Two submissions: ``task3_mt5`` is the pure generator (the last title only where the generation is
empty); ``task3_mt5_fallback`` emits the last title instead where the generation has fewer than
``fallback_min_tokens`` words, and for whole locales where that still scores below the last
title on the validation sessions. Writes the model (from_pretrained layout),
submissions/task3_mt5{,_fallback}/task3_phase{P}.parquet and the validation BLEU of both beside
the last-title BLEU of the same sessions (the fallback locales are chosen on those same sessions,
so its validation number is optimistic; the leaderboard is the honest one).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import polars as pl
import torch

from core import config, submission
from core.device import pick_device
from core.io import setup_logging, timed, write_json
from core.metrics import bleu
from core.raw import PHASES, exit_on_data_error
from titles import mt5
from titles.folds import no_titles, test_sessions, valid_references
from titles.last_title import last_titles
from titles.text import item_titles, tokens

log = logging.getLogger(__name__)


def predict(model, tok, sessions: pl.DataFrame, events: pl.DataFrame, items: pl.DataFrame,
            titles: pl.DataFrame, cfg: mt5.Mt5Config, limits: dict | None) -> pl.DataFrame:
    """session, locale, gen (the raw generation, '' for a session without a titled item), last_title.

    Args:
        sessions: session, locale (output order).
        limits: per-locale generation lengths (``mt5.length_limits``) or None.
    """
    ctx = mt5.contexts(events.join(sessions.select("session"), on="session"), titles, cfg.n_context)
    ctx = ctx.join(sessions.select("session", "locale"), on="session", maintain_order="left")
    gen = mt5.generate(model, tok, ctx["source"].to_list(), cfg, ctx["locale"].to_list(), limits)
    ctx = ctx.with_columns(gen=pl.Series(gen, dtype=pl.String))
    return (sessions.select("session", "locale")
            .join(ctx.select("session", "gen"), on="session", how="left", maintain_order="left")
            .join(last_titles(sessions, events, items).select("session", last_title="next_item_title"),
                  on="session", maintain_order="left")
            .with_columns(pl.col("gen").fill_null("")))


def combine(pred: pl.DataFrame, fallback_min_tokens: int, fallback_locales: list[str]) -> pl.DataFrame:
    """session, locale, mt5 (pure: the generation, the last title when it is empty), mt5_fallback.

    ``mt5_fallback`` = the last title where the generation has fewer than ``fallback_min_tokens``
    13a tokens or the session's locale is in ``fallback_locales``, else the generation.
    """
    n_tok = tokens(pred["gen"]).list.len()
    pure = pl.when(pl.col("gen").str.strip_chars() != "").then("gen").otherwise("last_title")
    short = (n_tok < max(fallback_min_tokens, 1)) | pl.col("locale").is_in(fallback_locales)
    return pred.with_columns(n_tok=n_tok).select(
        "session", "locale", mt5=pure, mt5_fallback=pl.when(short).then("last_title").otherwise(pure))


def evaluate(pred: pl.DataFrame, refs: pl.DataFrame, cfg: mt5.Mt5Config) -> tuple[dict, list[str]]:
    """Validation BLEU of mt5, mt5+fallback and the last title; the locales that fall back.

    Args:
        pred: ``predict`` output; refs: session, locale, ref_title (same sessions).
    A locale falls back to the last title when the short-generation fallback still scores below
    the last title on its validation sessions.
    """
    ref = refs.select("session", "ref_title")
    first = (combine(pred, cfg.fallback_min_tokens, [])
             .join(pred.select("session", "last_title"), on="session"))
    first = first.join(ref, on="session", maintain_order="left")
    per_locale, fallback = {}, []
    for (locale,), part in first.group_by("locale", maintain_order=True):
        refs_l = part["ref_title"].to_list()
        scores = {m: bleu(part[m].to_list(), refs_l) for m in ("mt5", "mt5_fallback", "last_title")}
        per_locale[locale] = scores | {"n": part.height}
        if scores["mt5_fallback"] < scores["last_title"]:
            fallback.append(locale)
    final = combine(pred, cfg.fallback_min_tokens, fallback).join(ref, on="session", maintain_order="left")
    refs_all = final["ref_title"].to_list()
    gen_len = tokens(pred["gen"]).list.len()
    metrics = {"mt5": bleu(final["mt5"].to_list(), refs_all),
               "mt5_fallback": bleu(final["mt5_fallback"].to_list(), refs_all),
               "last_title_same_sessions": bleu(pred["last_title"].to_list(),
                                                pred.join(ref, on="session", maintain_order="left")
                                                ["ref_title"].to_list()),
               "fallback_locales": sorted(fallback),
               "short_generations": float((gen_len < cfg.fallback_min_tokens).mean()),
               "mean_generated_tokens": float(gen_len.mean()),
               "mean_reference_tokens": float(tokens(refs["ref_title"]).list.len().mean()),
               "per_locale": dict(sorted(per_locale.items())),
               "n_valid_sessions": refs.height}
    return metrics, sorted(fallback)


def write_untrained(args: argparse.Namespace, sessions: pl.DataFrame, events: pl.DataFrame,
                    items: pl.DataFrame,
                    metrics: dict) -> None:
    """No titles to learn from: the stage's outputs say so; both submissions hold the last-title fallback."""
    write_json(metrics, args.model / "not_trained.json")
    for phase in PHASES:
        fold = test_sessions(sessions, phase)
        if fold.height == 0:
            continue
        out = fold.join(last_titles(fold, events, items), on="session", maintain_order="left")
        for method in ("task3_mt5", "task3_mt5_fallback"):
            submission.write(out.select("locale", "next_item_title"),
                             submission.submission_path(args.out / method, 3, phase),
                             3, submission.load_test_locales(args.raw, 3, phase), None)
    write_json(metrics, args.metrics)


@exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    if pick_device().type == "cpu":
        torch.set_num_threads(cfg.threads)
    items = pl.read_parquet(args.prepared / "items.parquet")
    sessions = pl.read_parquet(args.prepared / "sessions.parquet")
    events = pl.read_parquet(args.prepared / "events.parquet")
    # locale travels with the titles so the generation lengths can be set per locale.
    titles = item_titles(items).join(items.select("item", "locale"), on="item")
    refs = valid_references(pl.read_parquet(args.splitdir / "valid" / "queries.parquet"),
                            pl.read_parquet(args.splitdir / "valid" / "targets.parquet"), titles)
    skipped = no_titles(titles, refs, "task3_mt5")
    if skipped is not None:
        write_untrained(args, sessions, events, items, skipped)
        return
    with timed("mt5 train"):
        pairs = mt5.training_pairs(pl.read_parquet(args.splitdir / "valid" / "history.parquet"), titles, cfg,
                                   seed)
        log.info("mt5: %d training pairs on %s", pairs.height, pick_device())
        # the raw SentencePiece files; the tokenizer is saved below
        with tempfile.TemporaryDirectory() as work:
            model, tok = mt5.build(cfg, titles["title"].unique().sort().to_list(), Path(work), seed)
        stats = mt5.train(model, tok, pairs, cfg, seed)
        limits = mt5.length_limits(pairs, tok, cfg)
        mt5.save(model, tok, args.model)
    with timed("mt5 valid"):
        if refs.height > cfg.max_valid_sessions:
            refs = refs.sample(cfg.max_valid_sessions, seed=seed).sort("session")
        pred = predict(model, tok, refs, events, items, titles, cfg, limits)
        metrics, fallback = evaluate(pred, refs, cfg)
        metrics |= {"length_limits": {str(k): v for k, v in limits.items()}, "train": stats,
                    "params": config.as_dict(cfg)}
        log.info("valid BLEU mt5 %.4f, mt5+fallback %.4f (locales %s), last title %.4f", metrics["mt5"],
                 metrics["mt5_fallback"], fallback, metrics["last_title_same_sessions"])
    with timed("mt5 test"):
        for phase in PHASES:
            fold = test_sessions(sessions, phase)
            if fold.height == 0:
                log.warning("no task3_phase%d sessions in the prepared data", phase)
                continue
            out = combine(predict(model, tok, fold, events, items, titles, cfg, limits),
                          cfg.fallback_min_tokens, fallback)
            locales = submission.load_test_locales(args.raw, 3, phase)
            for method, column in (("task3_mt5", "mt5"), ("task3_mt5_fallback", "mt5_fallback")):
                submission.write(out.select("locale", next_item_title=column),
                                 submission.submission_path(args.out / method, 3, phase), 3, locales, None)
            log.info("task3_mt5 phase %d: %d rows", phase, out.height)
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    main()
