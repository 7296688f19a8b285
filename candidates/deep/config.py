"""The ``deep`` section of params.yaml.

deep:
  threads: 1          # CPU threads for torch per training (0: every core of the machine)
  parallel: 2         # trainings at once, each in its own process (stage train_deep)
  amp: true           # bf16 autocast when training on CUDA; ignored on CPU
  models:
    gru4rec: {arch: gru4rec, dim: 64, ...}
    sasrec: {arch: sasrec, dim: 64, layers: 2, heads: 2, ...}
    narm: ..., stamp: ..., srgnn: ..., core: ...   # the dataset paper's other baselines
  train: [gru4rec, sasrec]   # the models stage train_deep trains
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ARCHS = ("gru4rec", "sasrec", "narm", "stamp", "srgnn", "core")  # candidates/deep/models.py MODELS
INITS = ("random", "ppmi_svd")
TOWERS = ("id", "meta", "meta_id")
SCORINGS = ("dot", "cosine")


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # gru4rec | sasrec | narm | stamp | srgnn | core
    dim: int  # item/locale embedding and session vector size
    layers: int  # GRU layers (gru4rec, narm), transformer blocks (sasrec, core), GNN steps (srgnn)
    heads: int  # attention heads (sasrec, core)
    dropout: float
    max_len: int  # sessions are truncated to their last max_len items (left-padded)
    init: str  # item embeddings: random | ppmi_svd (the history's co-visitation: deep/warmstart.py)
    share_products: bool  # one embedding row per product (ASIN) across locales; the bias stays per item
    epochs: int  # most epochs (early stopping may end sooner)
    batch_size: int  # sessions per step, all of one locale
    lr: float  # AdamW learning rate of the dense weights (GRU / transformer, locale and position vectors)
    emb_lr: float  # SparseAdam learning rate of the item embedding and bias rows
    warmup_steps: int  # the dense learning rate rises linearly over the first steps (0: off)
    clip_norm: float  # the dense gradients' norm is clipped to this (0: off)
    weight_decay: float  # AdamW weight decay of the dense weights
    negatives: int  # sampled negatives per batch from its locale's items, besides the batch's own targets
    neg_alpha: float  # negatives drawn with probability count ** neg_alpha (0: uniform over seen items)
    logq: bool  # subtract log expected count of each candidate in the sample (sampled-softmax correction)
    skip_repeats: bool  # no loss on a target already in its prefix: a real next item never repeats one
    min_count: int  # retrieval indexes only items seen at least this often in the training history
    valid_sessions: int  # sessions whose last item is held out to score MRR@100 each epoch (0: off)
    patience: int  # stop after this many epochs without a better validation MRR; the best is kept (0: off)
    passes_per_item: float  # budget: session passes per item of the history over all epochs (0: every
    #                         session each epoch); each epoch then trains on the next slice of one permutation
    max_train_seconds: float  # time budget: no epoch starts that would end past it (0: off; not reproducible)
    finetune_locales: list[str]  # after ``epochs`` on every session, fine-tune on these locales only
    finetune_epochs: int  # epochs of that fine-tuning (0: off): the dataset paper's pretrain -> fine-tune
    scoring: str  # dot: <h, E[i]> + b[i]; cosine: cos(h, E[i]) / temperature, no bias (core needs it)
    temperature: float  # scoring cosine: the cosines are divided by this (RecBole's CORE: 0.07)
    item_tower: str  # id | meta | meta_id: item vectors from id rows, attributes, or both (deep/tower.py)
    meta_buckets: int  # hash rows of the tower's title words, brands and colours
    tower_id_min_count: int  # meta_id: an item's id row joins its tower vector only when the training
    #                          history shows the item at least this often (rarer items: attributes alone)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"deep model arch {self.arch!r} not in {ARCHS}")
        if self.init not in INITS:
            raise ValueError(f"deep model init {self.init!r} not in {INITS}")
        if self.share_products and self.init != "random":
            raise ValueError("deep model share_products needs init: random (a warm start is per item index)")
        if self.share_products and self.item_tower != "id":
            raise ValueError("deep model share_products needs item_tower: id (the tower is per item index)")
        if self.arch in ("sasrec", "core") and self.dim % self.heads:
            raise ValueError(f"{self.arch} dim {self.dim} not divisible by heads {self.heads}")
        if self.temperature <= 0:
            raise ValueError("deep model temperature must be > 0")
        if self.scoring not in SCORINGS or (self.arch == "core" and self.scoring != "cosine"):
            raise ValueError(f"deep model scoring must be one of {SCORINGS} (core: cosine), "
                             f"not {self.scoring!r}")
        if self.item_tower not in TOWERS or self.meta_buckets < 1 or self.tower_id_min_count < 1:
            raise ValueError(f"deep model item_tower must be one of {TOWERS}, meta_buckets and "
                             "tower_id_min_count >= 1")
        if self.passes_per_item < 0 or self.max_train_seconds < 0:
            raise ValueError("deep model passes_per_item and max_train_seconds must be >= 0 (0: off)")
        if self.min_count < 1 or self.valid_sessions < 0 or self.patience < 0 or self.neg_alpha < 0:
            raise ValueError("deep model min_count must be >= 1; valid_sessions, patience, neg_alpha >= 0")
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
        return {k: getattr(self, k) for k in ("arch", "dim", "layers", "heads", "max_len", "share_products",
                                               "item_tower", "meta_buckets", "tower_id_min_count")}


@dataclass(frozen=True)
class DeepConfig:
    threads: int
    parallel: int
    amp: bool
    models: dict[str, ModelConfig]
    train: list[str]  # the models stage train_deep trains (the others: benchmarks and opt-in sources)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.train) - set(self.models))
        if unknown:
            raise ValueError(f"deep.train names models not in deep.models: {unknown}")
