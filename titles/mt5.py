"""Task 3 seq2seq generator: transformers ``MT5ForConditionalGeneration``.

Input: the session's most recent distinct titles, most recent FIRST, joined by `` | `` (truncated
from the right, so the last title always survives and always sits at the same place: the next
title is usually a variant of it, and a small model learns to copy from a fixed position much
sooner); output: the next title. With ``pretrained_dir`` (a local
copy of e.g. google/mt5-small: config, weights, tokenizer) the model is fine-tuned; without it a
small MT5 config is trained from scratch with a SentencePiece unigram tokenizer trained on the
catalogue titles and wrapped in transformers' ``T5Tokenizer``. Everything loads with
``local_files_only=True``: nothing is ever downloaded.

Training is bounded by ``max_steps`` (the binding limit at default scale, so a rerun is identical)
and by ``max_train_seconds`` as a safety cap (when it stops training the run is no longer
reproducible; a warning says so). CUDA is used when present, else CPU with ``threads`` threads.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import sentencepiece as spm
import torch
from tqdm import tqdm
from transformers import AutoTokenizer, MT5Config, MT5ForConditionalGeneration, T5Tokenizer

from core.device import pick_device

log = logging.getLogger(__name__)

SEP = " | "


@dataclass(frozen=True)
class Mt5Config:
    pretrained_dir: str            # local MT5 checkpoint + tokenizer to fine-tune; "" = train from scratch
    vocab_size: int                # scratch: SentencePiece vocabulary
    tokenizer_titles: int            # scratch: titles sampled to train the tokenizer
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    dropout: float
    n_context: int                 # most recent distinct session titles in the input (last one first)
    max_source_len: int            # tokens
    max_target_len: int            # tokens, also the generation limit
    max_train_pairs: int           # (context, next title) pairs sampled from the history
    batch_size: int
    learning_rate: float
    warmup_steps: int
    max_steps: int
    max_train_seconds: float
    label_smoothing: float
    num_beams: int                 # 1 = greedy
    length_penalty: float
    no_repeat_ngram_size: int
    # per-locale generation floor: this quantile of the training targets' token length (0 = off)
    min_len_quantile: float
    # per-locale generation cap: this quantile (1 = the longest), never above max_target_len
    max_len_quantile: float
    # share of training pairs whose target is replaced by the source's last title
    copy_share: float
    # mt5+fallback: a generation shorter than this many words is replaced by the last title
    fallback_min_tokens: int
    gen_batch_size: int
    max_valid_sessions: int        # valid sessions generated for the metric (sampled)
    threads: int                   # CPU threads (ignored on CUDA)


# ------------------------------------------------------------------------------------------ data

def _distinct_runs(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` (session, position, title, ...) sorted, without consecutive repeats of a title."""
    prev = pl.col("title").shift(1).over("session")
    return events.sort("session", "position").filter(prev.is_null() | (pl.col("title") != prev))


def contexts(long: pl.DataFrame, titles: pl.DataFrame, n_context: int) -> pl.DataFrame:
    """session, source: the last ``n_context`` distinct titles of each session, most recent first,
    joined by SEP.

    Args:
        long: session, position, item (the events to summarise; sessions without a titled event get no row).
        titles: item, title.
    Consecutive repeats of a title are collapsed (a re-view adds no information).
    """
    ordered = _distinct_runs(long.join(titles.select("item", "title"), on="item"))
    return (ordered.group_by("session", maintain_order=True)
            .agg(source=pl.col("title").tail(n_context).reverse().str.join(SEP)))


def training_pairs(history: pl.DataFrame, titles: pl.DataFrame, cfg: Mt5Config, seed: int) -> pl.DataFrame:
    """source, target, locale: (context, next title) pairs of the history sessions, sampled to
    max_train_pairs.

    Args:
        history: session, position, item (fit sessions carry their target as the last event, so
            the last pair of each is exactly a next-item example).
        titles: item, title, and optionally locale (else the pairs' locale is null).
    Every event with a predecessor is a target when its title is new to the session (a real next
    item never repeats one of the session's items); its context is built as in ``contexts``.
    A seeded ``copy_share`` of the pairs get the last title itself as target: a small model from
    scratch only learns to copy from the source through attention after many steps on the noisy
    variant pairs, while exact copies teach that circuit quickly (and copying is the strong
    baseline the variant pairs then refine).
    """
    cols = ["item", "title"] + (["locale"] if "locale" in titles.columns else [])
    ev = _distinct_runs(history.join(titles.select(cols), on="item"))
    if "locale" not in ev.columns:
        ev = ev.with_columns(locale=pl.lit(None, pl.String))
    ctx = pl.concat_list([pl.col("title").shift(k).over("session") for k in range(1, cfg.n_context + 1)])
    first_seen = pl.col("title").is_first_distinct().over("session")
    pairs = (ev.with_columns(ctx=ctx, first=first_seen)
             .filter(pl.col("first") & pl.col("title").shift(1).over("session").is_not_null())
             .select(source=pl.col("ctx").list.drop_nulls().list.join(SEP), target="title", locale="locale",
                     last=pl.col("ctx").list.first()))
    if pairs.height > cfg.max_train_pairs:
        pairs = pairs.sample(cfg.max_train_pairs, seed=seed)
    copy = pl.Series(np.random.default_rng(seed).random(pairs.height) < cfg.copy_share)
    return pairs.select("source", target=pl.when(copy).then("last").otherwise("target"), locale="locale")


