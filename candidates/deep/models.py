"""The session encoders. Each maps (tokens, locale) to one vector per position: the session vector
after each prefix, so one session trains every prefix at once (the per-prefix samples RecBole's data
augmentation makes, without copying the sessions).

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
negative (train.py).

The dataset paper's other baselines (Jin et al., Amazon-M2, NeurIPS 2023 Datasets; its repository runs
them through RecBole) follow the papers and RecBole's implementations (``recbole/model/
sequential_recommender/{narm,stamp,srgnn,core}.py``, the reference named in each class), with the same
deliberate differences everywhere: the locale vector is added to the inputs, the loss, negatives and
training recipe are the shared ones of train.py (RecBole: full softmax or BPR, per-prefix copies of
the sessions), and the read-outs are computed for every prefix at once with a causal mask
(:func:`prefix_mask`), which gives each prefix exactly the vector RecBole computes for it alone.
Every model scores by the tied output plus bias (``scoring: dot``) or, as CORE always does, by the
cosine of session and item vectors over a temperature, without bias (``scoring: cosine``; for faiss the
query is ``[h / |h| / T, 1]`` and the item ``[E[i] / |E[i]|, 0]``).
With ``share_products`` the embedding rows belong to products (the ASIN shared across locales,
items.product) rather than to item indices: an ES item and its DE twin read and train one vector, as
the co-visitation source keyed on products shares their transitions; the bias stays per item index,
so each locale keeps its own popularity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from candidates.deep.config import ModelConfig
from candidates.deep.data import PAD
from candidates.deep.tower import MetaTower


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
        # item_tower meta / meta_id: item vectors from attributes too (deep/tower.py)
        self.tower = (None if cfg.item_tower == "id"
                      else MetaTower(cfg.dim, n_items, n_locales, cfg.meta_buckets))
        # meta_id: the tokens whose id row joins their tower vector (trained often enough: set_id_rows)
        on = torch.ones(n_items + 1, dtype=torch.bool) if cfg.item_tower == "meta_id" else None
        self.register_buffer("id_on", on)

    def item_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens of any shape -> (..., dim): the item's id row (``item_tower: id``), its tower vector
        where it has attributes and else its id row (``meta``), or their sum (``meta_id``; the id row only
        for items training showed ``tower_id_min_count`` times: :meth:`set_id_rows`)."""
        rows = self.embed(tokens)
        if self.tower is None:
            return rows
        if self.cfg.item_tower == "meta":
            rows = rows * ~self.tower.has[tokens][..., None]
        else:  # an item with attributes and a rare id row is its attributes alone (no gradient reaches it)
            rows = rows * (self.id_on[tokens] | ~self.tower.has[tokens])[..., None]
        return rows + self.tower(tokens)

    def set_id_rows(self, on: torch.Tensor) -> None:
        """meta_id: ``on`` (n_items + 1,) bool: the tokens whose id row is summed with their tower vector."""
        with torch.no_grad():
            self.id_on.copy_(on)

    def all_item_vectors(self) -> torch.Tensor:
        """(n_items + 1, dim): :meth:`item_vectors` of every token."""
        if self.tower is None:
            return self.item_emb.weight if self.item_row is None else self.item_emb.weight[self.item_row]
        every = torch.arange(self.item_emb.num_embeddings, device=self.item_emb.weight.device)
        return torch.cat([self.item_vectors(part) for part in every.split(1 << 16)])

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
        return self.dropout(self.item_vectors(tokens) + self.locale_emb(locale)[:, None, :])

    def forward(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded tokens -> (B, L, dim) session vector after each prefix."""
        raise NotImplementedError

    def session_vectors(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, dim): the query vector after the last (newest, rightmost) item."""
        return self.query(self.forward(tokens, locale)[:, -1, :])

    def query(self, h: torch.Tensor) -> torch.Tensor:
        """Session vectors as scored: ``h`` (dot), or ``h / |h| / temperature`` (cosine; idempotent)."""
        return F.normalize(h, dim=-1) / self.cfg.temperature if self.cfg.scoring == "cosine" else h

    def sparse_parameters(self) -> list[nn.Parameter]:
        tower = [] if self.tower is None else self.tower.sparse_parameters()
        return [self.item_emb.weight, self.item_bias.weight, *tower]

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, dim + 1) rows indexed by token, for retrieval: ``[E, b]`` (dot) or
        ``[E / |E|, 0]`` (cosine)."""
        if self.cfg.scoring == "cosine":
            table = F.normalize(self.all_item_vectors(), dim=-1)
            return torch.cat([table, torch.zeros_like(table[:, :1])], dim=1)
        return torch.cat([self.all_item_vectors(), self.item_bias.weight], dim=1)

    def score(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(N, dim) session vectors x (M,) tokens -> (N, M) logits."""
        if self.cfg.scoring == "cosine":
            return self.query(h) @ F.normalize(self.item_vectors(tokens), dim=-1).T
        return h @ self.item_vectors(tokens).T + self.item_bias(tokens).T


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
        return self.out(self.dropout(left_aligned_gru(self.gru, self.inputs(tokens, locale), tokens)))


