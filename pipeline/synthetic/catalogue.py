"""The generated catalogue: categories, brands, families and their variants, the (product, locale)
entries with their popularity and related items, pseudo-word vocabularies, titles and the
products_train.csv table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from core.raw import LOCALES
from pipeline.synthetic.config import SyntheticConfig, scaled_counts
from pipeline.synthetic.groups import Groups

DE, JP, UK, ES, FR, IT = (LOCALES.index(x) for x in ("DE", "JP", "UK", "ES", "FR", "IT"))
SMALL = (ES, FR, IT)


@dataclass
class World:
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
    g_loc: Groups
    g_li: Groups
    g_lib: Groups
    g_lit: Groups
    g_libt: Groups
    g_lf: Groups

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


def _words(rng: np.random.Generator, locale: str, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """``n`` pseudo-words in a locale's letters (katakana for JP), 2 or 3 syllables."""
    if locale == "JP":
        kana = np.array(_KANA)
        parts = kana[rng.integers(0, len(kana), (n, 4))]
        three = rng.random(n) < cfg.word_long_share_jp
        w = np.char.add(np.char.add(parts[:, 0], parts[:, 1]), parts[:, 2])
        return np.where(three, np.char.add(w, parts[:, 3]), w).astype(object)
    cons, vow, coda = (np.array(x) for x in _LATIN[locale])
    syl = [np.char.add(cons[rng.integers(0, len(cons), n)], vow[rng.integers(0, len(vow), n)])
           for _ in range(3)]
    w = np.char.add(np.char.add(syl[0], syl[1]), coda[rng.integers(0, len(coda), n)])
    three = rng.random(n) < cfg.word_long_share
    w = np.where(three, np.char.add(syl[2], w), w)
    return w.astype(object)