def length_limits(pairs: pl.DataFrame, tok, cfg: Mt5Config) -> dict[str | None, tuple[int, int]]:
    """locale -> (min_new_tokens, max_new_tokens) for generation, from the targets' token lengths.

    Titles have a locale-typical length (JP titles are shorter in tokens than DE ones); a beam that
    stops early pays BLEU's brevity penalty, one that rambles pays in precision.
    """
    lens = pairs.select("locale", n=pl.Series([len(ids) for ids in encode(tok, pairs["target"].to_list(),
                                                                           cfg.max_target_len)]))
    stats = lens.group_by("locale").agg(lo=pl.col("n").quantile(cfg.min_len_quantile, "lower"),
                                        hi=pl.col("n").quantile(cfg.max_len_quantile, "higher"))
    # The encoded target ends with EOS: a floor of n tokens before EOS is n - 1 title tokens.
    return {row["locale"]: (max(int(row["lo"]) - 1, 0) if cfg.min_len_quantile > 0 else 0,
                            min(int(row["hi"]), cfg.max_target_len))
            for row in stats.iter_rows(named=True)}


def encode(tok, texts: list[str], max_len: int) -> list[list[int]]:
    """Token ids (EOS included) of ``texts``, truncated to ``max_len``."""
    return tok(texts, max_length=max_len, truncation=True)["input_ids"]


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


# ------------------------------------------------------------------------------------- tokenizer