def left_aligned_gru(gru: nn.GRU, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Run ``gru`` over left-padded rows: (B, L, d) inputs -> (B, L, hidden) outputs, right-aligned
    again, with 0 at the pad steps.

    The GRU reads each session left-aligned (real items first, pads after): its output at a real step
    depends on that step and the ones before only, so the pads change nothing and batches can be trimmed
    to their longest session, with no packing (no host sync on a GPU). An empty session runs one step on
    its (pad) slot, i.e. on its locale vector alone.
    """
    n, length = tokens.shape
    steps = (tokens != PAD).sum(1).clamp(min=1)
    cols = torch.arange(length, device=tokens.device)[None, :]
    shift = (length - steps)[:, None]
    x = x.gather(1, ((cols + shift) % length)[..., None].expand_as(x))  # left-align
    # fp32 recurrence: under CUDA autocast a cuDNN GRU would run in half precision
    with torch.autocast(x.device.type, enabled=False):
        hidden, _ = gru(x.float())
    hidden = hidden * (cols < steps[:, None])[..., None]  # the steps past the session's end: 0, as packed
    return hidden.gather(1, ((cols - shift) % length)[..., None].expand(-1, -1, hidden.shape[-1]))


def prefix_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) left-padded tokens -> (B, L, L) bool: ``[b, t, j]`` when step ``j`` is a real item of the
    prefix that ends at step ``t`` (``j <= t``). A pad step ``t`` sees itself only, so that a softmax
    over its row is never over nothing (its output is never scored)."""
    length = tokens.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
    real = tokens != PAD
    eye = torch.eye(length, dtype=torch.bool, device=tokens.device)
    return (causal[None] & real[:, None, :]) | (eye[None] & ~real[:, :, None])


def query_steps(last: bool) -> slice:
    """The steps whose prefix vector an attention read-out computes: every step (training, where each
    prefix is a sample) or the last one only (a query: its vector, at a fraction of the memory)."""
    return slice(-1, None) if last else slice(None)


class PrefixReadout(SessionEncoder):
    """An encoder whose read-out attends over each prefix (NARM, STAMP, SR-GNN, CORE): :meth:`encode`
    gives every prefix's vector in training and only the whole session's for a query."""

    def encode(self, tokens: torch.Tensor, locale: torch.Tensor, last: bool) -> torch.Tensor:
        """(B, L) -> (B, L, dim) every prefix's vector, or (B, 1, dim) the last one's (``last``)."""
        raise NotImplementedError

    def forward(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        return self.encode(tokens, locale, last=False)

    def session_vectors(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        return self.encode(tokens, locale, last=True)[:, -1, :]


def prefix_means(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B, L, d) -> (B, L, d): the mean of the real steps' vectors of each prefix (0 at a pad step)."""
    real = (tokens != PAD)[..., None].to(x.dtype)
    return (x * real).cumsum(1) / real.cumsum(1).clamp(min=1.0)


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
        # Left padding: the first real item of a row is at position 0 whatever the padding before it,
        # so the positions do not depend on trimming either; pads take position 0 and are masked.
        x = self.inputs(tokens, locale) + self.pos_emb(start_positions(tokens))
        return self.norm(self.blocks(x, mask=attention_mask(tokens, self.cfg.heads, x.dtype)))


def start_positions(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) left-padded -> (B, L) position of each item from the session's first one (pads: 0)."""
    return ((tokens != PAD).cumsum(1) - 1).clamp(min=0)


def attention_mask(tokens: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """(B * heads, L, L) additive causal + padding mask of a transformer over left-padded rows.

    Every position may see itself, so a row that is all padding never softmaxes over nothing (NaN).
    """
    blocked = ~prefix_mask(tokens)
    mask = torch.zeros(blocked.shape, dtype=dtype, device=tokens.device).masked_fill(blocked, float("-inf"))
    return mask.repeat_interleave(heads, dim=0)


class NARM(PrefixReadout):
    """NARM: Li et al., "Neural Attentive Session-based Recommendation", CIKM 2017; RecBole's narm.py.

    A GRU over the session; its state at the prefix's last step is the global encoder's summary
    ``h_t``; the local encoder attends over every state of the prefix, ``alpha_tj = v' sigmoid(A1 h_j
    + A2 h_t)`` (unnormalised, as in the paper and RecBole), ``c_local = sum_j alpha_tj h_j``; the
    session vector is ``B [c_local; h_t]``, scored against the item embeddings (the paper's bilinear
    decoder). As RecBole: the GRU has no biases and ``B`` none; one ``dropout`` knob stands for its
    embedding and ``c_t`` dropouts (0.25 and 0.5).
    """

    def __init__(self, cfg: ModelConfig, n_items: int, n_locales: int) -> None:
        super().__init__(cfg, n_items, n_locales)
        self.gru = nn.GRU(cfg.dim, cfg.dim, num_layers=cfg.layers, batch_first=True, bias=False,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.a1 = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.a2 = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.v = nn.Linear(cfg.dim, 1, bias=False)
        self.b = nn.Linear(2 * cfg.dim, cfg.dim, bias=False)

    def encode(self, tokens: torch.Tensor, locale: torch.Tensor, last: bool) -> torch.Tensor:
        h = left_aligned_gru(self.gru, self.inputs(tokens, locale), tokens)  # (B, L, d); 0 at pads
        q = query_steps(last)
        # (B, T, J): the weight of state j in the prefix ending at step t
        energy = self.v(torch.sigmoid(self.a1(h)[:, None, :, :] + self.a2(h[:, q])[:, :, None, :]))
        energy = energy.squeeze(-1)
        local = (energy * prefix_mask(tokens)[:, q]) @ h
        return self.b(self.dropout(torch.cat([local, h[:, q]], dim=-1)))


class STAMP(PrefixReadout):
    """STAMP: Liu et al., "STAMP: Short-Term Attention/Memory Priority Model for Session-based
    Recommendation", KDD 2018; RecBole's stamp.py.

    Per prefix ending at step t: the last click ``x_t`` and the session mean ``m_s``; attention over the
    prefix's items ``alpha_j = w0' sigmoid(W1 x_j + W2 x_t + W3 m_s + b_a)`` (unnormalised); ``m_a =
    sum_j alpha_j x_j + m_s`` (RecBole adds the mean back); the session vector is the trilinear
    product's left side ``tanh(MLP_a m_a) * tanh(MLP_b x_t)``. Pads are masked out of the attention
    (RecBole relies on their zero embedding; here every input carries the locale vector).
    """

    def __init__(self, cfg: ModelConfig, n_items: int, n_locales: int) -> None:
        super().__init__(cfg, n_items, n_locales)
        self.w0 = nn.Linear(cfg.dim, 1, bias=False)
        self.w1 = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.w2 = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.b_a = nn.Parameter(torch.zeros(cfg.dim))
        self.mlp_a = nn.Linear(cfg.dim, cfg.dim)
        self.mlp_b = nn.Linear(cfg.dim, cfg.dim)

    def encode(self, tokens: torch.Tensor, locale: torch.Tensor, last: bool) -> torch.Tensor:
        x = self.inputs(tokens, locale)  # (B, L, d); step t is the last click of the prefix ending there
        q = query_steps(last)
        mean, click = prefix_means(x, tokens)[:, q], x[:, q]
        energy = self.w0(torch.sigmoid(
            self.w1(x)[:, None, :, :] + (self.w2(click) + self.w3(mean) + self.b_a)[:, :, None, :]
        )).squeeze(-1)  # (B, T, J)
        memory = (energy * prefix_mask(tokens)[:, q]) @ x + mean
        return torch.tanh(self.mlp_a(memory)) * torch.tanh(self.mlp_b(click))


class SRGNN(PrefixReadout):
    """SR-GNN: Wu et al., "Session-based Recommendation with Graph Neural Networks", AAAI 2019; RecBole's
    srgnn.py (the dense-adjacency version of the authors' CRIPAC-DIG/SR-GNN code).

    The session graph of a prefix has one node per distinct item and an edge a -> b when b directly
    follows a (0/1, as RecBole); incoming and outgoing adjacencies are normalised by in- and out-degree.
    ``layers`` gated-GNN steps (one GRU-cell update of every node from its in- and out-messages) give
    node states; the read-out takes the last item's node ``s_l``, a soft attention ``alpha_j = q'
    sigmoid(W1 s_l + W2 v_j)`` over the prefix's steps (repeats count again, as RecBole gathers them),
    ``s_g = sum_j alpha_j v_j``, and the session vector ``W3 [s_g; s_l]``.

    All prefixes at once: a step's node is the first step of the row holding the same item, the graph
    of the prefix ending at t holds the transitions up to t (a cumulative count over the row's
    transitions), and the GNN runs on the (B, T, L, d) stack of those graphs; nodes a prefix does not
    hold get no edges and are never read.
    """

    def __init__(self, cfg: ModelConfig, n_items: int, n_locales: int) -> None:
        super().__init__(cfg, n_items, n_locales)
        d = cfg.dim
        self.edge_in = nn.Linear(d, d)
        self.edge_out = nn.Linear(d, d)
        self.b_in = nn.Parameter(torch.zeros(d))
        self.b_out = nn.Parameter(torch.zeros(d))
        self.gate_input = nn.Linear(2 * d, 3 * d)  # RecBole's w_ih, b_ih (on [in-message; out-message])
        self.gate_hidden = nn.Linear(d, 3 * d)  # w_hh, b_hh
        self.linear_one = nn.Linear(d, d)
        self.linear_two = nn.Linear(d, d)
        self.linear_three = nn.Linear(d, 1, bias=False)
        self.linear_transform = nn.Linear(2 * d, d)

    @staticmethod
    def prefix_graphs(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L) left-padded -> (node (B, L): each step's node, the first step holding its item;
        incoming (B, T, L, L) and outgoing (B, T, L, L) normalised adjacency of the prefix ending at t)."""
        n, length = tokens.shape
        real = tokens != PAD
        steps = torch.arange(length, device=tokens.device)
        same = (tokens[:, :, None] == tokens[:, None, :]) & real[:, None, :]
        node = torch.where(real, same.float().argmax(2), steps[None, :])  # argmax: the first True
        link = (real[:, :-1] & real[:, 1:]).float()[:, :, None, None]  # transition k -> k + 1
        source, target = F.one_hot(node[:, :-1], length).float(), F.one_hot(node[:, 1:], length).float()
        edges = source[..., :, None] * target[..., None, :]
        after = (edges * link).cumsum(1).clamp(max=1.0)  # (B, L - 1, L, L): the graph up to step k + 1
        none = torch.zeros(n, 1, length, length, device=tokens.device)  # the first step's prefix: no edge
        adj = torch.cat([none, after], dim=1)  # (B, T, u, v): edge u -> v
        incoming = (adj / adj.sum(-2, keepdim=True).clamp(min=1.0)).transpose(-1, -2)  # [v, u] / in-degree(v)
        outgoing = adj / adj.sum(-1, keepdim=True).clamp(min=1.0)  # [u, v] / out-degree(u)
        return node, incoming, outgoing

    def encode(self, tokens: torch.Tensor, locale: torch.Tensor, last: bool) -> torch.Tensor:
        n, length = tokens.shape
        q = query_steps(last)
        node, incoming, outgoing = self.prefix_graphs(tokens)
        incoming, outgoing = incoming[:, q], outgoing[:, q]
        steps = torch.arange(length, device=tokens.device)[q]  # the last step of each prefix computed
        # A node's input vector is that of its first step (the same item there), the same in every prefix's
        # graph: (B, 1, L, d), broadcast over the prefixes until the first GNN step makes them differ.
        hidden = self.inputs(tokens, locale)[:, None, :, :]
        w_in, w_out = self.gate_input.weight.chunk(2, dim=1)  # the input gates' weights on each message
        bias = self.gate_input.bias + self.b_in @ w_in.T + self.b_out @ w_out.T
        for _ in range(self.cfg.layers):
            # gate_input([A_in h W_in' + b_in, A_out h W_out' + b_out]) regrouped so that the linear maps
            # act on the (shared) node states before the per-prefix adjacency multiplies them
            gates_in = (incoming @ (self.edge_in(hidden) @ w_in.T)
                        + outgoing @ (self.edge_out(hidden) @ w_out.T) + bias)
            i_r, i_i, i_n = gates_in.chunk(3, -1)
            h_r, h_i, h_n = self.gate_hidden(hidden).chunk(3, -1)
            reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_i + h_i)
            hidden = (1 - update) * hidden + update * torch.tanh(i_n + reset * h_n)
        d = hidden.shape[-1]
        hidden = hidden.expand(-1, len(steps), -1, -1)  # (B, T, L, d) (already, after a GNN step)
        # (B, T, J, d): in the graph of the prefix ending at t, the state of step j's node
        seq = hidden.gather(2, node[:, None, :, None].expand(-1, len(steps), -1, d))
        end = seq.gather(2, steps[None, :, None, None].expand(n, -1, 1, d)).squeeze(2)  # (B, T, d): last item
        alpha = self.linear_three(torch.sigmoid(self.linear_one(end)[:, :, None, :] + self.linear_two(seq)))
        glob = (alpha.squeeze(-1) * prefix_mask(tokens)[:, q]).unsqueeze(-1).mul(seq).sum(2)
        return self.linear_transform(torch.cat([glob, end], dim=-1))


class CORE(PrefixReadout):
    """CORE: Hou et al., "CORE: Simple and Effective Session-based Recommendation within Consistent
    Representation Space", SIGIR 2022; RecBole's core.py (from RUCAIBox/CORE), the ``trm`` encoder.

    Representation-consistent encoder: the session vector is a weighted sum of the prefix's own item
    embeddings, so it lies in the item space; the weights are a softmax over the prefix of ``w' o_j``,
    ``o`` a causal transformer's output over the items (learned positions from the session's first item,
    layer norm and dropout on the input, as RecBole's TransNet). Robust distance measuring: the session
    vector and the item embeddings are L2-normalised and their cosine divided by ``temperature``, with
    dropout on the candidate item embeddings in training (``dropout`` stands for RecBole's
    sess_dropout and item_dropout): ``scoring: cosine``, which CORE requires. Besides
    the shared differences, the locale vector joins the transformer's input only, never the summed
    item vectors; the transformer blocks are torch's post-norm layer (RecBole's is the same BERT form).
    """

    def __init__(self, cfg: ModelConfig, n_items: int, n_locales: int) -> None:
        super().__init__(cfg, n_items, n_locales)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        nn.init.normal_(self.pos_emb.weight, std=1 / math.sqrt(cfg.dim))
        self.norm = nn.LayerNorm(cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=cfg.dim * 4,
                                           dropout=cfg.dropout, batch_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.fn = nn.Linear(cfg.dim, 1)

    def encode(self, tokens: torch.Tensor, locale: torch.Tensor, last: bool) -> torch.Tensor:
        items = self.dropout(self.item_vectors(tokens))  # (B, L, d), RecBole's sess_dropout
        x = self.norm(items + self.pos_emb(start_positions(tokens)) + self.locale_emb(locale)[:, None, :])
        out = self.blocks(self.dropout(x), mask=attention_mask(tokens, self.cfg.heads, x.dtype))
        logit = self.fn(out).squeeze(-1).float()  # (B, J)
        blocked = ~prefix_mask(tokens)[:, query_steps(last)]
        weight = logit[:, None, :].masked_fill(blocked, float("-inf")).softmax(-1)  # (B, T, J)
        return self.query(weight.to(items.dtype) @ items)

    def score(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The shared cosine score, with dropout on the candidates' item vectors (RecBole's item_dropout)."""
        return self.query(h) @ F.normalize(self.dropout(self.item_vectors(tokens)), dim=-1).T


MODELS: dict[str, type[SessionEncoder]] = {
    "gru4rec": GRU4Rec, "sasrec": SASRec, "narm": NARM, "stamp": STAMP, "srgnn": SRGNN, "core": CORE,
}


def build(
    cfg: ModelConfig, n_items: int, n_locales: int, item_row: torch.Tensor | None = None
) -> SessionEncoder:
    """The encoder of ``cfg.arch``; ``item_row`` (token -> shared row) when ``cfg.share_products``."""
    model = MODELS[cfg.arch](cfg, n_items, n_locales)
    if item_row is not None:
        model.share_rows(item_row)
    return model
