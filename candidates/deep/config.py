"""The ``deep`` section of params.yaml.

deep:
  threads: 0          # CPU threads for torch (0: every core of the machine)
  amp: true           # bf16 autocast when training on CUDA; ignored on CPU
  models:
    gru4rec: {arch: gru4rec, dim: 64, ...}
    sasrec: {arch: sasrec, dim: 64, layers: 2, heads: 2, ...}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ARCHS = ("gru4rec", "sasrec")


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # gru4rec | sasrec
    dim: int = 64  # item/locale embedding and session vector size
    layers: int = 1  # GRU layers or transformer blocks
    heads: int = 2  # sasrec attention heads
    dropout: float = 0.1
    max_len: int = 20  # sessions are truncated to their last max_len items (left-padded)
    epochs: int = 3
    batch_size: int = 256  # sessions per step
    lr: float = 0.002
    weight_decay: float = 0.0
    negatives: int = 1024  # uniform sampled negatives shared by a batch, besides its in-batch targets
    logq: bool = True  # subtract log batch frequency of in-batch negatives (popularity correction)
    skip_repeats: bool = True  # no loss on a target already in its prefix: a real next item never repeats one
    max_epoch_sessions: int = 0  # sample budget: each epoch trains on at most this many sessions (0: all)
    max_train_seconds: float = (
        0.0  # time budget: no epoch starts that would end past it (0: off; not reproducible)
    )

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"deep model arch {self.arch!r} not in {ARCHS}")
        if self.arch == "sasrec" and self.dim % self.heads:
            raise ValueError(f"sasrec dim {self.dim} not divisible by heads {self.heads}")
        if self.max_epoch_sessions < 0 or self.max_train_seconds < 0:
            raise ValueError("deep model max_epoch_sessions and max_train_seconds must be >= 0 (0: off)")

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def architecture(self) -> dict[str, Any]:
        """The knobs that shape the network (a checkpoint must match them to be reused)."""
        return {k: getattr(self, k) for k in ("arch", "dim", "layers", "heads", "max_len")}


@dataclass(frozen=True)
class DeepConfig:
    threads: int = 0
    amp: bool = True
    models: dict[str, ModelConfig] = field(default_factory=dict)
