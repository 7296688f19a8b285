"""Training loop: one code path for CUDA (bf16 autocast) and CPU, checkpoint + resume.

The recipe (each part a knob of ``deep.models.<name>``):
- batches hold sessions of one locale, and the sampled negatives come from that locale's items seen
  in training, drawn with probability count ** ``neg_alpha`` (the official GRU4Rec's extra shared
  negatives); the logits are corrected by the log of each candidate's expected count in the sample
  (``logq``, sampled softmax as in Jean et al. 2015 and Yi et al. 2019), and a candidate that is the
  row's own target elsewhere in the sample is masked (an accidental hit);
- AdamW with linear warm-up and gradient clipping for the dense weights, SparseAdam with its own
  learning rate for the item rows;
- ``valid_sessions`` sessions lose their last item to a held-out set scored (MRR@100 in their
  locale, as retrieval asks) after every epoch; training stops after ``patience`` epochs without a
  better score and the best epoch's weights are the model;
- retrieval indexes only items seen ``min_count`` times: the others' rows are their random init.

Every epoch draws its shuffling, negatives and dropout from RNGs seeded by (seed, epoch), and the
optimizer state is checkpointed, so training 3 epochs, stopping, and resuming to 5 gives the same
weights as 5 epochs in one go; on CPU two runs with the same seed and thread count are identical.

On CUDA they are not, and this code does not force it: the sparse embedding gradients are summed
with atomic adds (index_add / embedding_bag backward) in a run-dependent order, cuBLAS may pick
other GEMM kernels, and bf16 autocast rounds those sums differently, so weights differ in the last
bits and a few near-tied candidates can swap ranks. The submissions stay valid; byte-identical
reruns are promised on CPU only (tests/test_pipeline_repro.py checks them).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from tqdm import tqdm

from candidates.deep.config import ModelConfig
from candidates.deep.data import (
    PAD,
    Encoded,
    history_fingerprint,
    item_locales,
    product_rows,
    session_event_counts,
    training_sequences,
)
from candidates.deep.models import SessionEncoder, build
from candidates.deep.tower import item_attributes
from candidates.deep.warmstart import item_vectors as warm_item_vectors
from core.config import as_dict
from core.device import pick_device
from core.io import atomic_path

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """A trained encoder and what it needs to score: the locale vocabulary, its checkpoint meta."""

    model: SessionEncoder
    locales: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> ModelConfig:
        return self.model.cfg


def vocabulary(items: pl.DataFrame) -> tuple[int, list[str]]:
    """(number of item indices, sorted locale names) of the prepared item table."""
    return int(items["item"].max()) + 1, sorted(items["locale"].unique().to_list())


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 10_007 + epoch


# The modules whose code shapes the weights: a checkpoint made by other code is never resumed or served.
CODE_FILES = ("config.py", "data.py", "models.py", "train.py", "warmstart.py", "tower.py")


def code_fingerprint() -> str:
    """sha256 (16 hex digits) of the encoder modules' source (:data:`CODE_FILES`)."""
    digest = hashlib.sha256()
    for name in CODE_FILES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


