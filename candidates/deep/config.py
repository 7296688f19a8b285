"""The ``deep`` section of params.yaml.

deep:
  threads: 1          # CPU threads for torch per training (0: every core of the machine)
  parallel: 2         # trainings at once, each in its own process (stage train_deep)
  amp: true           # bf16 autocast when training on CUDA; ignored on CPU
  models:
    gru4rec: {arch: gru4rec, dim: 64, ...}
    sasrec: {arch: sasrec, dim: 64, layers: 2, heads: 2, ...}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ARCHS = ("gru4rec", "sasrec")


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # gru4rec | sasrec
    dim: int  # item/locale embedding and session vector size
    layers: int  # GRU layers or transformer blocks
    heads: int  # sasrec attention heads
    dropout: float
    max_len: int  # sessions are truncated to their last max_len items (left-padded)
    epochs: int
    batch_size: int  # sessions per step
    lr: float
    weight_decay: float
    negatives: int  # uniform sampled negatives shared by a batch, besides its in-batch targets
    logq: bool  # subtract log batch frequency of in-batch negatives (popularity correction)
    skip_repeats: bool  # no loss on a target already in its prefix: a real next item never repeats one
    max_epoch_sessions: int  # sample budget: each epoch trains on at most this many sessions (0: all)
    max_train_seconds: float  # time budget: no epoch starts that would end past it (0: off; not reproducible)
    finetune_locales: list[str]  # after ``epochs`` on every session, fine-tune on these locales only
    finetune_epochs: int  # epochs of that fine-tuning (0: off): the dataset paper's pretrain -> fine-tune

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"deep model arch {self.arch!r} not in {ARCHS}")
        if self.arch == "sasrec" and self.dim % self.heads:
            raise ValueError(f"sasrec dim {self.dim} not divisible by heads {self.heads}")
        if self.max_epoch_sessions < 0 or self.max_train_seconds < 0:
            raise ValueError("deep model max_epoch_sessions and max_train_seconds must be >= 0 (0: off)")
        if self.finetune_epochs < 0 or (self.finetune_epochs and not self.finetune_locales):
            raise ValueError("deep model finetune_epochs must be >= 0, and > 0 only with finetune_locales")

    @property
    def total_epochs(self) -> int:
        """Pretraining epochs plus fine-tuning epochs."""
        return self.epochs + self.finetune_epochs

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def architecture(self) -> dict[str, Any]:
        """The knobs that shape the network (a checkpoint must match them to be reused)."""
        return {k: getattr(self, k) for k in ("arch", "dim", "layers", "heads", "max_len")}


@dataclass(frozen=True)
class DeepConfig:
    threads: int
    parallel: int
    amp: bool
    models: dict[str, ModelConfig]
