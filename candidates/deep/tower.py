"""Metadata item tower: an item's vector computed from its attributes, for items few sessions show.

M2TRec (Shalaby et al., 2022) argues that one learned row per item needs many sessions per item and
cannot score an item no session shows; an item vector computed from the item's metadata gives rare
and cold items one. Here (knob ``item_tower`` of ``deep.models.<name>``):

    tower(i) = mean of its hashed title-word rows + brand row + colour row + price-bucket row + locale row

- ``id``: no tower, one learned row per item (GRU4Rec, SASRec and the others as published);
- ``meta``: the tower alone for every item that has attributes;
- ``meta_id``: the tower plus the item's id row (an item unseen in training has a zero id row).

It degrades rather than invents: an item with no title, brand, colour or price (the shared real files'
attributes are placeholders) has no tower vector and falls back to its id row, and ``train`` logs how
many items that is; only items with attributes or seen in training are ever indexed for retrieval.
The words, brands and colours are hashed into ``meta_buckets`` rows (the hashing trick), so the tower's
size does not grow with the catalogue.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch
from torch import nn

TITLE_WORDS = 16  # title words hashed per item (the first ones: the product noun and brand lead a title)
PRICE_BUCKETS = 16  # half-octaves of the price: bucket = floor(2 log2(1 + price)), capped


def _hashed(column: pl.Expr, buckets: int) -> pl.Expr:
    """A string column -> 1 + hash mod buckets (0: empty or null)."""
    text = column.cast(pl.String).str.strip_chars()
    return (pl.when(text.is_null() | (text == "")).then(0)
            .otherwise(text.str.to_lowercase().hash(seed=17) % buckets + 1).cast(pl.Int64))


def item_attributes(items: pl.DataFrame, n_items: int, locales: list[str],
                    buckets: int) -> dict[str, np.ndarray]:
    """Per token (item index + 1; row 0 the pad): ``title`` (n_items + 1, TITLE_WORDS) hashed word ids,
    ``brand``, ``color``, ``price``, ``locale`` (n_items + 1,) ids, 0 where absent; ``has`` (n_items + 1,)
    bool: the item has a title word, brand, colour or price. A column the item table lacks counts as empty."""
    types = {"title": pl.String, "brand": pl.String, "color": pl.String, "price": pl.Float64}
    missing = [pl.lit(None, dtype).alias(c) for c, dtype in types.items() if c not in items.columns]
    items = items.with_columns(missing)
    frame = items.select(
        "item",
        pl.col("title").cast(pl.String).fill_null("").str.to_lowercase().str.extract_all(r"\w+")
        .list.head(TITLE_WORDS).list.eval(pl.element().hash(seed=17) % buckets + 1).alias("title"),
        _hashed(pl.col("brand"), buckets).alias("brand"),
        _hashed(pl.col("color"), buckets).alias("color"),
        pl.when(pl.col("price").is_null() | (pl.col("price") < 0)).then(0)
        .otherwise((2 * (1 + pl.col("price")).log(2)).floor().clip(0, PRICE_BUCKETS - 1) + 1)
        .cast(pl.Int64).alias("price"),
        pl.col("locale").replace_strict(locales, list(range(1, len(locales) + 1)), default=0,
                                        return_dtype=pl.Int64).alias("locale"),
    )
    tokens = frame["item"].to_numpy().astype(np.int64) + 1
    out = {name: np.zeros(n_items + 1, dtype=np.int64) for name in ("brand", "color", "price", "locale")}
    for name in out:
        out[name][tokens] = frame[name].to_numpy()
    title = np.zeros((n_items + 1, TITLE_WORDS), dtype=np.int64)
    words = frame["title"]
    lens = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = words.explode(empty_as_null=False).drop_nulls().to_numpy().astype(np.int64)
    rows = np.repeat(tokens, lens)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
    title[rows, cols] = flat
    out["title"] = title
    out["has"] = (title > 0).any(1) | (out["brand"] > 0) | (out["color"] > 0) | (out["price"] > 0)
    return out


class MetaTower(nn.Module):
    """Attributes -> item vectors. The attribute ids are buffers (saved with the model), set by
    :meth:`set_attributes` from :func:`item_attributes` before training."""

    def __init__(self, dim: int, n_items: int, n_locales: int, buckets: int) -> None:
        super().__init__()
        self.register_buffer("title", torch.zeros(n_items + 1, TITLE_WORDS, dtype=torch.long))
        for name in ("brand", "color", "price", "locale"):
            self.register_buffer(name, torch.zeros(n_items + 1, dtype=torch.long))
        self.register_buffer("has", torch.zeros(n_items + 1, dtype=torch.bool))
        # Sparse rows, as the id rows: a step touches the few thousand rows of its items' attributes, and
        # SparseAdam moves them at emb_lr (train.Optimizer) instead of a dense AdamW step over every bucket.
        self.words = nn.EmbeddingBag(buckets + 1, dim, mode="mean", padding_idx=0, sparse=True)
        self.brand_emb = nn.Embedding(buckets + 1, dim, padding_idx=0, sparse=True)
        self.color_emb = nn.Embedding(buckets + 1, dim, padding_idx=0, sparse=True)
        self.price_emb = nn.Embedding(PRICE_BUCKETS + 1, dim, padding_idx=0, sparse=True)
        self.locale_emb = nn.Embedding(n_locales + 1, dim, padding_idx=0, sparse=True)
        for table in (self.words, self.brand_emb, self.color_emb, self.price_emb, self.locale_emb):
            nn.init.normal_(table.weight, std=1 / math.sqrt(dim))  # the id rows' scale
            with torch.no_grad():
                table.weight[0].zero_()

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [table.weight for table in (self.words, self.brand_emb, self.color_emb, self.price_emb,
                                           self.locale_emb)]

    def set_attributes(self, attrs: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for name in ("title", "brand", "color", "price", "locale", "has"):
                getattr(self, name).copy_(torch.from_numpy(attrs[name]))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens of any shape -> (..., dim); 0 for a token without attributes (and the pad)."""
        flat = tokens.reshape(-1)
        vec = (self.words(self.title[flat]) + self.brand_emb(self.brand[flat])
               + self.color_emb(self.color[flat]) + self.price_emb(self.price[flat])
               + self.locale_emb(self.locale[flat]))
        vec = vec * self.has[flat, None]
        return vec.reshape(*tokens.shape, -1)
