"""Training loop: one code path for CUDA (bf16 autocast) and CPU, checkpoint + resume.

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

import logging
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
from candidates.deep.data import PAD, Encoded, history_fingerprint, session_event_counts, training_sequences
from candidates.deep.models import SessionEncoder, build
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


def repeated_targets(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the target at step t is one of the items at steps 0..t of its row.

    Such steps (re-views, about a quarter of all steps) are never asked of the model: the next item
    of a test session is new to it and retrieval drops the session's own items. Training on them
    would spend capacity on pointing each session vector back at the items already seen.
    """
    steps = inputs.shape[1]
    causal = torch.ones(steps, steps, dtype=torch.bool, device=inputs.device).tril()
    return ((targets[:, :, None] == inputs[:, None, :]) & causal).any(-1)


def _batch_loss(
    model: SessionEncoder,
    tokens: torch.Tensor,
    locale: torch.Tensor,
    cfg: ModelConfig,
    n_items: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """Sampled softmax over the batch's own targets plus ``cfg.negatives`` uniform items."""
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    hidden = model(inputs, locale)
    valid = (targets != PAD) & (inputs != PAD)
    if cfg.skip_repeats:
        valid &= ~repeated_targets(inputs, targets)
    h, target = hidden[valid], targets[valid]
    batch_items, positive = torch.unique(target, return_inverse=True)
    negatives = torch.randint(1, n_items + 1, (cfg.negatives,), generator=gen).to(tokens.device)
    logits = model.score(h, torch.cat([batch_items, negatives])).float()
    if cfg.logq:
        # Sampled-softmax correction: subtract the log of how often each candidate is drawn, so
        # popular items are not over-penalised for showing up as in-batch negatives all the time.
        counts = torch.bincount(positive, minlength=len(batch_items)).float()
        drawn = torch.cat(
            [counts, torch.full((cfg.negatives,), cfg.negatives / n_items, device=counts.device)]
        )
        logits = logits - drawn.log()
    # A uniform negative that is this row's own target is not a negative.
    hit = torch.cat(
        [
            torch.zeros(len(target), len(batch_items), dtype=torch.bool, device=h.device),
            negatives[None, :] == target[:, None],
        ],
        dim=1,
    )
    return F.cross_entropy(logits.masked_fill(hit, float("-inf")), positive)


# Session passes per item below which an encoder learns little. GRU4Rec alone on the valid split of scale 0.1
# scored MRR@100 0.0087 / 0.057 / 0.151 / 0.270 at 1.3 / 2.6 / 5.2 / 13 passes per item of its history
# (benchmarks/results/deep_budget.json); scale 1.0 with the default sample budget is the first point.
THIN_PASSES_PER_ITEM = 5.0


def epoch_sessions(n_sessions: int, cfg: ModelConfig) -> int:
    """Sessions one epoch trains on under the sample budget ``max_epoch_sessions`` (0: all)."""
    return min(n_sessions, cfg.max_epoch_sessions) if cfg.max_epoch_sessions else n_sessions


def passes_per_item(n_sessions: int, n_items: int, cfg: ModelConfig) -> float:
    """Session passes that ``cfg``'s pretraining epochs plan per item of the history, under the sample budget
    (fine-tuning epochs, on a subset, and a binding time budget are left out)."""
    return epoch_sessions(n_sessions, cfg) * cfg.epochs / max(n_items, 1)


# knobs a checkpoint may be resumed under with another value (finetune_locales: only before fine-tuning
# began, so a pretrained checkpoint is fine-tuned on any locales)
RESUMABLE = ("epochs", "max_train_seconds", "finetune_epochs", "finetune_locales")


def _checkpoint_key(cfg: ModelConfig, seed: int, n_items: int, locales: list[str], fingerprint: str) -> dict:
    """What must match for a checkpoint to be resumed: all but the epoch count and the time budget."""
    knobs = {k: v for k, v in as_dict(cfg).items() if k not in RESUMABLE}
    return {"cfg": knobs, "seed": seed, "n_items": n_items, "locales": locales, "fingerprint": fingerprint}


class Optimizer:
    """Adam for the dense weights, SparseAdam (lazy: only the rows a batch touched) for the item table.

    ``weight_decay`` applies to the dense weights only; SparseAdam has none.
    """

    def __init__(self, model: SessionEncoder, cfg: ModelConfig) -> None:
        sparse = {id(p) for p in model.sparse_parameters()}
        dense = [p for p in model.parameters() if id(p) not in sparse]
        self.parts = [
            torch.optim.Adam(dense, lr=cfg.lr, weight_decay=cfg.weight_decay),
            torch.optim.SparseAdam(model.sparse_parameters(), lr=cfg.lr),
        ]

    def zero_grad(self) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=True)

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def state_dict(self) -> list[dict]:
        return [part.state_dict() for part in self.parts]

    def load_state_dict(self, states: list[dict]) -> None:
        for part, st in zip(self.parts, states, strict=True):
            part.load_state_dict(st)