def train_tokenizer(titles: list[str], vocab_size: int, out_dir: Path, seed: int) -> T5Tokenizer:
    """A SentencePiece unigram model on ``titles`` wrapped as a T5Tokenizer (pad 0, eos 1, unk 2)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "spm"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(titles), model_prefix=str(prefix), vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=0.9995,
        normalization_rule_name="identity",
        user_defined_symbols=["|"], hard_vocab_limit=False, num_threads=1,
        minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    # Sources hold the most recent title first, so truncation cuts the oldest titles at the end.
    return T5Tokenizer(vocab=vocab, extra_ids=0, truncation_side="right")


# ------------------------------------------------------------------------------------------ model

def build(cfg: Mt5Config, titles: list[str], work_dir: Path,
          seed: int) -> tuple[MT5ForConditionalGeneration, object]:
    """The model and tokenizer: loaded from ``pretrained_dir`` or built small from ``cfg``."""
    torch.manual_seed(seed)
    if cfg.pretrained_dir:
        tok = AutoTokenizer.from_pretrained(cfg.pretrained_dir, local_files_only=True)
        tok.truncation_side = "right"
        model = MT5ForConditionalGeneration.from_pretrained(cfg.pretrained_dir, local_files_only=True)
        return model, tok
    rng = np.random.default_rng(seed)
    sample = titles if len(titles) <= cfg.tokenizer_titles else list(
        np.asarray(titles, dtype=object)[rng.choice(len(titles), cfg.tokenizer_titles, replace=False)])
    tok = train_tokenizer(sample, cfg.vocab_size, work_dir, seed)
    mcfg = MT5Config(vocab_size=len(tok), d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
                     num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers,
                     num_heads=cfg.num_heads,
                     dropout_rate=cfg.dropout, feed_forward_proj="gated-gelu", tie_word_embeddings=True,
                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                     decoder_start_token_id=tok.pad_token_id)
    model = MT5ForConditionalGeneration(mcfg)
    # The shared embedding is initialised with std 1, which with tied output weights gives logits of
    # std sqrt(d_model): a near one-hot random start (cross-entropy ~40) that a short CPU run never
    # recovers from. std d_model**-0.5 starts the logits at unit scale.
    with torch.no_grad():
        model.shared.weight.normal_(0.0, cfg.d_model ** -0.5)
    return model, tok


def train(model: MT5ForConditionalGeneration, tok, pairs: pl.DataFrame, cfg: Mt5Config, seed: int) -> dict:
    """Teacher-forced, label-smoothed cross-entropy on (source, target) pairs; returns training statistics."""
    dev = pick_device()
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1))
        * max(0.05, 0.5 * (1 + math.cos(math.pi * min(s, cfg.max_steps) / cfg.max_steps))))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    # Tokenised once: the per-step tokenizer call cost as much as a small model's step.
    sources = encode(tok, pairs["source"].to_list(), cfg.max_source_len)
    targets = encode(tok, pairs["target"].to_list(), cfg.max_target_len)
    start, step, losses, stopped_by_time = time.perf_counter(), 0, [], False
    order = np.array([], dtype=np.int64)
    with tqdm(total=cfg.max_steps, desc="mt5 train", mininterval=10) as bar:
        while step < cfg.max_steps:
            if len(order) < cfg.batch_size:
                order = np.concatenate([order, rng.permutation(len(sources))])
            idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
            ids = _pad([sources[i] for i in idx], tok.pad_token_id).to(dev)
            lab = _pad([targets[i] for i in idx], -100).to(dev)
            # decoder inputs, not labels: with labels the model would also compute an unsmoothed loss
            # over the whole vocabulary that nothing uses (the same logits either way)
            logits = model(input_ids=ids, attention_mask=(ids != tok.pad_token_id).long(),
                           decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=lab)).logits
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), lab.view(-1),
                                                     ignore_index=-100, label_smoothing=cfg.label_smoothing)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 100 == 0:
                log.info("step %d loss %.3f", step, float(np.mean(losses[-100:])))
            if time.perf_counter() - start > cfg.max_train_seconds:
                stopped_by_time = True
                log.warning("mt5: stopped by max_train_seconds after %d steps: the run is not reproducible",
                            step)
                break
    return {"steps": step, "final_loss": float(np.mean(losses[-100:])) if losses else None,
            "train_seconds": time.perf_counter() - start, "stopped_by_time": stopped_by_time,
            "pairs": pairs.height, "device": str(dev)}


@torch.no_grad()
def generate(model: MT5ForConditionalGeneration, tok, sources: list[str], cfg: Mt5Config,
             locales: list[str] | None = None, limits: dict | None = None) -> list[str]:
    """Titles for ``sources`` (in order): beam search (greedy when num_beams is 1).

    With ``locales`` and ``limits`` (``length_limits``) each locale is generated with its own
    min/max new tokens; otherwise at most ``max_target_len`` tokens.
    """
    dev = pick_device()
    model.to(dev).eval()
    keys = locales if locales is not None and limits else [""] * len(sources)  # "": no per-locale limits
    bounds = {key: (limits or {}).get(key, (0, cfg.max_target_len)) for key in set(keys)}
    # Decoding is deterministic: each distinct (locale, source) is generated once (sessions ending on
    # the same popular item share their last title). Batches never mix locales, so each batch has one
    # length window.
    distinct = sorted(set(zip(keys, sources, strict=True)))
    batches = [distinct[i:i + cfg.gen_batch_size] for i in range(0, len(distinct), cfg.gen_batch_size)]
    batches = [[p for p in b if p[0] == key] for b in batches for key in dict.fromkeys(p[0] for p in b)]
    text_of: dict[tuple[str, str], str] = {}
    for batch in tqdm(batches, desc="mt5 generate", mininterval=10):
        ids = _pad(encode(tok, [source for _, source in batch], cfg.max_source_len), tok.pad_token_id).to(dev)
        lo, hi = bounds[batch[0][0]]
        gen = model.generate(input_ids=ids, attention_mask=(ids != tok.pad_token_id).long(),
                             num_beams=cfg.num_beams, max_new_tokens=hi, min_new_tokens=lo,
                             length_penalty=cfg.length_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size,
                             early_stopping=True, do_sample=False)
        for pair, text in zip(batch, tok.batch_decode(gen, skip_special_tokens=True), strict=True):
            text_of[pair] = text.strip()
    log.info("mt5 generate: %d sources, %d distinct", len(sources), len(distinct))
    return [text_of[pair] for pair in zip(keys, sources, strict=True)]


def save(model: MT5ForConditionalGeneration, tok, out_dir: Path) -> None:
    """Model + tokenizer in the from_pretrained layout (so ``pretrained_dir`` can point at it)."""
    # Written beside out_dir then renamed, so an interrupted save never leaves a torn model.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
