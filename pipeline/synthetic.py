"""A synthetic Amazon-M2: the competition files, ground truth and the oracle ceiling, from one seed.

    python -m pipeline.generate --out data/raw        (the DVC stage; knobs in params.yaml `synthetic`)
    m2 generate --out data/raw --scale 0.02 --stats

The world (every knob lives in :class:`SyntheticConfig`):

* Products: categories -> brands -> families (one model) -> variants (colour/size). A family's
  variants get ids issued together (the same first five characters), and a share of categories
  are books with 10-digit numeric ids (leading zeros kept). Popularity is lognormal per category,
  family and variant (heavy-tailed but flatter than a pure Zipf law, so that per-locale
  popularity is a weak predictor). Each family has a price tier (0/1/2) and a brand.
* Locales: per-locale catalogue sizes are Table 2 times ``scale``. Families belong to pools that
  fix their locales: DE+UK+JP, DE+UK, DE, UK, JP, and one local pool per small locale; each small
  locale also carries DE families (weighted by popularity^small_pick_bias) for ``overlap_small_de`` of its
  catalogue. Titles are built from per-locale words, so one ASIN has a different title per locale.
* Sessions: a Markov process over a hidden state (current item, intent category, the session's
  brand and price tier, items seen). The next item comes from a mixture of consecutive re-view,
  re-view of an earlier item, sibling variant, the current item's related items (product-level,
  so they transfer across locales), the intent category by popularity, the same restricted to
  the session's brand or tier, drift to a related category, and locale popularity. The target
  uses the same mixture with the re-view components dropped and the session's items excluded
  (rejection sampling, which is exactly "renormalised over the other items").
* Task 3 targets are new products: a new variant of the drawn next item's family (or a new
  family in its category); only their titles are written (gt_task3).
* The oracle ranks every catalogue item of the locale by the exact next-item probability given
  the hidden state and reports MRR@100 / Recall@100 of the drawn target (gt/ceiling.json). For
  tasks 1 and 2, gt/oracle_task{T}_phase{P}.csv gives per ground-truth row the target's class
  (its relation to the hidden state, ``pipeline.raw.TARGET_CLASSES``) and its oracle rank, so the
  leaderboard can show where a method loses against the oracle.

Everything is vectorised numpy over sessions, one step of the process at a time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.io import atomic_path, peak_rss_mib, write_json
from pipeline.paper import PRODUCTS, TASK1_TEST, TASK2_TEST_TOTAL, TASK3_TEST_TOTAL, TRAIN_SESSIONS
from pipeline.raw import LOCALES, TARGET_CLASSES, gt_file, oracle_file, test_file

log = logging.getLogger(__name__)

DE, JP, UK, ES, FR, IT = (LOCALES.index(x) for x in ("DE", "JP", "UK", "ES", "FR", "IT"))
SMALL = (ES, FR, IT)
# Mixture components of the next-item process.
DUP, BACK, VAR, REL, CAT, BRAND, TIER, DRIFT, POP = range(9)
N_COMP = 9
N_COLOURS, N_SIZES, N_MATERIALS, MODEL_POOL = 16, 10, 10, 40
BOOK_FAMILY_MAX = 3


@dataclass(frozen=True)
class SyntheticConfig:
    """params.yaml section ``synthetic``: every knob of the generated world."""

    items_per_category: int = 600       # products per category in DE (sets the category count)
    brands_per_category: int = 12
    brand_pool_per_category: float = 3.0  # global brands = categories x this (brands span categories)
    book_share: float = 0.08            # share of categories that are books (numeric ids, authors)
    family_size_mean: float = 2.5       # variants per family (geometric, capped)
    family_size_max: int = 12
    category_sigma: float = 0.3         # lognormal spread of popularity: category, family, variant, locale
    family_sigma: float = 0.5
    variant_sigma: float = 0.4
    locale_sigma: float = 0.3
    # |UK and DE| / |UK|; with the next two this gives ~1.41M ASINs at scale 1
    overlap_uk_de: float = 0.15
    overlap_jp: float = 0.02            # |JP and DE and UK| / |JP|
    overlap_small_de: float = 0.4       # |ES and DE| / |ES| (same for FR, IT)
    small_pick_bias: float = 0.0        # small locales pick DE families with weight popularity^bias
    n_related: int = 8                  # related products per product (the transitions co-visitation learns)
    related_same_category: float = 0.6
    related_popular: float = 0.2        # share of related products drawn by popularity (the rest uniformly)
    related_decay: float = 0.4         # weight of the k-th related product: decay^k
    related_categories: int = 3         # drift targets per category
    # Next-item mixture (weights, renormalised over the components available at a step).
    p_duplicate: float = 0.075
    p_revisit: float = 0.16
    p_variant: float = 0.2
    p_related: float = 0.52
    p_category: float = 0.05
    p_brand: float = 0.03
    p_tier: float = 0.02
    p_drift: float = 0.04
    p_popular: float = 0.01
    # Session length with target: 2 + negative binomial, plus a Pareto tail.
    length_extra_mean: float = 2.1
    length_dispersion: float = 2.0
    length_tail_share: float = 0.012
    length_tail_min: float = 9.0
    length_tail_alpha: float = 1.4
    length_max: int = 400
    # task-3 target: new variant of the next item's family (else a new family)
    task3_new_variant: float = 0.8
    target_max_tries: int = 64          # rejection rounds before falling back to locale popularity

    def __post_init__(self) -> None:
        weights = self.mixture()
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("synthetic: mixture weights p_* must be >= 0 with a positive sum")
        overlaps = (self.overlap_small_de, self.overlap_uk_de, self.overlap_jp)
        if not all(0 <= x <= 1 for x in overlaps):
            raise ValueError("synthetic: overlaps must lie in [0, 1]")
        if self.family_size_max < 1 or self.n_related < 1 or self.related_categories < 1:
            raise ValueError("synthetic: family_size_max, n_related, related_categories must be >= 1")

    def mixture(self) -> np.ndarray:
        return np.array([self.p_duplicate, self.p_revisit, self.p_variant, self.p_related, self.p_category,
                         self.p_brand, self.p_tier, self.p_drift, self.p_popular], dtype=np.float64)


def scaled_counts(scale: float) -> dict[str, dict[str, int]]:
    """Rows per locale of every file at ``scale`` (at least one row per locale and file)."""
    def sc(table: dict[str, float]) -> dict[str, int]:
        return {loc: max(1, int(round(scale * v))) for loc, v in table.items()}

    small_train = {loc: TRAIN_SESSIONS[loc] for loc in ("ES", "FR", "IT")}
    task2 = {loc: TASK2_TEST_TOTAL * v / sum(small_train.values()) for loc, v in small_train.items()}
    task3 = {loc: TASK3_TEST_TOTAL * v / sum(TRAIN_SESSIONS.values()) for loc, v in TRAIN_SESSIONS.items()}
    out = {"products": sc(PRODUCTS), "train": sc(TRAIN_SESSIONS)}
    for phase in (1, 2):
        out[f"task1_phase{phase}"] = sc(TASK1_TEST)
        out[f"task2_phase{phase}"] = sc(task2)
        out[f"task3_phase{phase}"] = sc(task3)
    return out


# --------------------------------------------------------------------------------------------
# Groups: entries bucketed by a key (locale, category, ...), sorted by popularity inside a group.
# --------------------------------------------------------------------------------------------

class _Groups:
    """Entries grouped by an int64 code; popularity-weighted sampling and exact "count above".

    ``prank`` is every entry's rank in the global ascending popularity order, so "items of group g
    with pop > x" is an exact integer search (no float key mixing).
    """

    def __init__(self, codes: np.ndarray, pop: np.ndarray, prank: np.ndarray):
        self.codes, gid = np.unique(codes, return_inverse=True)
        n = len(pop)
        self.gid = gid.astype(np.int64)
        self.order = np.lexsort((prank, self.gid))
        counts = np.bincount(self.gid, minlength=len(self.codes))
        self.end = np.cumsum(counts)
        self.start = self.end - counts
        self.size = counts
        self.cum = np.concatenate([[0.0], np.cumsum(pop[self.order])])
        self.mass = self.cum[self.end] - self.cum[self.start]
        self.keys = self.gid[self.order] * n + prank[self.order]
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[self.order] = np.arange(n)
        self.n = n
        self.pop = pop

    def lookup(self, code: np.ndarray) -> np.ndarray:
        """Group index of each code, -1 where the group is empty."""
        if len(self.codes) == 0:
            return np.full(len(code), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.codes, code), len(self.codes) - 1)
        return np.where(self.codes[i] == code, i, -1)

    def sample(self, g: np.ndarray, u: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """One entry of each group ``g`` drawn proportionally to popularity (optionally not ``exclude``)."""
        start, end = self.start[g], self.end[g]
        base = self.cum[start]
        if exclude is None:
            v = base + u * self.mass[g]
        else:
            pe = self.pop[exclude]
            v = base + u * (self.mass[g] - pe)
            v = np.where(v >= self.cum[self.pos[exclude]], v + pe, v)
        i = np.clip(np.searchsorted(self.cum, v, side="right") - 1, start, end - 1)
        out = self.order[i]
        if exclude is not None:  # float edge: never return the excluded entry
            bad = out == exclude
            if bad.any():
                alt = np.where(i[bad] + 1 < end[bad], i[bad] + 1, i[bad] - 1)
                out[bad] = self.order[np.clip(alt, start[bad], end[bad] - 1)]
        return out

    def sample_uniform(self, g: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One entry of each group ``g``, every member equally likely."""
        return self.order[np.minimum(self.start[g] + (u * self.size[g]).astype(np.int64), self.end[g] - 1)]

    def count_above(self, g: np.ndarray, rank_threshold: np.ndarray) -> np.ndarray:
        """Number of entries of group ``g`` whose popularity rank is >= ``rank_threshold`` (0 where g < 0)."""
        ok = g >= 0
        gg = np.where(ok, g, 0)
        c = self.end[gg] - np.searchsorted(self.keys, gg * self.n + rank_threshold, side="left")
        return np.where(ok, np.clip(c, 0, None), 0)