def repeated_targets(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the target at step t is one of the items at steps 0..t of its row.

    Such steps (re-views, about a quarter of all steps) are never asked of the model: the next item
    of a test session is new to it and retrieval drops the session's own items. Training on them
    would spend capacity on pointing each session vector back at the items already seen.
    """
    steps = inputs.shape[1]
    causal = torch.ones(steps, steps, dtype=torch.bool, device=inputs.device).tril()
    return ((targets[:, :, None] == inputs[:, None, :]) & causal).any(-1)


@dataclass(frozen=True)
class Sampler:
    """Per locale: the items seen in training, the draw probabilities of the negatives and the
    targets' own frequency (the in-batch candidates), on the training device."""

    items: list[torch.Tensor]  # locale -> item tokens seen in training
    negative_p: list[torch.Tensor]  # locale -> draw probability of each of those items
    log_expected: list[torch.Tensor]  # locale -> (n_items + 1,) log expected count of a token in a sample
    negatives: int

    @classmethod
    def build(cls, counts: np.ndarray, token_locale: np.ndarray, n_locales: int, cfg: ModelConfig,
              positives: int, device: torch.device) -> Sampler:
        """``counts``: (n_items + 1,) training occurrences per token; ``positives``: the in-batch targets
        of a typical batch (its expected count of a token is positives x the token's frequency)."""
        items, probs, logs = [], [], []
        for loc in range(n_locales):
            seen = np.flatnonzero((token_locale == loc) & (counts > 0))
            weight = counts[seen].astype(np.float64) ** cfg.neg_alpha
            p_neg = weight / max(weight.sum(), 1e-12)
            p_pos = counts[seen] / max(counts[seen].sum(), 1)
            expected = np.full(len(counts), 1e-12)
            expected[seen] = positives * p_pos + cfg.negatives * p_neg
            items.append(torch.from_numpy(seen).to(device))
            probs.append(torch.from_numpy(p_neg).float().to(device))
            logs.append(torch.from_numpy(np.log(expected)).float().to(device))
        return cls(items, probs, logs, cfg.negatives)

    def draw(self, loc: int, gen: torch.Generator) -> torch.Tensor:
        items = self.items[loc]
        if not len(items) or not self.negatives:
            return items[:0]
        return items[torch.multinomial(self.negative_p[loc], self.negatives, replacement=True, generator=gen)]


def _batch_loss(
    model: SessionEncoder,
    tokens: torch.Tensor,
    locale: torch.Tensor,
    loc: int,
    cfg: ModelConfig,
    sampler: Sampler,
    gen: torch.Generator,
) -> torch.Tensor:
    """Sampled softmax of every (valid) step over the batch's own targets plus the locale's negatives.

    Every candidate is one draw (in-batch targets and negatives alike, duplicates kept), so ``logq``
    subtracts the log of the expected count of the item among all draws; a column holding the row's
    own target other than its own is masked (accidental hit). On CUDA every step of the batch is
    scored and the invalid ones weighted 0 (no data-dependent shapes, no host sync); on CPU only the
    valid steps are (less work): the loss is the same.
    """
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    hidden = model(inputs, locale)
    valid = (targets != PAD) & (inputs != PAD)
    if cfg.skip_repeats:
        valid &= ~repeated_targets(inputs, targets)
    if hidden.is_cuda:
        h, target, weight = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1), valid.reshape(-1)
    else:
        h, target = hidden[valid], targets[valid]
        weight = torch.ones(len(target), dtype=torch.bool, device=h.device)
    negatives = sampler.draw(loc, gen)
    candidates = torch.cat([target, negatives])
    logits = model.score(h, candidates).float()
    if cfg.logq:
        logits = logits - sampler.log_expected[loc][candidates][None, :]
    own = torch.arange(len(target), device=h.device)
    hit = candidates[None, :] == target[:, None]
    hit[own, own] = False
    # a column of an invalid step (a pad, a repeat) is no candidate
    unused = torch.cat([~weight, torch.zeros(len(negatives), dtype=torch.bool, device=h.device)])
    logits = logits.masked_fill(hit | unused[None, :], float("-inf"))
    loss = F.cross_entropy(logits, own, reduction="none")
    weight = weight.float()
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)


# Session passes per item below which an encoder learns little. GRU4Rec alone on the valid split of scale 0.1
# scored MRR@100 0.0087 / 0.057 / 0.151 / 0.270 at 1.3 / 2.6 / 5.2 / 13 passes per item of its history
# (benchmarks/results/deep_budget.json); scale 1.0 with the default sample budget is the first point.
THIN_PASSES_PER_ITEM = 5.0


def epoch_sessions(n_sessions: int, n_items: int, cfg: ModelConfig) -> int:
    """Sessions one pretraining epoch trains on under the budget ``passes_per_item`` (0: all)."""
    if not cfg.passes_per_item:
        return n_sessions
    return max(1, min(n_sessions, math.ceil(cfg.passes_per_item * n_items / max(cfg.epochs, 1))))


