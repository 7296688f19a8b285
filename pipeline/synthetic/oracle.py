"""The oracle: the exact rank of each drawn target under the true next-item distribution, the
target's class, and the ceiling those ranks give (gt/ceiling.json)."""

from __future__ import annotations

import numpy as np

from core.raw import LOCALES, TARGET_CLASSES
from pipeline.synthetic.catalogue import World
from pipeline.synthetic.config import BRAND, CAT, DRIFT, POP, REL, TIER, VAR
from pipeline.synthetic.groups import Groups, member, sorted_unique


def oracle_ranks(w: World, sim: dict, idx: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of the drawn target among the locale's items not in the session, ranking by
    the true next-item probability; ``idx`` are sessions in simulation order.

    Items outside the explicit supports (variants, related) score pop * multiplier(class), with a
    class per (in intent category, brand match, tier match, drift category k, none). Counting the
    items above the target's score is then an exact search per class; the explicit supports and the
    session's own items are corrected pair by pair.
    """
    st, W = sim["state"], sim["weights"][idx]
    loc, cur, cat_i, br, ti = st.loc[idx], st.cur[idx], st.intent[idx], st.brand[idx], st.tier[idx]
    target = sim["target"][idx]
    n = len(idx)
    g_l = w.g_loc.lookup(loc)
    g_i = w.g_li.lookup(w.code_li(loc, cat_i))
    g_ib = w.g_lib.lookup(w.code_lib(loc, cat_i, br))
    g_it = w.g_lit.lookup(w.code_lit(loc, cat_i, ti))
    g_ibt = w.g_libt.lookup(w.code_libt(loc, cat_i, br, ti))
    dcat = w.drift_cat[loc, cat_i]
    dq = w.drift_q[loc, cat_i]
    g_d = w.g_li.lookup(w.code_li(np.repeat(loc[:, None], dcat.shape[1], 1), dcat))

    def mass(groups: Groups, g: np.ndarray) -> np.ndarray:
        return np.where(g >= 0, groups.mass[np.maximum(g, 0)], np.inf)

    base = W[:, POP] / mass(w.g_loc, g_l)
    a_cat = W[:, CAT] / mass(w.g_li, g_i)
    a_brand = W[:, BRAND] / mass(w.g_lib, g_ib)
    a_tier = W[:, TIER] / mass(w.g_lit, g_it)
    a_drift = W[:, DRIFT, None] * dq / mass(w.g_li, g_d)
    m_i = base + a_cat
    m_ib, m_it, m_ibt = m_i + a_brand, m_i + a_tier, m_i + a_brand + a_tier
    m_d = base[:, None] + a_drift

    def multiplier(s: np.ndarray, j: np.ndarray) -> np.ndarray:
        in_i = w.ent_cat[j] == cat_i[s]
        bm, tm = w.ent_brand[j] == br[s], w.ent_tier[j] == ti[s]
        m = np.where(in_i, np.select([bm & tm, bm, tm], [m_ibt[s], m_ib[s], m_it[s]], m_i[s]), base[s])
        for k in range(dcat.shape[1]):
            m = np.where(~in_i & (w.ent_cat[j] == dcat[s, k]) & (dq[s, k] > 0), m_d[s, k], m)
        return m

    fam_g = w.g_lf.gid[cur]
    var_den = w.g_lf.mass[fam_g] - w.pop[cur]

    def explicit(s: np.ndarray, j: np.ndarray) -> np.ndarray:
        same_fam = (w.g_lf.gid[j] == fam_g[s]) & (j != cur[s])
        e = np.where(same_fam, W[s, VAR] * w.pop[j] / np.where(var_den[s] > 0, var_den[s], np.inf), 0.0)
        rel = w.rel[cur[s]]
        hits = (rel == j[:, None]) * w.rel_w[cur[s]]
        tot = w.rel_tot[cur[s]]
        return e + W[s, REL] * hits.sum(axis=1) / np.where(tot > 0, tot, np.inf)

    all_s = np.arange(n)
    s_t = w.pop[target] * multiplier(all_s, target) + explicit(all_s, target)
    thr_val = s_t * (1 + 1e-9)
    sorted_pop = w.pop[np.argsort(w.prank)]

    def rthr(m: np.ndarray) -> np.ndarray:
        # global rank threshold: entries with pop > thr_val / m have rank >= this
        with np.errstate(divide="ignore"):
            x = np.where(m > 0, thr_val / m, np.inf)
        return np.searchsorted(sorted_pop, x, side="right")

    def cnt(groups: Groups, g: np.ndarray, m: np.ndarray) -> np.ndarray:
        return groups.count_above(g, rthr(m))

    above = cnt(w.g_loc, g_l, base) - cnt(w.g_li, g_i, base)
    for k in range(dcat.shape[1]):
        gk = np.where(dq[:, k] > 0, g_d[:, k], -1)
        above += cnt(w.g_li, gk, m_d[:, k]) - cnt(w.g_li, gk, base)
    above += (cnt(w.g_li, g_i, m_i) - cnt(w.g_lib, g_ib, m_i) - cnt(w.g_lit, g_it, m_i)
              + cnt(w.g_libt, g_ibt, m_i))
    above += cnt(w.g_lib, g_ib, m_ib) - cnt(w.g_libt, g_ibt, m_ib)
    above += cnt(w.g_lit, g_it, m_it) - cnt(w.g_libt, g_ibt, m_it)
    above += cnt(w.g_libt, g_ibt, m_ibt)

    # Pairs: explicit supports (family siblings, related items) and the session's own items.
    fs = w.g_lf.size[fam_g]
    s_fam = np.repeat(all_s, fs)
    j_fam = w.g_lf.order[np.repeat(w.g_lf.start[fam_g], fs)
                         + (np.arange(fs.sum()) - np.repeat(np.cumsum(fs) - fs, fs))]
    rel = w.rel[cur]
    s_rel = np.repeat(all_s, rel.shape[1])[rel.ravel() >= 0]
    j_rel = rel.ravel()[rel.ravel() >= 0]
    n_prev = sim["n_prev"][idx]
    s_own = np.repeat(all_s, n_prev)
    j_own = sim["flat"][np.repeat(sim["offsets"][idx], n_prev)
                        + (np.arange(n_prev.sum()) - np.repeat(np.cumsum(n_prev) - n_prev, n_prev))]
    ne = len(w.pop)
    own_codes = sorted_unique(s_own * ne + j_own)
    codes = sorted_unique(np.concatenate([s_fam * ne + j_fam, s_rel * ne + j_rel, own_codes]))
    ps, pj = codes // ne, codes % ne
    mult = multiplier(ps, pj)
    cls_above = w.pop[pj] > thr_val[ps] / mult
    true_above = (w.pop[pj] * mult + explicit(ps, pj) > thr_val[ps]) & ~member(own_codes, codes)
    corr = np.bincount(ps, weights=true_above.astype(np.float64) - cls_above, minlength=n)
    # cls_above must agree with the class counts: use the same comparison (pop > thr/m) as rthr.
    return 1 + above + np.rint(corr).astype(np.int64)


def target_classes(w: World, sim: dict, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the target is to the session's hidden state (``idx`` in simulation order): its class
    (one of TARGET_CLASSES) and, for related items, its position in the current item's related list
    (1 = the heaviest, 0 otherwise).

    The class is the target's relation, checked in this order: in the current item's related list,
    a sibling variant of it, in the intent category, none of these. It is not the mixture component
    that drew it (a category draw can land on a related item); the process does not record that.
    """
    st = sim["state"]
    cur, target = st.cur[idx], sim["target"][idx]
    is_rel = w.rel[cur] == target[:, None]
    related_rank = np.where(is_rel.any(axis=1), is_rel.argmax(axis=1) + 1, 0)
    variant = (w.g_lf.gid[target] == w.g_lf.gid[cur]) & (target != cur)
    category = w.ent_cat[target] == st.intent[idx]
    cls = np.select([related_rank == 1, related_rank == 2, related_rank >= 3, variant, category],
                    [0, 1, 2, 3, 4], 5)
    return np.asarray(TARGET_CLASSES)[cls], related_rank


def ceiling(ranks: np.ndarray, locs: np.ndarray) -> dict:
    def agg(r: np.ndarray) -> dict:
        hit = r <= 100
        return {"mrr@100": float(np.where(hit, 1.0 / r, 0.0).mean()) if len(r) else 0.0,
                "recall@100": float(hit.mean()) if len(r) else 0.0, "n": int(len(r))}

    out = {"all": agg(ranks)}
    for code in np.unique(locs):
        out[LOCALES[code]] = agg(ranks[locs == code])
    return out