def base36(values: np.ndarray, width: int) -> np.ndarray:
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
        asin = np.char.add(np.char.add("B0", base36(prefix[todo], 3)), base36(suffix, 5))
        isbn = np.char.add(np.char.zfill(prefix[todo].astype(str), 5),
                           np.char.zfill((suffix % 10 ** 5).astype(str), 5))
        ids[todo] = np.where(book[todo], isbn, asin)
        _, first = np.unique(ids, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        todo = np.flatnonzero(dup)
    return ids


def _families(rng: np.random.Generator, target: int, mean: float, cap: int, book_cap: int,
              is_book_cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(size, category) of families holding exactly ``target`` products (the last one trimmed).

    Book families have at most ``book_cap`` editions.
    """
    sizes, cats = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if target <= 0:
        return sizes, cats
    while sizes.sum() < target:
        n = int(target / mean) + 16
        cat = rng.integers(0, len(is_book_cat), n)
        size = np.minimum(rng.geometric(1.0 / mean, n), np.where(is_book_cat[cat], book_cap, cap))
        sizes, cats = np.concatenate([sizes, size]), np.concatenate([cats, cat])
    cum = np.cumsum(sizes)
    n = int(np.searchsorted(cum, target)) + 1
    sizes, cats = sizes[:n].copy(), cats[:n]
    sizes[-1] -= cum[n - 1] - target
    return sizes, cats


def build_world(rng: np.random.Generator, scale: float, cfg: SyntheticConfig) -> World:
    counts = scaled_counts(scale)["products"]
    n_loc = len(LOCALES)
    n_cat = max(cfg.min_categories, int(round(counts["DE"] / cfg.items_per_category)))
    n_brand = max(cfg.brands_per_category, int(round(n_cat * cfg.brand_pool_per_category)))
    is_book_cat = np.zeros(n_cat, dtype=bool)
    is_book_cat[: max(1, int(round(cfg.book_share * n_cat)))] = True
    cat_weight = rng.lognormal(0.0, cfg.category_sigma, n_cat)
    cat_brands = rng.integers(0, n_brand, (n_cat, cfg.brands_per_category))
    cat_price = rng.lognormal(cfg.price_log_mean, cfg.price_log_sigma, n_cat)
    # Related categories (drift targets and cross-category related products): distinct, never itself.
    n_rc = min(cfg.related_categories, n_cat - 1)
    rc = (np.arange(n_cat)[:, None] + 1
          + np.argsort(rng.random((n_cat, n_cat - 1)), axis=1)[:, :n_rc]) % n_cat
    rc_q = cfg.drift_decay ** np.arange(n_rc)
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
        size, cat = _families(rng, max(0, target), cfg.family_size_mean, cfg.family_size_max,
                              cfg.book_family_max, is_book_cat)
        sizes.append(size)
        cats.append(cat)
        fam_pool.append(np.full(len(size), p))
    fam_size = np.concatenate(sizes)
    fam_cat = np.concatenate(cats)
    fam_pool = np.concatenate(fam_pool)
    n_fam = len(fam_size)
    book = is_book_cat[fam_cat]
    brand_rank = np.minimum(rng.geometric(cfg.brand_pick_p, n_fam) - 1, cfg.brands_per_category - 1)
    fam_brand = cat_brands[fam_cat, brand_rank]
    z = rng.standard_normal(n_fam)
    fam_tier = np.digitize(z, [-cfg.tier_cut, cfg.tier_cut])  # price terciles of a category
    fam_price = cat_price[fam_cat] * np.exp(cfg.price_family_sigma * z)
    fam_pop = cat_weight[fam_cat] * rng.lognormal(0.0, cfg.family_sigma, n_fam)
    fam_model = (n_cat + fam_cat[:, None] * cfg.model_pool + rng.integers(0, cfg.model_pool, (n_fam, 2)))
    letters = base36(rng.integers(10 * 36, 36 * 36, n_fam), 2)
    fam_code = np.where(rng.random(n_fam) < cfg.model_code_share,
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
    prod_colour = rng.integers(0, cfg.n_colours, n_prod)
    prod_size = rng.integers(0, cfg.n_sizes, n_prod)

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

    g_loc = Groups(ent_loc, pop, prank)
    code_li = ent_loc * n_cat + ent_cat
    g_li = Groups(code_li, pop, prank)
    g_lib = Groups(code_li * n_brand + ent_brand, pop, prank)
    g_lit = Groups(code_li * 3 + ent_tier, pop, prank)
    g_libt = Groups((code_li * n_brand + ent_brand) * 3 + ent_tier, pop, prank)
    g_lf = Groups(ent_loc * n_fam + ent_fam, pop, prank)

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
    sorted_code = ent_code[ent_sorter]  # a plain search: sorter= reads through the permutation, slow at size
    i = np.minimum(np.searchsorted(sorted_code, want), n_ent - 1)
    hit = (sorted_code[i] == want) & (rp >= 0)
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

    n_concepts = n_cat + n_cat * cfg.model_pool + cfg.n_colours + cfg.n_sizes + cfg.n_materials
    words = np.stack([_words(rng, loc, n_concepts, cfg) for loc in LOCALES])
    brand_names = np.char.capitalize(_words(rng, "UK", n_brand, cfg).astype(str)).astype(object)
    first_names = np.char.capitalize(_words(rng, "DE", n_fam, cfg).astype(str))
    last_names = np.char.capitalize(_words(rng, "UK", n_fam, cfg).astype(str))
    fam_author = np.where(book, np.char.add(np.char.add(first_names, " "), last_names), "")
    return World(
        n_cat=n_cat, n_brand=n_brand, n_fam=n_fam, fam_cat=fam_cat, fam_brand=fam_brand, fam_tier=fam_tier,
        fam_model=fam_model, fam_size=fam_size, fam_code=fam_code, fam_author=fam_author, fam_price=fam_price,
        is_book_cat=is_book_cat, prod_fam=prod_fam, prod_id=prod_id, prod_colour=prod_colour,
        prod_size=prod_size, ent_prod=ent_prod, ent_loc=ent_loc, ent_cat=ent_cat, ent_brand=ent_brand,
        ent_tier=ent_tier, ent_fam=ent_fam, pop=pop, prank=prank, rel=rel, rel_w=rel_w,
        rel_tot=rel_w.sum(axis=1), drift_cat=drift_cat, drift_q=drift_q, words=words, brand_names=brand_names,
        g_loc=g_loc, g_li=g_li, g_lib=g_lib, g_lit=g_lit, g_libt=g_libt, g_lf=g_lf)


def _str(values: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(values, dtype=str).tolist(), dtype=pl.String)


def make_titles(w: World, cfg: SyntheticConfig, fam: np.ndarray, loc: np.ndarray, colour: np.ndarray,
                size: np.ndarray, model: np.ndarray | None = None,
                code: np.ndarray | None = None) -> pl.Series:
    """Titles in each row's locale: brand, the family's model words, category noun, model code, colour,
    size, in the order of ``cfg.title_layout``; ``model``/``code``: other words/codes than the family's."""
    model = w.fam_model[fam] if model is None else model
    cat = w.fam_cat[fam]
    wd = w.words
    colour_c = w.n_cat * (1 + cfg.model_pool) + colour
    size_c = w.n_cat * (1 + cfg.model_pool) + cfg.n_colours + size
    frame = pl.DataFrame({
        "brand": _str(w.brand_names[w.fam_brand[fam]]),
        "m1": _str(wd[loc, model[:, 0]]),
        "m2": _str(wd[loc, model[:, 1]]),
        "noun": _str(wd[loc, cat]),
        "code": _str(w.fam_code[fam] if code is None else code),
        "colour": _str(wd[loc, colour_c]),
        "size": _str(wd[loc, size_c]),
        "book": w.is_book_cat[cat],
    })
    m1 = pl.col("m1").str.to_titlecase()
    code = pl.when(pl.col("code") != "").then(pl.lit(" ") + pl.col("code")).otherwise(pl.lit(""))
    words = [pl.col("brand"), pl.lit(" "), m1, pl.lit(" "), pl.col("m2"), pl.lit(" "), pl.col("noun")]
    if cfg.title_layout == "amazon":
        general = pl.concat_str([*words, code, pl.lit(", "), pl.col("colour"), pl.lit(", "), pl.col("size")])
    else:  # brand_words_colour_model
        general = pl.concat_str([*words, pl.lit(" "), pl.col("colour"), pl.lit(" "), pl.col("size"), code])
    book = pl.concat_str([m1, pl.lit(" "), pl.col("m2"), pl.lit(": "), pl.col("noun").str.to_titlecase(),
                          pl.lit(" ("), pl.col("size"), pl.lit(")")])
    return frame.select(pl.when(pl.col("book")).then(book).otherwise(general).alias("title")).to_series()


def products_frame(rng: np.random.Generator, w: World, cfg: SyntheticConfig) -> pl.DataFrame:
    """products_train.csv rows: one per (ASIN, locale), grouped by locale, the 11 real columns."""
    loc, prod = w.ent_loc, w.ent_prod
    fam = w.prod_fam[prod]
    n = len(prod)
    book = w.is_book_cat[w.fam_cat[fam]]
    titles = make_titles(w, cfg, fam, loc, w.prod_colour[prod], w.prod_size[prod])
    jp = loc == JP
    price = (w.fam_price[fam] * np.exp(cfg.price_noise_sigma * rng.standard_normal(n))
             * np.where(jp, cfg.jp_price_factor, 1.0))
    price = np.where(jp, np.round(price, 0), np.round(price, 2))
    wd = w.words
    base = w.n_cat * (1 + cfg.model_pool)
    colour = wd[loc, base + w.prod_colour[prod]]
    size = wd[loc, base + cfg.n_colours + w.prod_size[prod]]
    material = wd[loc, base + cfg.n_colours + cfg.n_sizes + rng.integers(0, cfg.n_materials, n)]
    r = rng.random((n, 6))

    def text(values: np.ndarray, null: np.ndarray) -> pl.Series:
        out = pl.Series(np.asarray(values, dtype=str).tolist(), dtype=pl.String)
        return out.scatter(np.flatnonzero(null), None) if null.any() else out

    frame = pl.DataFrame({
        "id": pl.Series(w.prod_id[prod], dtype=pl.String),
        "locale": pl.Series(np.array(LOCALES)[loc], dtype=pl.String),
        "title": titles,
        "price": pl.Series(np.where(r[:, 0] < cfg.null_price, np.nan, price)).fill_nan(None),
        "brand": text(w.brand_names[w.fam_brand[fam]], book | (r[:, 1] < cfg.null_brand)),
        "color": text(colour, book | (r[:, 2] < cfg.null_color)),
        "size": text(size, r[:, 3] < cfg.null_size),
        "model": text(w.fam_code[fam], w.fam_code[fam] == ""),
        "material": text(material, book | (r[:, 4] < cfg.null_material)),
        "author": text(w.fam_author[fam], ~book),
    })
    # A few multi-line descriptions, like the real file's.
    desc = pl.concat_str([pl.col("title"), pl.lit("\n"), pl.col("brand").fill_null("")])
    return frame.with_columns(desc=pl.when(pl.Series(r[:, 5] < cfg.desc_share)).then(desc).otherwise(None))