def passes_per_item(n_sessions: int, n_items: int, cfg: ModelConfig) -> float:
    """Session passes that ``cfg``'s pretraining epochs plan per item of the history, under the budget
    (fine-tuning epochs, on a subset, and early stopping or a binding time budget are left out)."""
    return epoch_sessions(n_sessions, n_items, cfg) * cfg.epochs / max(n_items, 1)


# knobs a checkpoint may be resumed under with another value (finetune_locales: only before fine-tuning
# began, so a pretrained checkpoint is fine-tuned on any locales)
RESUMABLE = ("epochs", "max_train_seconds", "finetune_epochs", "finetune_locales", "patience")


def _checkpoint_key(cfg: ModelConfig, seed: int, n_items: int, locales: list[str], fingerprint: str) -> dict:
    """What must match for a checkpoint to be resumed: all knobs but the epoch count and the budgets, the
    seed, the vocabulary, the history and the code of the encoder modules."""
    knobs = {k: v for k, v in as_dict(cfg).items() if k not in RESUMABLE}
    return {"cfg": knobs, "seed": seed, "n_items": n_items, "locales": locales, "fingerprint": fingerprint,
            "code": code_fingerprint()}


class Optimizer:
    """AdamW (linear warm-up, gradient clipping) for the dense weights, SparseAdam (lazy: only the rows
    a batch touched) with its own learning rate for the item table.

    ``weight_decay`` applies to the dense weights only; SparseAdam has none.
    """

    def __init__(self, model: SessionEncoder, cfg: ModelConfig) -> None:
        sparse = {id(p) for p in model.sparse_parameters()}
        self.dense = [p for p in model.parameters() if id(p) not in sparse]
        self.clip_norm = cfg.clip_norm
        self.parts = [
            torch.optim.AdamW(self.dense, lr=cfg.lr, weight_decay=cfg.weight_decay),
            torch.optim.SparseAdam(model.sparse_parameters(), lr=cfg.emb_lr),
        ]
        warmup = max(cfg.warmup_steps, 0)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.parts[0], lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )

    def zero_grad(self) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.dense, self.clip_norm)
        for part in self.parts:
            part.step()
        self.schedule.step()

    def state_dict(self) -> dict:
        return {"parts": [part.state_dict() for part in self.parts], "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for part, st in zip(self.parts, state["parts"], strict=True):
            part.load_state_dict(st)
        self.schedule.load_state_dict(state["schedule"])


def save_checkpoint(path: Path, model: SessionEncoder, optim: Optimizer, meta: dict,
                    best: dict | None = None) -> None:
    """The last epoch's weights and optimizer (to resume) and the best epoch's weights (to serve)."""
    with atomic_path(path) as tmp:
        torch.save({**meta, "model": model.state_dict(), "optim": optim.state_dict(),
                    "best_model": best if best is not None else model.state_dict()}, tmp)


def load(path: str | Path, device: torch.device | None = None) -> Trained:
    """A checkpoint written by :func:`train`, ready for inference: the best epoch's weights."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    # the key leaves out the RESUMABLE knobs: the epochs trained, and no budget (0: off) for inference
    cfg = ModelConfig(**{**ckpt["key"]["cfg"], "epochs": ckpt["epoch"], "max_train_seconds": 0.0,
                         "finetune_locales": [], "finetune_epochs": 0, "patience": 0})
    shared = ckpt["best_model"].get("item_row")  # share_products: the token -> row map
    model = build(cfg, ckpt["key"]["n_items"], len(ckpt["key"]["locales"]), shared)
    model.load_state_dict(ckpt["best_model"])
    model.to(device or pick_device()).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optim", "best_model")}
    return Trained(model, list(ckpt["key"]["locales"]), meta)


@dataclass(frozen=True)
class Holdout:
    """Sessions whose last item is held out of training: ``tokens`` (n, max_len) the prefixes,
    ``locale`` (n,), ``target`` (n,) tokens. Empty when ``valid_sessions`` is 0."""

    tokens: torch.Tensor
    locale: torch.Tensor
    target: torch.Tensor


def split_holdout(data: Encoded, n: int, seed: int) -> tuple[np.ndarray, Holdout]:
    """(training windows with the held-out last items removed, the held-out set).

    The held-out sessions are drawn (seeded) among those whose last item is not in their prefix, the
    rule of a test target; they stay in training without that item.
    """
    tokens = data.tokens
    last = tokens[:, -1]
    fresh = ~(tokens[:, :-1] == last[:, None]).any(1)
    pool = np.flatnonzero(fresh)
    pick = np.sort(np.random.default_rng(seed).permutation(pool)[: min(n, len(pool))]) if n else pool[:0]
    held = Holdout(torch.from_numpy(tokens[pick, :-1].copy()), torch.from_numpy(data.locale[pick].copy()),
                   torch.from_numpy(last[pick].copy()))
    train_tokens = tokens.copy()
    train_tokens[pick, 1:] = tokens[pick, :-1]  # shift right: the last item dropped, one more pad
    train_tokens[pick, 0] = PAD
    return train_tokens, held


def holdout_mrr(model: SessionEncoder, held: Holdout, indexable: list[torch.Tensor], k: int = 100,
                cells: int = 1 << 25) -> float:
    """MRR@k of the held-out targets among their locale's indexable items (sorted tokens), the
    prefix's items excluded (as retrieval and the test rule do); a target outside the index scores 0.
    Queries go in batches of about ``cells`` scores."""
    if not len(held.target):
        return float("nan")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for loc, items in enumerate(indexable):
            rows = torch.nonzero(held.locale == loc).flatten()
            batch_size = max(1, cells // max(len(items), 1))
            for start in range(0, len(rows) if len(items) else 0, batch_size):
                part = rows[start:start + batch_size]
                tok = trim(held.tokens[part]).to(device)
                target = held.target[part].to(device)
                scores = model.score(model.session_vectors(tok, held.locale[part].to(device)).float(),
                                     items).float()
                col = torch.searchsorted(items, tok.contiguous()).clamp(max=len(items) - 1)
                seen = (items[col] == tok) & (tok != PAD)
                row = torch.arange(len(tok), device=device)[:, None].expand_as(tok)
                scores[row[seen], col[seen]] = float("-inf")
                tcol = torch.searchsorted(items, target).clamp(max=len(items) - 1)
                indexed = items[tcol] == target
                rank = 1 + (scores > scores.gather(1, tcol[:, None])).sum(1)
                hit = indexed & (rank <= k)
                total += torch.where(hit, 1.0 / rank.double(), 0.0).sum()
    model.train(was_training)
    return float(total) / len(held.target)


def train(
    history: pl.DataFrame,
    items: pl.DataFrame,
    cfg: ModelConfig,
    seed: int,
    *,
    device: torch.device | None = None,
    amp: bool = True,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> Trained:
    """Fit one encoder on a history frame (session, position, item), resuming from ``checkpoint``.

    The checkpoint is written after every epoch; an existing one is resumed when it was made with
    the same knobs (epochs and budgets aside), seed, item/locale vocabulary, history and encoder code,
    else training restarts.
    """
    device = device or pick_device()
    n_items, locales = vocabulary(items)
    fingerprint = history_fingerprint(history)
    key = _checkpoint_key(cfg, seed, n_items, locales, fingerprint)
    data = training_sequences(history, items, cfg.max_len, locales)
    train_tokens, held = split_holdout(data, cfg.valid_sessions, seed)
    counts = np.bincount(train_tokens.ravel(), minlength=n_items + 1)
    counts[PAD] = 0
    token_locale = np.concatenate([[-1], item_locales(items, n_items, locales)])
    attrs = item_attributes(items, n_items, locales, cfg.meta_buckets) if cfg.item_tower != "id" else None
    # an item's vector is its learned row (seen often enough) or, with the metadata tower, its attributes
    retrievable = counts >= cfg.min_count
    if attrs is not None:
        retrievable |= attrs["has"]
    indexable_tokens = np.flatnonzero(retrievable & (np.arange(len(counts)) != PAD))
    indexable = [torch.from_numpy(indexable_tokens[token_locale[indexable_tokens] == loc]).to(device)
                 for loc in range(len(locales))]

    torch.manual_seed(seed)
    item_row = torch.from_numpy(product_rows(items, n_items)) if cfg.share_products else None
    model = build(cfg, n_items, len(locales), item_row).to(device)
    if cfg.init == "ppmi_svd":
        warm, covered = warm_item_vectors(train_tokens, n_items + 1, cfg.dim, seed)
        with torch.no_grad():
            rows = torch.from_numpy(covered).to(device)
            model.item_emb.weight[rows] = torch.from_numpy(warm[covered]).to(device)
        log.info("%s: %d item rows warm-started from the history's co-visitation (PPMI + SVD)", cfg.arch,
                 int(covered.sum()))
    if model.tower is not None:
        model.tower.set_attributes(attrs)
        with torch.no_grad():  # an item no training session shows keeps no random id row: only its attributes
            model.item_emb.weight[torch.from_numpy(counts == 0).to(device)] = 0.0
        if cfg.item_tower == "meta_id":
            model.set_id_rows(torch.from_numpy(counts >= cfg.tower_id_min_count).to(device))
            alone = int((attrs["has"] & (counts < cfg.tower_id_min_count))[1:].sum())
            log.info("%s: meta_id: %d items with attributes are their attributes alone (training shows them "
                     "fewer than tower_id_min_count %d times)", cfg.arch, alone, cfg.tower_id_min_count)
        has = int(attrs["has"][1:].sum())
        log.log(
            logging.WARNING if has < n_items else logging.INFO,
            "%s: metadata tower (%s): %d of %d items (%.1f%%) have a title word, brand, colour or price; the "
            "other %d (%.1f%%) fall back to their id row%s",
            cfg.arch, cfg.item_tower, has, n_items, 100 * has / max(n_items, 1), n_items - has,
            100 * (n_items - has) / max(n_items, 1),
            " (every item: the attributes are placeholders, the model is id-based)" if not has else "",
        )
    optim = Optimizer(model, cfg)
    best: dict | None = None
    # what it is trained on, per session: lets a split whose history extends this one reuse the model
    trained_on = session_event_counts(history)
    meta: dict[str, Any] = {
        "key": key,
        "trained_on": trained_on,
        "epoch": 0,
        "losses": [],
        "seconds": [],
        "valid_mrr": [],
        "best_epoch": 0,
        "indexable": (indexable_tokens - 1).astype(np.int32),  # item indices retrieval may return
        "finetune_locales": cfg.finetune_locales,  # of the fine-tuning epochs (those past cfg.epochs)
    }
    path = Path(checkpoint) if checkpoint else None
    if path and path.exists():
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        # a checkpoint past its pretraining epochs was fine-tuned on its own locales
        fine_tuned = ckpt.get("epoch", 0) > cfg.epochs
        tuned_on = ckpt.get("finetune_locales", []) if fine_tuned else cfg.finetune_locales
        if (
            ckpt.get("key") == key
            and ckpt["epoch"] <= cfg.total_epochs
            and tuned_on == cfg.finetune_locales
        ):
            model.load_state_dict(ckpt["model"])
            optim.load_state_dict(ckpt["optim"])
            best = ckpt["best_model"]
            meta = {k: v for k, v in ckpt.items() if k not in ("model", "optim", "best_model")}
            meta["trained_on"] = trained_on  # the key matched: same history
            meta["finetune_locales"] = cfg.finetune_locales
            log.info("%s: resuming %s at epoch %d/%d", cfg.arch, path, meta["epoch"], cfg.epochs)
        else:
            log.warning(
                "%s: checkpoint %s was made with other knobs, data, code or more epochs; retraining",
                cfg.arch, path,
            )

    history_items = int((counts > 0).sum())
    per_epoch = epoch_sessions(len(train_tokens), history_items, cfg)
    log.info(
        "%s: %d training sessions (%d an epoch), %d held out, %d item indices (%d indexable), %d locales, "
        "%d parameters, device %s",
        cfg.arch, len(train_tokens), per_epoch, len(held.target), n_items, len(indexable_tokens),
        len(locales), sum(p.numel() for p in model.parameters()), device,
    )
    meta["passes_per_item"] = passes_per_item(len(train_tokens), history_items, cfg)
    if meta["passes_per_item"] < THIN_PASSES_PER_ITEM:
        log.warning(
            "%s: %.1f session passes per item of the history planned (%d sessions an epoch x %d epochs over "
            "%d items); under %g the encoder learns little (benchmarks/results/deep_budget.json): raise its "
            "passes_per_item or epochs",
            cfg.arch, meta["passes_per_item"], per_epoch, cfg.epochs, history_items, THIN_PASSES_PER_ITEM,
        )
    tokens = torch.from_numpy(train_tokens)
    locale = torch.from_numpy(data.locale)
    tuned = torch.from_numpy(np.isin(np.asarray(locales)[data.locale], cfg.finetune_locales))
    if cfg.finetune_epochs and not bool(tuned.any()):
        raise ValueError(f"{cfg.arch}: no training session of finetune_locales {cfg.finetune_locales}")
    positives = cfg.batch_size * max(float((tokens != PAD).sum(1).float().mean()) - 1, 1.0)
    sampler = Sampler.build(counts, token_locale, len(locales), cfg, round(positives), device)
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(_epoch_seed(seed, -1)))
    use_amp = amp and device.type == "cuda"
    meta.setdefault("steps", [])
    if meta.get("stopped_by") != "early_stop":
        meta["stopped_by"] = "epochs"
    for epoch in range(meta["epoch"], cfg.total_epochs):
        if meta["stopped_by"] == "early_stop":
            break
        if over_time_budget(cfg, meta["seconds"]):
            meta["stopped_by"] = "max_train_seconds"
            log.warning(
                "%s: time budget max_train_seconds=%g reached after %d of %d epochs (%.0fs); this run is "
                "not reproducible",
                cfg.arch, cfg.max_train_seconds, epoch, cfg.total_epochs, sum(meta["seconds"]),
            )
            break
        if epoch < cfg.epochs:  # the epoch's slice of one permutation: epochs cover every session in turn
            rows = order[(torch.arange(per_epoch) + epoch * per_epoch) % len(order)].sort().values
        else:  # fine-tuning: cfg.finetune_locales only
            rows = torch.nonzero(tuned).flatten()
        meta = _run_epoch(
            model, optim, tokens[rows], locale[rows], cfg, sampler, seed, epoch, device, use_amp, progress,
            meta,
        )
        mrr = holdout_mrr(model, held, indexable)
        meta["valid_mrr"] = [*meta["valid_mrr"], mrr]
        if not len(held.target) or best is None or mrr > max(meta["valid_mrr"][:-1], default=-1.0):
            best, meta["best_epoch"] = copy.deepcopy(model.state_dict()), epoch + 1
        if len(held.target):
            log.info("%s epoch %d: held-out MRR@100 %.4f (best %.4f at epoch %d)", cfg.arch, epoch + 1, mrr,
                     max(meta["valid_mrr"]), meta["best_epoch"])
        if cfg.patience and len(held.target) and epoch + 1 - meta["best_epoch"] >= cfg.patience:
            meta["stopped_by"] = "early_stop"
        if path:
            save_checkpoint(path, model, optim, meta, best)
    if path and meta["stopped_by"] == "max_train_seconds":
        save_checkpoint(path, model, optim, meta, best)
    log.info(
        "%s: trained %d epochs, %d steps, %d session passes (stopped by %s), best epoch %d",
        cfg.arch, meta["epoch"], sum(meta["steps"]), sum(meta.get("sessions", [])), meta["stopped_by"],
        meta["best_epoch"],
    )
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return Trained(model, locales, meta)


def over_time_budget(cfg: ModelConfig, seconds: list[float]) -> bool:
    """True when one more epoch (as long as the slowest so far) would end past ``max_train_seconds``."""
    if not cfg.max_train_seconds or not seconds:
        return False
    return sum(seconds) + max(seconds) > cfg.max_train_seconds


def trim(tokens: torch.Tensor) -> torch.Tensor:
    """Drop the leading columns that are padding in every row (exact for both encoders)."""
    longest = int((tokens != PAD).sum(1).max()) if len(tokens) else 0
    return tokens[:, tokens.shape[1] - max(longest, 1) :]


def length_batches(
    tokens: torch.Tensor, batch_size: int, gen: torch.Generator, pool: int = 64
) -> list[torch.Tensor]:
    """Shuffled batches of sessions of similar length, so that :func:`trim` cuts most padding.

    Sessions are shuffled, sorted by length within pools of ``pool`` batches, cut into batches,
    and the batches shuffled again: still a random order, but a batch rarely mixes a 2-item
    session with a 20-item one (median session length is 4, max_len 20).
    """
    order = torch.randperm(len(tokens), generator=gen)
    lengths = (tokens != PAD).sum(1)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start : start + batch_size * pool]
        chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
        batches += list(torch.split(chunk, batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def locale_batches(
    tokens: torch.Tensor, locale: torch.Tensor, batch_size: int, gen: torch.Generator
) -> list[tuple[int, torch.Tensor]]:
    """(locale, row indices) batches: :func:`length_batches` within each locale, all in a shuffled order."""
    batches = []
    for loc in torch.unique(locale).tolist():
        rows = torch.nonzero(locale == loc).flatten()
        batches += [(loc, rows[b]) for b in length_batches(tokens[rows], batch_size, gen)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _run_epoch(
    model: SessionEncoder,
    optim: Optimizer,
    tokens: torch.Tensor,
    locale: torch.Tensor,
    cfg: ModelConfig,
    sampler: Sampler,
    seed: int,
    epoch: int,
    device: torch.device,
    use_amp: bool,
    progress: bool,
    meta: dict[str, Any],
) -> dict[str, Any]:
    model.train()
    torch.manual_seed(_epoch_seed(seed, epoch))  # dropout
    gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))  # order
    neg_gen = torch.Generator(device=device).manual_seed(_epoch_seed(seed, epoch))  # negatives, on the device
    batches = locale_batches(tokens, locale, cfg.batch_size, gen)
    tokens, locale = tokens.to(device), locale.to(device)  # device-resident: a batch is a gather
    total = torch.zeros((), device=device)
    start = time.perf_counter()
    for loc, idx in tqdm(
        batches, desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.total_epochs}", disable=not progress, mininterval=5
    ):
        idx = idx.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = _batch_loss(model, trim(tokens[idx]), locale[idx], loc, cfg, sampler, neg_gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
        total += loss.detach()
    mean = float(total) / max(len(batches), 1)  # the epoch's one host sync
    seconds = time.perf_counter() - start
    log.info(
        "%s epoch %d/%d%s: loss %.4f, %.1fs, %.0f sessions/s",
        cfg.arch,
        epoch + 1,
        cfg.total_epochs,
        f" (fine-tuning on {cfg.finetune_locales})" if epoch >= cfg.epochs else "",
        mean,
        seconds,
        len(tokens) / max(seconds, 1e-9),
    )
    return {
        **meta,
        "epoch": epoch + 1,
        "losses": [*meta["losses"], mean],
        "seconds": [*meta["seconds"], seconds],
        "steps": [*meta.get("steps", []), len(batches)],
        "sessions": [*meta.get("sessions", []), len(tokens)],
    }


def session_vectors(trained: Trained, data: Encoded, batch_size: int = 4096) -> np.ndarray:
    """(n, dim + 1) float32 query vectors ``[h, 1]`` for faiss (see models.SessionEncoder)."""
    model = trained.model
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(data.tokens), batch_size):
            tok = trim(torch.from_numpy(data.tokens[start : start + batch_size])).to(device)
            loc = torch.from_numpy(data.locale[start : start + batch_size]).to(device)
            h = model.session_vectors(tok, loc).float()
            out.append(torch.cat([h, torch.ones(len(h), 1, device=device)], dim=1).cpu().numpy())
    if not out:
        return np.zeros((0, model.cfg.dim + 1), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


def item_vectors(trained: Trained) -> np.ndarray:
    """(n_items, dim + 1) float32 ``[E, b]``; row ``i`` is item index ``i`` (the PAD row dropped)."""
    with torch.inference_mode():
        return trained.model.item_table()[1:].float().cpu().numpy()