# --------------------------------------------------------------------------------------------
# The world: products, locale entries, vocabulary.
# --------------------------------------------------------------------------------------------

@dataclass
class _World:
    n_cat: int
    n_brand: int
    n_fam: int
    # families
    fam_cat: np.ndarray
    fam_brand: np.ndarray
    fam_tier: np.ndarray
    fam_model: np.ndarray     # (n_fam, 2) model-word concepts
    fam_size: np.ndarray
    fam_code: np.ndarray      # model code string or ""
    fam_author: np.ndarray
    fam_price: np.ndarray
    is_book_cat: np.ndarray
    # products
    prod_fam: np.ndarray
    prod_id: np.ndarray       # str
    prod_colour: np.ndarray
    prod_size: np.ndarray
    # entries (product, locale)
    ent_prod: np.ndarray
    ent_loc: np.ndarray
    ent_cat: np.ndarray
    ent_brand: np.ndarray
    ent_tier: np.ndarray
    ent_fam: np.ndarray
    pop: np.ndarray
    prank: np.ndarray
    rel: np.ndarray           # (n_ent, K) related entry (same locale) or -1
    rel_w: np.ndarray         # (n_ent, K) weights, 0 where rel == -1
    rel_tot: np.ndarray
    drift_cat: np.ndarray     # (6, n_cat, R) related category (or 0 with q 0)
    drift_q: np.ndarray       # (6, n_cat, R)
    words: np.ndarray         # (6, n_concepts) per-locale words
    brand_names: np.ndarray
    g_loc: _Groups
    g_li: _Groups
    g_lib: _Groups
    g_lit: _Groups
    g_libt: _Groups
    g_lf: _Groups

    def code_li(self, loc, cat):
        return loc.astype(np.int64) * self.n_cat + cat

    def code_lib(self, loc, cat, brand):
        return self.code_li(loc, cat) * self.n_brand + brand

    def code_lit(self, loc, cat, tier):
        return self.code_li(loc, cat) * 3 + tier

    def code_libt(self, loc, cat, brand, tier):
        return self.code_lib(loc, cat, brand) * 3 + tier