def save_checkpoint(path: Path, model: SessionEncoder, optim: Optimizer, meta: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({**meta, "model": model.state_dict(), "optim": optim.state_dict()}, tmp)


def load(path: str | Path, device: torch.device | None = None) -> Trained:
    """A checkpoint written by :func:`train`, ready for inference."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    # the key leaves out the RESUMABLE knobs: the epochs trained, and no time budget (0: off) for inference
    # (checkpoints older than fine-tuning lack its knobs: none was fine-tuned)
    cfg = ModelConfig(**{"finetune_locales": [], **ckpt["key"]["cfg"], "epochs": ckpt["epoch"],
                         "max_train_seconds": 0.0, "finetune_epochs": 0})
    model = build(cfg, ckpt["key"]["n_items"], len(ckpt["key"]["locales"]))
    model.load_state_dict(ckpt["model"])
    model.to(device or pick_device()).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optim")}
    return Trained(model, list(ckpt["key"]["locales"]), meta)


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
    the same knobs (epochs aside), seed, item/locale vocabulary and history, else training restarts.
    """
    device = device or pick_device()
    n_items, locales = vocabulary(items)
    fingerprint = history_fingerprint(history)
    key = _checkpoint_key(cfg, seed, n_items, locales, fingerprint)
    data = training_sequences(history, items, cfg.max_len, locales)

    torch.manual_seed(seed)
    model = build(cfg, n_items, len(locales)).to(device)
    optim = Optimizer(model, cfg)
    # what it is trained on, per session: lets a split whose history extends this one reuse the model
    trained_on = session_event_counts(history)
    meta: dict[str, Any] = {
        "key": key,
        "trained_on": trained_on,
        "epoch": 0,
        "losses": [],
        "seconds": [],
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
            meta = {k: v for k, v in ckpt.items() if k not in ("model", "optim")}
            meta["trained_on"] = trained_on  # the key matched: same history
            meta["finetune_locales"] = cfg.finetune_locales
            log.info("%s: resuming %s at epoch %d/%d", cfg.arch, path, meta["epoch"], cfg.epochs)
        else:
            log.warning(
                "%s: checkpoint %s was made with other knobs, data or more epochs; retraining", cfg.arch, path
            )

    log.info(
        "%s: %d training sessions, %d item indices, %d locales, %d parameters, device %s",
        cfg.arch,
        len(data.session),
        n_items,
        len(locales),
        sum(p.numel() for p in model.parameters()),
        device,
    )
    history_items = history["item"].n_unique()
    meta["passes_per_item"] = passes_per_item(len(data.session), history_items, cfg)
    if meta["passes_per_item"] < THIN_PASSES_PER_ITEM:
        log.warning(
            "%s: %.1f session passes per item of the history planned (%d sessions an epoch x %d epochs over "
            "%d items); under %g the encoder learns little (benchmarks/results/deep_budget.json): raise its "
            "max_epoch_sessions or epochs",
            cfg.arch,
            meta["passes_per_item"],
            epoch_sessions(len(data.session), cfg),
            cfg.epochs,
            history_items,
            THIN_PASSES_PER_ITEM,
        )
    tokens = torch.from_numpy(data.tokens)
    locale = torch.from_numpy(data.locale)
    tuned = torch.from_numpy(np.isin(np.asarray(locales)[data.locale], cfg.finetune_locales))
    if cfg.finetune_epochs and not bool(tuned.any()):
        raise ValueError(f"{cfg.arch}: no training session of finetune_locales {cfg.finetune_locales}")
    use_amp = amp and device.type == "cuda"
    meta.setdefault("steps", [])
    meta["stopped_by"] = "epochs"
    for epoch in range(meta["epoch"], cfg.total_epochs):
        if over_time_budget(cfg, meta["seconds"]):
            meta["stopped_by"] = "max_train_seconds"
            log.warning(
                "%s: time budget max_train_seconds=%g reached after %d of %d epochs (%.0fs); this run is "
                "not reproducible",
                cfg.arch,
                cfg.max_train_seconds,
                epoch,
                cfg.total_epochs,
                sum(meta["seconds"]),
            )
            if path:
                save_checkpoint(path, model, optim, meta)
            break
        rows = slice(None) if epoch < cfg.epochs else tuned  # fine-tuning: cfg.finetune_locales only
        meta = _run_epoch(
            model, optim, tokens[rows], locale[rows], cfg, n_items, seed, epoch, device, use_amp, progress,
            meta,
        )
        if path:
            save_checkpoint(path, model, optim, meta)
    log.info(
        "%s: trained %d epochs, %d steps, %d session passes (stopped by %s)",
        cfg.arch,
        meta["epoch"],
        sum(meta["steps"]),
        sum(meta.get("sessions", [])),
        meta["stopped_by"],
    )
    model.eval()
    return Trained(model, locales, meta)


def over_time_budget(cfg: ModelConfig, seconds: list[float]) -> bool:
    """True when one more epoch (as long as the slowest so far) would end past ``max_train_seconds``."""
    if not cfg.max_train_seconds or not seconds:
        return False
    return sum(seconds) + max(seconds) > cfg.max_train_seconds


def epoch_sample(n: int, cfg: ModelConfig, gen: torch.Generator) -> torch.Tensor | None:
    """Rows one epoch trains on under ``max_epoch_sessions`` (None: every row).

    Drawn from the epoch's own generator, so every epoch sees another sample and a rerun the same.
    """
    if not cfg.max_epoch_sessions or n <= cfg.max_epoch_sessions:
        return None
    return torch.randperm(n, generator=gen)[: cfg.max_epoch_sessions].sort().values


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


def _run_epoch(
    model: SessionEncoder,
    optim: Optimizer,
    tokens: torch.Tensor,
    locale: torch.Tensor,
    cfg: ModelConfig,
    n_items: int,
    seed: int,
    epoch: int,
    device: torch.device,
    use_amp: bool,
    progress: bool,
    meta: dict[str, Any],
) -> dict[str, Any]:
    model.train()
    torch.manual_seed(_epoch_seed(seed, epoch))  # dropout
    gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))  # sample, order and negatives
    rows = epoch_sample(len(tokens), cfg, gen)
    if rows is not None:
        tokens, locale = tokens[rows], locale[rows]
    batches = length_batches(tokens, cfg.batch_size, gen)
    total, start = 0.0, time.perf_counter()
    for idx in tqdm(
        batches, desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.total_epochs}", disable=not progress, mininterval=5
    ):
        batch_tokens = trim(tokens[idx]).to(device, non_blocking=True)
        batch_locale = locale[idx].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = _batch_loss(model, batch_tokens, batch_locale, cfg, n_items, gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
        total += loss.item()
    seconds = time.perf_counter() - start
    mean = total / max(len(batches), 1)
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
