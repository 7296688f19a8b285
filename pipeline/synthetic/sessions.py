"""Sessions: a Markov process over a hidden state, vectorised over sessions one step at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.synthetic.catalogue import World
from pipeline.synthetic.config import (
    BACK,
    BRAND,
    CAT,
    DRIFT,
    DUP,
    N_COMP,
    POP,
    REL,
    TIER,
    VAR,
    SyntheticConfig,
)
from pipeline.synthetic.groups import member, sorted_unique


@dataclass
class State:
    loc: np.ndarray
    cur: np.ndarray
    intent: np.ndarray
    brand: np.ndarray
    tier: np.ndarray


def _weights(w: World, st: State, base: np.ndarray, t: int | None) -> np.ndarray:
    """Mixture weights per session (rows sum to 1) over the components available now.

    ``t`` is the number of items already in the session, or None for the target (no re-views).
    """
    n = len(st.cur)
    avail = np.ones((n, N_COMP), dtype=bool)
    if t is None:
        avail[:, DUP] = avail[:, BACK] = False
    else:
        avail[:, BACK] = t >= 2
    avail[:, VAR] = w.g_lf.size[w.g_lf.gid[st.cur]] > 1
    avail[:, REL] = w.rel_tot[st.cur] > 0
    avail[:, BRAND] = w.g_lib.lookup(w.code_lib(st.loc, st.intent, st.brand)) >= 0
    avail[:, TIER] = w.g_lit.lookup(w.code_lit(st.loc, st.intent, st.tier)) >= 0
    avail[:, DRIFT] = w.drift_q[st.loc, st.intent].sum(axis=1) > 0
    wt = base[None, :] * avail
    return wt / wt.sum(axis=1, keepdims=True)


def _step(rng: np.random.Generator, w: World, st: State, wt: np.ndarray, flat: np.ndarray,
          offsets: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the next entry of every session in ``st``; returns (entry, new intent)."""
    n = len(st.cur)
    comp = (rng.random(n)[:, None] > np.cumsum(wt, axis=1)).sum(axis=1)
    comp = np.minimum(comp, N_COMP - 1)
    u = rng.random(n)
    nxt = st.cur.copy()
    intent = st.intent.copy()
    for c in range(N_COMP):
        m = np.flatnonzero(comp == c)
        if len(m) == 0 or c == DUP:
            continue
        if c == BACK:
            pos = np.minimum((u[m] * (t - 1)).astype(np.int64), t - 2)
            nxt[m] = flat[offsets[m] + pos]
        elif c == VAR:
            nxt[m] = w.g_lf.sample(w.g_lf.gid[st.cur[m]], u[m], exclude=st.cur[m])
        elif c == REL:
            cw = np.cumsum(w.rel_w[st.cur[m]], axis=1)
            k = (u[m, None] * cw[:, -1:] >= cw).sum(axis=1)
            nxt[m] = w.rel[st.cur[m], np.minimum(k, cw.shape[1] - 1)]
        elif c == CAT:
            nxt[m] = w.g_li.sample(w.g_li.lookup(w.code_li(st.loc[m], st.intent[m])), u[m])
        elif c == BRAND:
            nxt[m] = w.g_lib.sample(w.g_lib.lookup(w.code_lib(st.loc[m], st.intent[m], st.brand[m])), u[m])
        elif c == TIER:
            nxt[m] = w.g_lit.sample(w.g_lit.lookup(w.code_lit(st.loc[m], st.intent[m], st.tier[m])), u[m])
        elif c == DRIFT:
            q = np.cumsum(w.drift_q[st.loc[m], st.intent[m]], axis=1)
            k = np.minimum((u[m, None] * q[:, -1:] >= q).sum(axis=1), q.shape[1] - 1)
            new_cat = w.drift_cat[st.loc[m], st.intent[m], k]
            intent[m] = new_cat
            nxt[m] = w.g_li.sample(w.g_li.lookup(w.code_li(st.loc[m], new_cat)), rng.random(len(m)))
        elif c == POP:
            nxt[m] = w.g_loc.sample(w.g_loc.lookup(st.loc[m]), u[m])
    return nxt, intent


def lengths(rng: np.random.Generator, n: int, cap: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    """Session lengths WITH the target (>= 2): 2 + negative binomial, a Pareto tail, capped."""
    r = cfg.length_dispersion
    body = 2 + rng.negative_binomial(r, r / (r + cfg.length_extra_mean), n)
    tail = 2 + np.floor(cfg.length_tail_min * (1 + rng.pareto(cfg.length_tail_alpha, n))).astype(np.int64)
    length = np.where(rng.random(n) < cfg.length_tail_share, tail, body)
    return np.clip(length, 2, cap)


def simulate(rng: np.random.Generator, w: World, loc: np.ndarray, length: np.ndarray,
              cfg: SyntheticConfig) -> dict:
    """Run the process for sessions of locale ``loc`` and total length ``length`` (with target).

    Returns flat prev items (entries) with offsets, the target entry, and the hidden state and
    target-step weights needed by the oracle.
    """
    n = len(loc)
    base = cfg.mixture()
    order = np.argsort(-length, kind="stable")       # longest first: the active set is a prefix
    loc_s = loc[order]
    n_prev = length[order] - 1
    offsets = np.concatenate([[0], np.cumsum(n_prev)[:-1]])
    flat = np.empty(int(n_prev.sum()), dtype=np.int64)
    first = w.g_loc.sample(w.g_loc.lookup(loc_s), rng.random(n))
    flat[offsets] = first
    st = State(loc=loc_s, cur=first, intent=w.ent_cat[first], brand=w.ent_brand[first],
                tier=w.ent_tier[first])
    max_prev = int(n_prev.max()) if n else 0
    for t in range(1, max_prev):
        k = int(np.searchsorted(-n_prev, -t, side="left"))  # sessions with n_prev > t
        if k == 0:
            break
        sub = State(st.loc[:k], st.cur[:k], st.intent[:k], st.brand[:k], st.tier[:k])
        nxt, intent = _step(rng, w, sub, _weights(w, sub, base, t), flat, offsets[:k], t)
        flat[offsets[:k] + t] = nxt
        st.cur[:k], st.intent[:k] = nxt, intent
    # Target: same mixture without re-views, session items excluded (rejection = renormalisation).
    sess_of = np.repeat(np.arange(n), n_prev)
    seen = sorted_unique(sess_of * len(w.pop) + flat)
    wt = _weights(w, st, base, None)
    target = np.full(n, -1, dtype=np.int64)
    pending = np.arange(n)
    for _ in range(cfg.target_max_tries):
        if len(pending) == 0:
            break
        sub = State(st.loc[pending], st.cur[pending], st.intent[pending], st.brand[pending],
                     st.tier[pending])
        nxt, _ = _step(rng, w, sub, wt[pending], flat, offsets[pending], 0)
        ok = ~member(seen, pending * len(w.pop) + nxt)
        target[pending[ok]] = nxt[ok]
        pending = pending[~ok]
    while len(pending):  # the mixture is (almost) exhausted by the session: locale popularity
        nxt = w.g_loc.sample(w.g_loc.lookup(st.loc[pending]), rng.random(len(pending)))
        ok = ~member(seen, pending * len(w.pop) + nxt)
        target[pending[ok]] = nxt[ok]
        pending = pending[~ok]
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    return {"order": order, "inv": inv, "flat": flat, "offsets": offsets, "n_prev": n_prev, "target": target,
            "state": st, "weights": wt}
