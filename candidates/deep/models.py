"""The two session encoders. Both map (tokens, locale) to one vector per position.

The score of item ``i`` after a prefix is ``<h, E[i]> + b[i]``: the output layer *is* the input
item embedding ``E`` (tied weights) plus a per-item bias, which carries popularity. For faiss the
bias rides along as one extra dimension: query ``[h, 1]``, item ``[E[i], b[i]]``.

GRU4Rec follows Hidasi et al. (ICLR 2016; the official GRU4Rec repository's "GRU4Rec with
embedding" variant): one GRU layer over item embeddings, trained on every step of the session with
a sampled softmax; the negatives and their correction live in train.py. SASRec follows Kang &
McAuley (ICDM 2018) and the pmixer/SASRec.pytorch reference: pre-norm causal transformer blocks with
learned absolute positions counted from the session's first item. Deliberate differences: the
output layer is tied to the input embedding plus a bias (both), a locale vector is added to every
input (one model serves all locales), and the loss is a sampled softmax rather than BCE with one
negative (train.py). With ``share_products`` the embedding rows belong to products (the ASIN shared
across locales, items.product) rather than to item indices: an ES item and its DE twin read and train
one vector, as the co-visitation source keyed on products shares their transitions; the bias stays
per item index, so each locale keeps its own popularity.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from candidates.deep.config import ModelConfig
from candidates.deep.data import PAD


class SessionEncoder(nn.Module):
    """Shared parts: tied item embedding + bias, locale embedding, scoring."""

    def __init__(self, cfg: ModelConfig, n_items: int, n_locales: int) -> None:
        super().__init__()
        self.cfg = cfg
        # Sparse gradients: a step touches a few thousand of up to 1.4M rows, and a dense Adam
        # update of the whole table would cost more than the rest of the step (see train.py).
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=PAD, sparse=True)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=PAD, sparse=True)
        self.locale_emb = nn.Embedding(n_locales, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.register_buffer("item_row", None)  # token -> embedding row, when rows are shared (share_rows)
        nn.init.normal_(self.item_emb.weight, std=1 / math.sqrt(cfg.dim))
        nn.init.zeros_(self.item_bias.weight)
        nn.init.normal_(self.locale_emb.weight, std=1 / math.sqrt(cfg.dim))
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def share_rows(self, item_row: torch.Tensor) -> None:
        """Give tokens that ``item_row`` maps to one row a single embedding vector.

        ``item_row``: (n_items + 1,) int64, PAD -> PAD, rows 1..n_rows. The table is re-created with
        ``n_rows + 1`` rows (same init); the map is a buffer saved with the weights.
        """
        n_rows = int(item_row.max()) + 1
        self.item_emb = nn.Embedding(n_rows, self.cfg.dim, padding_idx=PAD, sparse=True)
        nn.init.normal_(self.item_emb.weight, std=1 / math.sqrt(self.cfg.dim))
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()
        self.register_buffer("item_row", item_row.to(torch.int64))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens -> item embeddings (through the shared rows when there are)."""
        return self.item_emb(tokens if self.item_row is None else self.item_row[tokens])

    def inputs(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens, (B,) locales -> (B, L, dim) input vectors (locale added at every step)."""
        return self.dropout(self.embed(tokens) + self.locale_emb(locale)[:, None, :])

    def forward(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded tokens -> (B, L, dim) session vector after each prefix."""
        raise NotImplementedError

    def session_vectors(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, dim): the vector after the last (newest, rightmost) item."""
        return self.forward(tokens, locale)[:, -1, :]

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [self.item_emb.weight, self.item_bias.weight]

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, dim + 1): ``[E, b]`` rows indexed by token, for retrieval."""
        rows = self.item_emb.weight if self.item_row is None else self.item_emb.weight[self.item_row]
        return torch.cat([rows, self.item_bias.weight], dim=1)

    def score(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(N, dim) vectors x (M,) tokens -> (N, M) logits."""
        return h @ self.embed(tokens).T + self.item_bias(tokens).T


class GRU4Rec(SessionEncoder):
    """GRU4Rec-style: a GRU over the item sequence, projected back into item-embedding space."""

    def __init__(self, cfg: ModelConfig, n_items: int, n_locales: int) -> None:
        super().__init__(cfg, n_items, n_locales)
        self.gru = nn.GRU(
            cfg.dim,
            cfg.dim,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.out = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        # The GRU reads each session left-aligned (real items first, pads after): its output at a real
        # step depends on that step and the ones before only, so the pads change nothing and batches
        # can be trimmed to their longest session, with no packing (no host sync on a GPU). An empty
        # session runs one step on its (pad) slot, i.e. on its locale vector alone.
        n, length = tokens.shape
        steps = (tokens != PAD).sum(1).clamp(min=1)
        cols = torch.arange(length, device=tokens.device)[None, :]
        shift = (length - steps)[:, None]
        x = self.inputs(tokens, locale)
        x = x.gather(1, ((cols + shift) % length)[..., None].expand_as(x))  # left-align
        # fp32 recurrence: under CUDA autocast a cuDNN GRU would run in half precision
        with torch.autocast(x.device.type, enabled=False):
            hidden, _ = self.gru(x.float())
        hidden = hidden * (cols < steps[:, None])[..., None]  # the steps past the session's end: 0, as packed
        hidden = hidden.gather(1, ((cols - shift) % length)[..., None].expand_as(hidden))  # right-align back
        return self.out(self.dropout(hidden))


class SASRec(SessionEncoder):
    """SASRec-style: pre-norm causal transformer blocks with learned position embeddings.

    Position ``p`` is the item's place from the session's first item (of the last ``max_len``), as
    in the paper: a training prefix ``[a]`` and a query ``[a]`` both put ``a`` at position 0.
    """

    def __init__(self, cfg: ModelConfig, n_items: int, n_locales: int) -> None:
        super().__init__(cfg, n_items, n_locales)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        # Same scale as the item embeddings: the default N(0, 1) would drown the items in position.
        nn.init.normal_(self.pos_emb.weight, std=1 / math.sqrt(cfg.dim))
        layer = nn.TransformerEncoderLayer(
            cfg.dim,
            cfg.heads,
            dim_feedforward=cfg.dim * 4,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=True,
            activation="gelu",
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        n, length = tokens.shape
        # Left padding: the first real item of a row is at position 0 whatever the padding before it,
        # so the positions do not depend on trimming either; pads take position 0 and are masked.
        real = tokens != PAD
        pos = (real.cumsum(1) - 1).clamp(min=0)
        x = self.inputs(tokens, locale) + self.pos_emb(pos)
        # Causal and padding masks in one; every position may see itself, so a row that is all
        # padding never softmaxes over nothing (NaN).
        future = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)
        blocked = future[None] | (tokens == PAD)[:, None, :]
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=tokens.device)[None]
        mask = torch.zeros(blocked.shape, dtype=x.dtype, device=x.device).masked_fill(blocked, float("-inf"))
        mask = mask.repeat_interleave(self.cfg.heads, dim=0)
        return self.norm(self.blocks(x, mask=mask))


def build(
    cfg: ModelConfig, n_items: int, n_locales: int, item_row: torch.Tensor | None = None
) -> SessionEncoder:
    """The encoder of ``cfg.arch``; ``item_row`` (token -> shared row) when ``cfg.share_products``."""
    model = {"gru4rec": GRU4Rec, "sasrec": SASRec}[cfg.arch](cfg, n_items, n_locales)
    if item_row is not None:
        model.share_rows(item_row)
    return model