_LATIN = {
    "DE": (["b", "d", "f", "g", "h", "k", "l", "m", "n", "r", "s", "t", "w", "z", "sch", "st", "pf", "kr"],
           ["a", "e", "i", "o", "u", "ei", "au", "ü", "ä", "ie"], ["", "n", "r", "l", "t", "ch", "ck"]),
    "UK": (["b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "sh", "th", "br", "cl"],
           ["a", "e", "i", "o", "u", "ea", "oo", "ay"], ["", "n", "r", "l", "t", "ck", "ng", "s"]),
    "ES": (["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ll", "ch", "ñ"],
           ["a", "e", "i", "o", "u", "ia", "ue"], ["", "n", "r", "s", "l"]),
    "FR": (["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "qu", "gr"],
           ["a", "e", "i", "o", "ou", "eau", "é", "è", "ai"], ["", "n", "r", "s", "t", "x"]),
    "IT": (["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "z", "gl", "sc"],
           ["a", "e", "i", "o", "u", "ia", "io"], ["", "", "n", "r", "l"]),
}
_KANA = list("アイウエオカキクケコサシスセソタチツテトナニヌネノ"
             "ハヒフヘホマミムメモヤユヨラリルレロワン") + ["ー"]


def _words(rng: np.random.Generator, locale: str, n: int) -> np.ndarray:
    """``n`` pseudo-words in a locale's letters (katakana for JP), 2 or 3 syllables."""
    if locale == "JP":
        kana = np.array(_KANA)
        parts = kana[rng.integers(0, len(kana), (n, 4))]
        three = rng.random(n) < 0.5
        w = np.char.add(np.char.add(parts[:, 0], parts[:, 1]), parts[:, 2])
        return np.where(three, np.char.add(w, parts[:, 3]), w).astype(object)
    cons, vow, coda = (np.array(x) for x in _LATIN[locale])
    syl = [np.char.add(cons[rng.integers(0, len(cons), n)], vow[rng.integers(0, len(vow), n)])
           for _ in range(3)]
    w = np.char.add(np.char.add(syl[0], syl[1]), coda[rng.integers(0, len(coda), n)])
    three = rng.random(n) < 0.35
    w = np.where(three, np.char.add(syl[2], w), w)
    return w.astype(object)


def _base36(values: np.ndarray, width: int) -> np.ndarray:
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    digits = np.empty((len(values), width), dtype="<U1")
    v = values.astype(np.int64).copy()
    for k in range(width - 1, -1, -1):
        digits[:, k] = alphabet[v % 36]
        v //= 36
    return np.ascontiguousarray(digits).view(f"<U{width}").ravel()


def _product_ids(rng: np.random.Generator, prefix: np.ndarray, book: np.ndarray) -> np.ndarray:
    """Distinct 10-character ids: ASINs 'B0' + prefix (3) + random (5) in base 36, or 10-digit
    book numbers prefix (5 digits, leading zeros kept) + random (5)."""
    n = len(prefix)
    ids = np.empty(n, dtype="<U10")
    todo = np.arange(n)
    while len(todo):
        suffix = rng.integers(0, 36 ** 5, len(todo))
        asin = np.char.add(np.char.add("B0", _base36(prefix[todo], 3)), _base36(suffix, 5))
        isbn = np.char.add(np.char.zfill(prefix[todo].astype(str), 5),
                           np.char.zfill((suffix % 10 ** 5).astype(str), 5))
        ids[todo] = np.where(book[todo], isbn, asin)
        _, first = np.unique(ids, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        todo = np.flatnonzero(dup)
    return ids


def _families(rng: np.random.Generator, target: int, mean: float, cap: int,
              is_book_cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(size, category) of families holding exactly ``target`` products (the last one trimmed).

    Book families have at most BOOK_FAMILY_MAX editions.
    """
    sizes, cats = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if target <= 0:
        return sizes, cats
    while sizes.sum() < target:
        n = int(target / mean) + 16
        cat = rng.integers(0, len(is_book_cat), n)
        size = np.minimum(rng.geometric(1.0 / mean, n), np.where(is_book_cat[cat], BOOK_FAMILY_MAX, cap))
        sizes, cats = np.concatenate([sizes, size]), np.concatenate([cats, cat])
    cum = np.cumsum(sizes)
    n = int(np.searchsorted(cum, target)) + 1
    sizes, cats = sizes[:n].copy(), cats[:n]
    sizes[-1] -= cum[n - 1] - target
    return sizes, cats


def _build_world(rng: np.random.Generator, scale: float, cfg: SyntheticConfig) -> _World:
    counts = scaled_counts(scale)["products"]
    n_loc = len(LOCALES)
    n_cat = max(8, int(round(counts["DE"] / cfg.items_per_category)))
    n_brand = max(cfg.brands_per_category, int(round(n_cat * cfg.brand_pool_per_category)))
    is_book_cat = np.zeros(n_cat, dtype=bool)
    is_book_cat[: max(1, int(round(cfg.book_share * n_cat)))] = True
    cat_weight = rng.lognormal(0.0, cfg.category_sigma, n_cat)
    cat_brands = rng.integers(0, n_brand, (n_cat, cfg.brands_per_category))
    cat_price = rng.lognormal(3.0, 0.8, n_cat)
    # Related categories (drift targets and cross-category related products): distinct, never itself.
    n_rc = min(cfg.related_categories, n_cat - 1)
    rc = (np.arange(n_cat)[:, None] + 1
          + np.argsort(rng.random((n_cat, n_cat - 1)), axis=1)[:, :n_rc]) % n_cat
    rc_q = 0.5 ** np.arange(n_rc)
    rc_q = rc_q / rc_q.sum()

    # Family pools: (target products, locales, primary locale).
    g_share = int(round(cfg.overlap_jp * counts["JP"]))
    du = max(0, int(round(cfg.overlap_uk_de * counts["UK"])) - g_share)
    pools = [(g_share, (DE, UK, JP), DE), (du, (DE, UK), DE), (counts["DE"] - g_share - du, (DE,), DE),
             (counts["UK"] - g_share - du, (UK,), UK), (counts["JP"] - g_share, (JP,), JP)]
    small_from_de = {s: int(round(cfg.overlap_small_de * counts[LOCALES[s]])) for s in SMALL}
    pools += [(counts[LOCALES[s]] - small_from_de[s], (s,), s) for s in SMALL]
    sizes, cats, fam_pool = [], [], []
    for p, (target, _, _) in enumerate(pools):
        size, cat = _families(rng, max(0, target), cfg.family_size_mean, cfg.family_size_max, is_book_cat)
        sizes.append(size)
        cats.append(cat)
        fam_pool.append(np.full(len(size), p))
    fam_size = np.concatenate(sizes)
    fam_cat = np.concatenate(cats)
    fam_pool = np.concatenate(fam_pool)
    n_fam = len(fam_size)
    book = is_book_cat[fam_cat]
    fam_brand = cat_brands[fam_cat, np.minimum(rng.geometric(0.25, n_fam) - 1, cfg.brands_per_category - 1)]
    z = rng.standard_normal(n_fam)
    fam_tier = np.digitize(z, [-0.43, 0.43])  # price terciles of a category
    fam_price = cat_price[fam_cat] * np.exp(0.6 * z)
    fam_pop = cat_weight[fam_cat] * rng.lognormal(0.0, cfg.family_sigma, n_fam)
    fam_model = (n_cat + fam_cat[:, None] * MODEL_POOL + rng.integers(0, MODEL_POOL, (n_fam, 2)))
    letters = _base36(rng.integers(10 * 36, 36 * 36, n_fam), 2)
    fam_code = np.where(rng.random(n_fam) < 0.5,
                        np.char.add(np.char.add(letters, "-"), rng.integers(100, 999, n_fam).astype(str)), "")
    # Ids issued together: a family's variants share the first five characters ('B0' + 3 base-36
    # digits, or 5 digits for books); other families share them only by chance (1 in 46,656).
    fam_prefix = np.where(book, rng.integers(0, 10 ** 5, n_fam), rng.integers(0, 36 ** 3, n_fam))

    # Locale membership per family: the pool's locales, plus DE families picked by small locales.
    fam_locs = np.zeros((n_fam, n_loc), dtype=bool)
    for p, (_, locs, _) in enumerate(pools):
        fam_locs[np.ix_(fam_pool == p, list(locs))] = True
    fam_primary = np.array([pools[p][2] for p in range(len(pools))])[fam_pool]
    de_fams = np.flatnonzero(fam_locs[:, DE])
    partial = {}  # small locale -> (family, variants kept) of the trimmed last pick
    for s in SMALL:
        key = np.log(rng.random(len(de_fams))) / np.power(fam_pop[de_fams], cfg.small_pick_bias)
        picked = de_fams[np.argsort(-key)]
        cum = np.cumsum(fam_size[picked])
        n = int(np.searchsorted(cum, small_from_de[s])) + 1
        picked = picked[:n]
        fam_locs[picked, s] = True
        partial[s] = (picked[-1], fam_size[picked[-1]] - (cum[n - 1] - small_from_de[s])) if n else None

    # Products: one row per variant.
    prod_fam = np.repeat(np.arange(n_fam), fam_size)
    n_prod = len(prod_fam)
    variant = np.arange(n_prod) - np.repeat(np.cumsum(fam_size) - fam_size, fam_size)
    prod_pop = fam_pop[prod_fam] * rng.lognormal(0.0, cfg.variant_sigma, n_prod)
    prod_id = _product_ids(rng, fam_prefix[prod_fam], book[prod_fam])
    prod_colour = rng.integers(0, N_COLOURS, n_prod)
    prod_size = rng.integers(0, N_SIZES, n_prod)

    # Entries: (product, locale) pairs.
    ent_prod, ent_loc = [], []
    for loc in range(n_loc):
        in_loc = fam_locs[prod_fam, loc]
        if loc in SMALL and partial.get(loc) is not None:
            f, keep = partial[loc]
            in_loc &= ~((prod_fam == f) & (variant >= keep))
        idx = np.flatnonzero(in_loc)
        ent_prod.append(idx)
        ent_loc.append(np.full(len(idx), loc))
    ent_prod = np.concatenate(ent_prod)
    ent_loc = np.concatenate(ent_loc).astype(np.int64)
    n_ent = len(ent_prod)
    ent_fam = prod_fam[ent_prod]
    pop = prod_pop[ent_prod] * rng.lognormal(0.0, cfg.locale_sigma, n_ent)
    pop = pop / (pop.max() * (1 + 1e-9))
    prank = np.empty(n_ent, dtype=np.int64)
    prank[np.argsort(pop, kind="stable")] = np.arange(n_ent)
    ent_cat, ent_brand, ent_tier = fam_cat[ent_fam], fam_brand[ent_fam], fam_tier[ent_fam]

    g_loc = _Groups(ent_loc, pop, prank)
    code_li = ent_loc * n_cat + ent_cat
    g_li = _Groups(code_li, pop, prank)
    g_lib = _Groups(code_li * n_brand + ent_brand, pop, prank)
    g_lit = _Groups(code_li * 3 + ent_tier, pop, prank)
    g_libt = _Groups((code_li * n_brand + ent_brand) * 3 + ent_tier, pop, prank)
    g_lf = _Groups(ent_loc * n_fam + ent_fam, pop, prank)

    # Drift table per (locale, category): related categories present in the locale, renormalised.
    li_exists = (g_li.lookup(np.arange(n_loc * n_cat)) >= 0).reshape(n_loc, n_cat)
    drift_cat = np.broadcast_to(rc, (n_loc, n_cat, n_rc)).copy()
    drift_q = (np.broadcast_to(rc_q, (n_loc, n_cat, n_rc))
               * li_exists[np.arange(n_loc)[:, None, None], drift_cat])
    tot = drift_q.sum(axis=2, keepdims=True)
    drift_q = np.divide(drift_q, tot, out=np.zeros_like(drift_q), where=tot > 0)

    # Related products, product level (so transitions learnt in DE hold in ES for shared ASINs),
    # drawn by popularity from the product's primary locale, same or related category.
    K = cfg.n_related
    p_primary = fam_primary[prod_fam]
    p_cat = np.repeat(fam_cat[prod_fam][:, None], K, axis=1)
    other = rc[p_cat, rng.integers(0, n_rc, (n_prod, K))]
    rel_cat = np.where(rng.random((n_prod, K)) < cfg.related_same_category, p_cat, other)
    g = g_li.lookup(np.repeat(p_primary[:, None], K, axis=1) * n_cat + rel_cat)
    g = np.where(g >= 0, g, g_li.lookup(np.repeat(p_primary[:, None], K, axis=1) * n_cat + p_cat))
    flat_g = g.ravel()
    ok = flat_g >= 0
    rel_prod = np.full(n_prod * K, -1, dtype=np.int64)
    by_pop = rng.random(int(ok.sum())) < cfg.related_popular
    u = rng.random(int(ok.sum()))
    rel_prod[ok] = ent_prod[np.where(by_pop, g_li.sample(flat_g[ok], u), g_li.sample_uniform(flat_g[ok], u))]
    rel_prod = rel_prod.reshape(n_prod, K)
    rel_prod[rel_prod == np.arange(n_prod)[:, None]] = -1
    # Map to entries of each entry's own locale.
    ent_code = ent_prod * n_loc + ent_loc
    ent_sorter = np.argsort(ent_code)
    rp = rel_prod[ent_prod]
    want = rp * n_loc + ent_loc[:, None]
    i = np.minimum(np.searchsorted(ent_code, want, sorter=ent_sorter), n_ent - 1)
    hit = (ent_code[ent_sorter[i]] == want) & (rp >= 0)
    rel = np.where(hit, ent_sorter[i], -1)
    # Slots whose product is not sold in this locale get a locale-specific related item instead,
    # so shared products keep transitions in small locales (learnt there, not from DE).
    miss = np.flatnonzero(~hit.ravel())
    e_miss = miss // K
    other = rc[ent_cat[e_miss], rng.integers(0, n_rc, len(miss))]
    same = rng.random(len(miss)) < cfg.related_same_category
    g = g_li.lookup(ent_loc[e_miss] * n_cat + np.where(same, ent_cat[e_miss], other))
    g = np.where(g >= 0, g, g_li.lookup(ent_loc[e_miss] * n_cat + ent_cat[e_miss]))
    u = rng.random(len(miss))
    fill = np.where(rng.random(len(miss)) < cfg.related_popular, g_li.sample(g, u), g_li.sample_uniform(g, u))
    rel.ravel()[miss] = np.where(fill == e_miss, -1, fill)
    rel_w = np.where(rel >= 0, cfg.related_decay ** np.arange(K)[None, :], 0.0)

    n_concepts = n_cat + n_cat * MODEL_POOL + N_COLOURS + N_SIZES + N_MATERIALS
    words = np.stack([_words(rng, loc, n_concepts) for loc in LOCALES])
    brand_names = np.char.capitalize(_words(rng, "UK", n_brand).astype(str)).astype(object)
    fam_author = np.where(book,
                          np.char.add(np.char.add(np.char.capitalize(_words(rng, "DE", n_fam).astype(str)),
                                                  " "),
                                            np.char.capitalize(_words(rng, "UK", n_fam).astype(str))), "")
    return _World(
        n_cat=n_cat, n_brand=n_brand, n_fam=n_fam, fam_cat=fam_cat, fam_brand=fam_brand, fam_tier=fam_tier,
        fam_model=fam_model, fam_size=fam_size, fam_code=fam_code, fam_author=fam_author, fam_price=fam_price,
        is_book_cat=is_book_cat, prod_fam=prod_fam, prod_id=prod_id, prod_colour=prod_colour,
        prod_size=prod_size, ent_prod=ent_prod, ent_loc=ent_loc, ent_cat=ent_cat, ent_brand=ent_brand,
        ent_tier=ent_tier, ent_fam=ent_fam, pop=pop, prank=prank, rel=rel, rel_w=rel_w,
        rel_tot=rel_w.sum(axis=1), drift_cat=drift_cat, drift_q=drift_q, words=words, brand_names=brand_names,
        g_loc=g_loc, g_li=g_li, g_lib=g_lib, g_lit=g_lit, g_libt=g_libt, g_lf=g_lf)


# --------------------------------------------------------------------------------------------
# Titles and the product table.
# --------------------------------------------------------------------------------------------

def _str(values: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(values, dtype=str).tolist(), dtype=pl.String)


def _titles(w: _World, fam: np.ndarray, loc: np.ndarray, colour: np.ndarray, size: np.ndarray,
            model: np.ndarray | None = None) -> pl.Series:
    """Titles in each row's locale: brand, the family's model words, category noun, colour, size."""
    model = w.fam_model[fam] if model is None else model
    cat = w.fam_cat[fam]
    wd = w.words
    colour_c = w.n_cat * (1 + MODEL_POOL) + colour
    size_c = w.n_cat * (1 + MODEL_POOL) + N_COLOURS + size
    frame = pl.DataFrame({
        "brand": _str(w.brand_names[w.fam_brand[fam]]),
        "m1": _str(wd[loc, model[:, 0]]),
        "m2": _str(wd[loc, model[:, 1]]),
        "noun": _str(wd[loc, cat]),
        "code": _str(w.fam_code[fam]),
        "colour": _str(wd[loc, colour_c]),
        "size": _str(wd[loc, size_c]),
        "book": w.is_book_cat[cat],
    })
    m1 = pl.col("m1").str.to_titlecase()
    general = pl.concat_str([pl.col("brand"), pl.lit(" "), m1, pl.lit(" "), pl.col("m2"), pl.lit(" "),
                             pl.col("noun"),
                             pl.when(pl.col("code") != "").then(pl.lit(" ") + pl.col("code"))
                             .otherwise(pl.lit("")),
                             pl.lit(", "), pl.col("colour"), pl.lit(", "), pl.col("size")])
    book = pl.concat_str([m1, pl.lit(" "), pl.col("m2"), pl.lit(": "), pl.col("noun").str.to_titlecase(),
                          pl.lit(" ("), pl.col("size"), pl.lit(")")])
    return frame.select(pl.when(pl.col("book")).then(book).otherwise(general).alias("title")).to_series()


def _products_frame(rng: np.random.Generator, w: _World) -> pl.DataFrame:
    """products_train.csv rows: one per (ASIN, locale), grouped by locale, the 11 real columns."""
    loc, prod = w.ent_loc, w.ent_prod
    fam = w.prod_fam[prod]
    n = len(prod)
    book = w.is_book_cat[w.fam_cat[fam]]
    titles = _titles(w, fam, loc, w.prod_colour[prod], w.prod_size[prod])
    jp = loc == JP
    price = w.fam_price[fam] * np.exp(0.05 * rng.standard_normal(n)) * np.where(jp, 150.0, 1.0)
    price = np.where(jp, np.round(price, 0), np.round(price, 2))
    wd = w.words
    base = w.n_cat * (1 + MODEL_POOL)
    colour = wd[loc, base + w.prod_colour[prod]]
    size = wd[loc, base + N_COLOURS + w.prod_size[prod]]
    material = wd[loc, base + N_COLOURS + N_SIZES + rng.integers(0, N_MATERIALS, n)]
    r = rng.random((n, 6))

    def text(values: np.ndarray, null: np.ndarray) -> pl.Series:
        out = pl.Series(np.asarray(values, dtype=str).tolist(), dtype=pl.String)
        return out.scatter(np.flatnonzero(null), None) if null.any() else out

    frame = pl.DataFrame({
        "id": pl.Series(w.prod_id[prod], dtype=pl.String),
        "locale": pl.Series(np.array(LOCALES)[loc], dtype=pl.String),
        "title": titles,
        "price": pl.Series(np.where(r[:, 0] < 0.05, np.nan, price)).fill_nan(None),
        "brand": text(w.brand_names[w.fam_brand[fam]], book | (r[:, 1] < 0.1)),
        "color": text(colour, book | (r[:, 2] < 0.2)),
        "size": text(size, r[:, 3] < 0.5),
        "model": text(w.fam_code[fam], w.fam_code[fam] == ""),
        "material": text(material, book | (r[:, 4] < 0.6)),
        "author": text(w.fam_author[fam], ~book),
    })
    # A few multi-line descriptions, like the real file's.
    desc = pl.concat_str([pl.col("title"), pl.lit("\n"), pl.col("brand").fill_null("")])
    return frame.with_columns(desc=pl.when(pl.Series(r[:, 5] < 0.05)).then(desc).otherwise(None))


# --------------------------------------------------------------------------------------------
# Sessions.
# --------------------------------------------------------------------------------------------

@dataclass
class _State:
    loc: np.ndarray
    cur: np.ndarray
    intent: np.ndarray
    brand: np.ndarray
    tier: np.ndarray


def _weights(w: _World, st: _State, base: np.ndarray, t: int | None) -> np.ndarray:
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


def _step(rng: np.random.Generator, w: _World, st: _State, wt: np.ndarray, flat: np.ndarray,
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


def _lengths(rng: np.random.Generator, n: int, cap: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    """Session lengths WITH the target (>= 2): 2 + negative binomial, a Pareto tail, capped."""
    r = cfg.length_dispersion
    body = 2 + rng.negative_binomial(r, r / (r + cfg.length_extra_mean), n)
    tail = 2 + np.floor(cfg.length_tail_min * (1 + rng.pareto(cfg.length_tail_alpha, n))).astype(np.int64)
    length = np.where(rng.random(n) < cfg.length_tail_share, tail, body)
    return np.clip(length, 2, cap)


def _member(codes_sorted: np.ndarray, query: np.ndarray) -> np.ndarray:
    if len(codes_sorted) == 0:
        return np.zeros(len(query), dtype=bool)
    i = np.minimum(np.searchsorted(codes_sorted, query), len(codes_sorted) - 1)
    return codes_sorted[i] == query


def _simulate(rng: np.random.Generator, w: _World, loc: np.ndarray, length: np.ndarray,
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
    st = _State(loc=loc_s, cur=first, intent=w.ent_cat[first], brand=w.ent_brand[first],
                tier=w.ent_tier[first])
    max_prev = int(n_prev.max()) if n else 0
    for t in range(1, max_prev):
        k = int(np.searchsorted(-n_prev, -t, side="left"))  # sessions with n_prev > t
        if k == 0:
            break
        sub = _State(st.loc[:k], st.cur[:k], st.intent[:k], st.brand[:k], st.tier[:k])
        nxt, intent = _step(rng, w, sub, _weights(w, sub, base, t), flat, offsets[:k], t)
        flat[offsets[:k] + t] = nxt
        st.cur[:k], st.intent[:k] = nxt, intent
    # Target: same mixture without re-views, session items excluded (rejection = renormalisation).
    sess_of = np.repeat(np.arange(n), n_prev)
    seen = np.unique(sess_of * len(w.pop) + flat)
    wt = _weights(w, st, base, None)
    target = np.full(n, -1, dtype=np.int64)
    pending = np.arange(n)
    for _ in range(cfg.target_max_tries):
        if len(pending) == 0:
            break
        sub = _State(st.loc[pending], st.cur[pending], st.intent[pending], st.brand[pending],
                     st.tier[pending])
        nxt, _ = _step(rng, w, sub, wt[pending], flat, offsets[pending], 0)
        ok = ~_member(seen, pending * len(w.pop) + nxt)
        target[pending[ok]] = nxt[ok]
        pending = pending[~ok]
    while len(pending):  # the mixture is (almost) exhausted by the session: locale popularity
        nxt = w.g_loc.sample(w.g_loc.lookup(st.loc[pending]), rng.random(len(pending)))
        ok = ~_member(seen, pending * len(w.pop) + nxt)
        target[pending[ok]] = nxt[ok]
        pending = pending[~ok]
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    return {"order": order, "inv": inv, "flat": flat, "offsets": offsets, "n_prev": n_prev, "target": target,
            "state": st, "weights": wt}


# --------------------------------------------------------------------------------------------
# The oracle: exact rank of the target under the true next-item distribution.
# --------------------------------------------------------------------------------------------

def _oracle_ranks(w: _World, sim: dict, idx: np.ndarray) -> np.ndarray:
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

    def mass(groups: _Groups, g: np.ndarray) -> np.ndarray:
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

    def cnt(groups: _Groups, g: np.ndarray, m: np.ndarray) -> np.ndarray:
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
    own_codes = np.unique(s_own * ne + j_own)
    codes = np.unique(np.concatenate([s_fam * ne + j_fam, s_rel * ne + j_rel, own_codes]))
    ps, pj = codes // ne, codes % ne
    mult = multiplier(ps, pj)
    cls_above = w.pop[pj] > thr_val[ps] / mult
    true_above = (w.pop[pj] * mult + explicit(ps, pj) > thr_val[ps]) & ~_member(own_codes, codes)
    corr = np.bincount(ps, weights=true_above.astype(np.float64) - cls_above, minlength=n)
    # cls_above must agree with the class counts: use the same comparison (pop > thr/m) as rthr.
    return 1 + above + np.rint(corr).astype(np.int64)


def _target_classes(w: _World, sim: dict, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _ceiling(ranks: np.ndarray, locs: np.ndarray) -> dict:
    def agg(r: np.ndarray) -> dict:
        hit = r <= 100
        return {"mrr@100": float(np.where(hit, 1.0 / r, 0.0).mean()) if len(r) else 0.0,
                "recall@100": float(hit.mean()) if len(r) else 0.0, "n": int(len(r))}

    out = {"all": agg(ranks)}
    for code in np.unique(locs):
        out[LOCALES[code]] = agg(ranks[locs == code])
    return out


# --------------------------------------------------------------------------------------------
# Writing the files.
# --------------------------------------------------------------------------------------------

def _prev_items_repr(ids: pl.Series, n_prev: np.ndarray) -> pl.Series:
    """numpy's str() of a 1-d array of 10-character ids: five per line, continuation lines start
    with a space, e.g. "['A' 'B' 'C' 'D' 'E'\\n 'F']"."""
    row = np.repeat(np.arange(len(n_prev)), n_prev)
    pos = np.arange(len(row)) - np.repeat(np.cumsum(n_prev) - n_prev, n_prev)
    last = pos == np.repeat(n_prev - 1, n_prev)
    frame = pl.DataFrame({"row": row, "pos": pos, "last": last, "id": ids})
    sep = (pl.when(pl.col("last")).then(pl.lit("]"))
           .when((pl.col("pos") + 1) % 5 == 0).then(pl.lit("\n ")).otherwise(pl.lit(" ")))
    token = pl.concat_str([pl.when(pl.col("pos") == 0).then(pl.lit("[")).otherwise(pl.lit("")),
                           pl.lit("'"), pl.col("id"), pl.lit("'"), sep])
    return (frame.with_columns(tok=token).group_by("row", maintain_order=True)
            .agg(pl.col("tok").str.join("")).get_column("tok"))


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp, quote_style="necessary", float_precision=None)


def generate(out_dir: Path, scale: float, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> dict:
    """Write the six real-format files, gt/ and gt/ceiling.json into ``out_dir``.

    Returns counts: products and train sessions per locale, interactions, rows per test file,
    and the time taken.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "gt").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = scaled_counts(scale)
    w = _build_world(rng, scale, cfg)
    log.info("world: %d categories, %d brands, %d families, %d products, %d (ASIN, locale) entries; %.1fs, "
             "peak RSS %.0f MiB", w.n_cat, w.n_brand, w.n_fam, len(w.prod_id), len(w.ent_prod),
             time.perf_counter() - start, peak_rss_mib())
    products = _products_frame(rng, w)
    _write_csv(products, out_dir / "products_train.csv")

    # One simulation for every session of every file, so all come from the same process.
    datasets = ["train"] + [f"task{t}_phase{p}" for t in (1, 2, 3) for p in (1, 2)]
    ds_of, loc_of = [], []
    for d, name in enumerate(datasets):
        for loc, c in counts[name].items():
            ds_of.append(np.full(c, d))
            loc_of.append(np.full(c, LOCALES.index(loc)))
    ds_of = np.concatenate(ds_of)
    loc_of = np.concatenate(loc_of).astype(np.int64)
    cap_by_loc = np.array([min(cfg.length_max, max(3, counts["products"][loc] // 4)) for loc in LOCALES])
    length = _lengths(rng, len(loc_of), cap_by_loc[loc_of], cfg)
    sim = _simulate(rng, w, loc_of, length, cfg)
    log.info("simulated %d sessions, %d prev items; %.1fs, peak RSS %.0f MiB", len(loc_of), len(sim["flat"]),
             time.perf_counter() - start, peak_rss_mib())

    ids = pl.Series(w.prod_id, dtype=pl.String)
    inv = sim["inv"]
    result = {"scale": scale, "seed": seed, "products": {}, "train_sessions": {}, "test_rows": {}}
    ceiling = {}
    for d, name in enumerate(datasets):
        sess = np.flatnonzero(ds_of == d)
        # Train rows in random order; test rows grouped by locale like the real files.
        if name == "train":
            sess = rng.permutation(sess)
        else:
            sess = sess[np.lexsort((rng.random(len(sess)), loc_of[sess]))]
        sim_idx = inv[sess]
        n_prev = sim["n_prev"][sim_idx]
        flat_idx = (np.repeat(sim["offsets"][sim_idx], n_prev)
                    + (np.arange(n_prev.sum()) - np.repeat(np.cumsum(n_prev) - n_prev, n_prev)))
        prev = _prev_items_repr(ids.gather(w.ent_prod[sim["flat"][flat_idx]]), n_prev)
        locale = pl.Series(np.array(LOCALES)[loc_of[sess]], dtype=pl.String)
        target = sim["target"][sim_idx]
        if name == "train":
            frame = pl.DataFrame({"prev_items": prev, "next_item": ids.gather(w.ent_prod[target]),
                                  "locale": locale})
            _write_csv(frame, out_dir / "sessions_train.csv")
            result["interactions"] = int(n_prev.sum() + len(sess))
            continue
        task, phase = int(name[4]), int(name[-1])
        _write_csv(pl.DataFrame({"prev_items": prev, "locale": locale}), out_dir / test_file(task, phase))
        result["test_rows"][name] = len(sess)
        if task == 3:
            fam = w.ent_fam[target]
            new_family = rng.random(len(sess)) >= cfg.task3_new_variant
            model = w.fam_model[fam].copy()
            model[new_family] = (w.n_cat + w.fam_cat[fam[new_family], None] * MODEL_POOL
                                 + rng.integers(0, MODEL_POOL, (int(new_family.sum()), 2)))
            title = _titles(w, fam, loc_of[sess], rng.integers(0, N_COLOURS, len(sess)),
                            rng.integers(0, N_SIZES, len(sess)), model)
            gt = pl.DataFrame({"next_item_title": title, "locale": locale})
        else:
            gt = pl.DataFrame({"next_item": ids.gather(w.ent_prod[target]), "locale": locale})
            ranks = _oracle_ranks(w, sim, sim_idx)
            ceiling[name] = _ceiling(ranks, loc_of[sess])
            cls, related_rank = _target_classes(w, sim, sim_idx)
            _write_csv(pl.DataFrame({"target_class": cls, "related_rank": related_rank, "oracle_rank": ranks,
                                     "locale": locale}), out_dir / "gt" / oracle_file(task, phase))
        _write_csv(gt, out_dir / "gt" / gt_file(task, phase))
    write_json(ceiling, out_dir / "gt" / "ceiling.json")
    for loc in LOCALES:
        result["products"][loc] = int((w.ent_loc == LOCALES.index(loc)).sum())
        result["train_sessions"][loc] = counts["train"][loc]
    result["unique_products"] = len(w.prod_id)
    result["ceiling"] = {k: v["all"] for k, v in ceiling.items()}
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["peak_rss_mib"] = round(peak_rss_mib())
    log.info("generated %s in %.1fs, peak RSS %.0f MiB", out_dir, result["seconds"], result["peak_rss_mib"])
    return result


def config_fields() -> list[str]:
    return [f.name for f in fields(SyntheticConfig)]
