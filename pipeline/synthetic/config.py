"""The generator's knobs (params.yaml ``synthetic``), the next-item mixture's components and the
file sizes at a scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.paper import PRODUCTS, TASK1_TEST, TASK2_TEST_TOTAL, TASK3_TEST_TOTAL, TRAIN_SESSIONS

# Mixture components of the next-item process, in the order of SyntheticConfig.mixture().
DUP, BACK, VAR, REL, CAT, BRAND, TIER, DRIFT, POP = range(9)
N_COMP = 9
TITLE_LAYOUTS = ("amazon", "brand_words_colour_model")


@dataclass(frozen=True)
class SyntheticConfig:
    """params.yaml section ``synthetic``: every knob of the generated world."""

    # Catalogue.
    items_per_category: int        # products per category in DE (sets the category count)
    min_categories: int            # categories at least, whatever the scale
    brands_per_category: int
    brand_pool_per_category: float  # global brands = categories x this (brands span categories)
    brand_pick_p: float            # a family's brand: geometric(p) rank among its category's brands
    book_share: float              # share of categories that are books (numeric ids, authors)
    book_family_max: int           # editions per book family at most
    family_size_mean: float        # variants per family (geometric, capped)
    family_size_max: int
    category_sigma: float          # lognormal spread of popularity: category, family, variant, locale
    family_sigma: float
    variant_sigma: float
    locale_sigma: float
    price_log_mean: float          # a category's price: lognormal(price_log_mean, price_log_sigma)
    price_log_sigma: float
    price_family_sigma: float      # a family's price: the category's times exp(price_family_sigma z)
    tier_cut: float                # price tier 0/1/2: that z below -tier_cut, between, above (terciles)
    model_code_share: float        # families with a model code ("AB-123") in their title
    n_colours: int                 # colour, size and material words of the titles and attributes
    n_sizes: int
    n_materials: int
    model_pool: int                # model-word concepts per category
    word_long_share: float         # pseudo-words of three syllables (the rest two)
    word_long_share_jp: float      # JP pseudo-words of four kana (the rest three)
    # title word order of non-book products: amazon = "Brand Model words noun CODE, colour, size";
    # brand_words_colour_model = "Brand Model words noun colour size CODE" (no commas, the code last)
    title_layout: str
    # |UK and DE| / |UK|; with the next two this gives ~1.41M ASINs at scale 1
    overlap_uk_de: float
    overlap_jp: float              # |JP and DE and UK| / |JP|
    overlap_small_de: float        # |ES and DE| / |ES| (same for FR, IT)
    small_pick_bias: float         # small locales pick DE families with weight popularity^bias
    n_related: int                 # related products per product (the transitions co-visitation learns)
    related_same_category: float
    related_popular: float         # share of related products drawn by popularity (the rest uniformly)
    related_decay: float           # weight of the k-th related product: decay^k
    related_categories: int        # drift targets per category
    drift_decay: float             # weight of the k-th related category: drift_decay^k
    # products_train.csv: per-locale price noise, JP prices in yen, shares of empty attributes.
    price_noise_sigma: float       # a locale's price: the family's times exp(price_noise_sigma N(0, 1))
    jp_price_factor: float
    null_price: float
    null_brand: float              # books never have one
    null_color: float              # nor a colour
    null_size: float
    null_material: float           # nor a material
    desc_share: float              # rows with a (multi-line) description
    # Next-item mixture (weights, renormalised over the components available at a step).
    p_duplicate: float
    p_revisit: float
    p_variant: float
    p_related: float
    p_category: float
    p_brand: float
    p_tier: float
    p_drift: float
    p_popular: float
    # Session length with target: 2 + negative binomial, plus a Pareto tail.
    length_extra_mean: float
    length_dispersion: float
    length_tail_share: float
    length_tail_min: float
    length_tail_alpha: float
    length_max: int
    length_cap_floor: int          # and at most max(length_cap_floor, a locale's products // divisor)
    length_cap_divisor: int
    # task-3 target: new variant of the next item's family (else a new family)
    task3_new_variant: float
    task3_new_code: float          # share of task-3 targets given a model code no catalogue title holds
    target_max_tries: int          # rejection rounds before falling back to locale popularity

    def __post_init__(self) -> None:
        weights = self.mixture()
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("synthetic: mixture weights p_* must be >= 0 with a positive sum")
        overlaps = (self.overlap_small_de, self.overlap_uk_de, self.overlap_jp)
        if not all(0 <= x <= 1 for x in overlaps):
            raise ValueError("synthetic: overlaps must lie in [0, 1]")
        if self.title_layout not in TITLE_LAYOUTS:
            raise ValueError(f"synthetic: title_layout must be one of {TITLE_LAYOUTS}, "
                             f"got {self.title_layout!r}")
        if not 0 <= self.task3_new_code <= 1:
            raise ValueError("synthetic: task3_new_code must lie in [0, 1]")
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


