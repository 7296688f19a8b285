"""Task 3 stage two: the BLEU-aware title chooser and editor.

Stage one (titles.candidates, titles.features) proposes candidate titles per session with their
features; here:

1. Chooser: a LightGBM regressor of a BLEU label of the candidate title against the target title
   (``gain``: its first-order contribution to corpus BLEU, see label(); or smoothed sentence BLEU)
   on the columns of titles.features.columns; per session the highest prediction wins. Learned on
   the valid split, evaluated out of fold (session folds). Its settings are params.yaml
   ``task3.chooser``.
2. Editor: edits that corpus BLEU rewards, tuned on the out-of-fold choices against the exact
   corpus BLEU: (a) ``trim``: a per-locale cap on the title length in tokens (drops trailing
   tokens, whose n-grams match least often; the cap trades precision against the brevity
   penalty); (b) ``drop_tail``: strip trailing tokens that no other title of the session holds.

Real Task 3 targets are products absent from the catalogue, while a held-out train session's
target is a catalogue item that a source may propose verbatim, or as a sibling that differs in a
colour or a size. ``valid_mask`` (mask_valid()) removes from the valid candidates what a new product
could not have in the catalogue, so the chooser learns, and validation scores, as on the test. A new
product is either a new variant of a catalogue family (its siblings are there) or a new product line
(they are not); ``mixed`` masks a share ``family_share`` of the valid sessions as new lines and the rest
as new variants, so validation weighs both; ``new_line`` keeps the siblings as candidates and recasts
the reference of that share as a new line's (new_line_refs()); ``train_mask`` may teach the chooser on
another mask than the one validation scores it on.

Frames: ``cands`` has session, item, locale, title, tokens and the feature columns; a ``choice``
frame has session, tokens (the chosen title's 13a tokens), title, locale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from titles.features import columns
from titles.text import MAX_ORDER, STAT_COLUMNS, bleu_stats, corpus_bleu, reference_grams, sentence_bleu

# A new product line's own words get this prefix: letters only, so 13a tokenization keeps them whole, and no
# catalogue title holds a token that starts with it.
NEW_TOKEN = "newlinex"
_SEP = "\x1f"

log = logging.getLogger(__name__)

VALID_MASKS = ("item", "title", "family", "mixed", "new_line")


@dataclass(frozen=True)
class ChooserConfig:
    """params.yaml ``task3.chooser``: stage one (candidates) and stage two (chooser, editor)."""

    max_session_items: int         # most recent distinct items of the session kept as candidates
    sources: dict[str, dict[str, Any]]  # title sources: name -> {type, k, knobs} (titles.candidates)
    valid_mask: str                # valid candidates dropped: item | title | family | mixed | new_line
    new_line_share: float          # mixed, new_line: the share of valid sessions whose target is a new line
    train_mask: str                # the chooser learns on this mask ("" = valid_mask); valid_mask scores it
    family_tokens: int             # family: the leading title tokens a near-duplicate shares with the target
    label: str                     # regression label: gain (first-order corpus BLEU gain) | sentence
    folds: int                     # session folds for the out-of-fold validation choices
    num_leaves: int                # LightGBM regressor (see _lgb_params)
    learning_rate: float
    n_estimators: int
    min_child_samples: int
    bagging_fraction: float
    bagging_freq: int
    feature_fraction: float
    num_threads: int
    depart_quantiles: tuple[float, ...]  # departure margins tried per locale: quantiles of the advantage
    trim_grid: tuple[int, ...]     # token caps tried (0 = none)
    drop_tail_min: tuple[int, ...]  # drop_tail keeps at least this many tokens (0 = off)

    def __post_init__(self) -> None:
        masks = (("valid_mask", self.valid_mask), ("train_mask", self.train_mask or self.valid_mask))
        for knob, mask in masks:
            if mask not in VALID_MASKS:
                raise ValueError(f"{knob} must be one of {VALID_MASKS}, got {mask!r}")
        if not 0 <= self.new_line_share <= 1:
            raise ValueError(f"new_line_share must lie in [0, 1], got {self.new_line_share!r}")
        if self.label not in ("gain", "sentence"):
            raise ValueError(f"label must be 'gain' or 'sentence', got {self.label!r}")


@dataclass(frozen=True)
class Edits:
    """Tuned editor settings: per-locale token cap (0 = none) and drop_tail minimum (0 = off)."""

    trim: dict[str, int]
    drop_tail_min: int


@dataclass(frozen=True)
class Tuned:
    """What validation tuned after the model: per-locale departure margins (tune_margins) and the edits."""

    margins: dict[str, float]
    edits: Edits


# -------------------------------------------------------------------------------------------- chooser

def new_line(share: float) -> pl.Expr:
    """Whether a valid session counts as one whose target opens a new product line: a hashed share
    ``share`` of the session ids, independent of the out-of-fold folds (another hash)."""
    return ((pl.col("session").cast(pl.Int64) * 2246822519) % 2**32) < share * 2**32


def new_line_refs(refs: pl.DataFrame, titles: pl.DataFrame, items: pl.DataFrame, share: float,
                  family_tokens: int) -> pl.DataFrame:
    """``refs`` where the targets of new_line(share) become new product lines of their brand.

    A new line keeps its brand's and its category's words (brand, noun, colours, sizes) and brings model
    words and a model code no catalogue title holds. Here: each token of such a target's title that no other
    family of its brand (items.brand, else the title's first token) holds in its locale, i.e. a token of the
    family alone, is replaced by one no title holds. The siblings stay candidates: they now match the brand
    and category words only, as a catalogue family matches a new line of its brand.

    Args:
        refs: session, locale, target, ref_title, ref (valid_references()). titles: item_titles().
        items: item, locale, brand. family_tokens: a family = the titles opening with the same tokens.
    Returns ``refs`` with ``ref`` (and ``ref_title``, its tokens space-joined) recast on those sessions.
    """
    brand = pl.coalesce(pl.col("brand"), pl.col("tokens").list.first())
    if "brand" not in items.columns:
        items = items.with_columns(brand=pl.lit(None, pl.String))
    catalogue = (titles.join(items.select("item", "locale", "brand"), on="item")
                 .select("locale", brand=brand, tok=pl.col("tokens").list.unique(),
                         family=pl.col("tokens").list.head(family_tokens).list.join(_SEP)).explode("tok")
                 .group_by("locale", "brand", "tok").agg(families=pl.col("family").n_unique()))
    lines = (refs.filter(new_line(share)).select("session", "locale", tokens="ref", item="target")
             .join(items.select("item", "brand"), on="item", how="left")
             .select("session", "locale", brand=brand, tok="tokens"))
    long = (lines.with_row_index("_r").explode("tok").with_columns(_j=pl.int_range(pl.len()).over("_r"))
            .join(catalogue, on=["locale", "brand", "tok"], how="left", maintain_order="left")
            .with_columns(tok=pl.when(pl.col("families") == 1).then(pl.lit(NEW_TOKEN) + pl.col("tok"))
                          .otherwise(pl.col("tok")))
            .sort("_r", "_j").group_by("session", maintain_order=True).agg(_new=pl.col("tok")))
    return (refs.join(long, on="session", how="left", maintain_order="left")
            .with_columns(ref=pl.coalesce("_new", "ref"),
                          ref_title=pl.when(pl.col("_new").is_not_null()).then(pl.col("_new").list.join(" "))
                          .otherwise(pl.col("ref_title")))
            .drop("_new"))


def mask_valid(cands: pl.DataFrame, refs: pl.DataFrame, mode: str, family_tokens: int,
               family_share: float = 0.0) -> pl.DataFrame:
    """The valid candidates a session whose next product is new could also be offered.

    A Task 3 target is absent from the catalogue, so on the test no candidate is the target and no
    candidate carries its title; a new product often opens a new line of a brand, so none shares its
    family either. A held-out train target is a catalogue item: left in, the chooser learns to copy
    catalogue neighbours that a test session never has, departs from the last title too often there,
    and validation promises gains the test does not hold.

    Args:
        cands: candidate_titles() of the valid sessions. refs: session, target, ref (target tokens).
        mode: ``item``: drop the target item; ``title``: and every candidate with the target's title;
            ``family``: and every candidate whose first ``family_tokens`` tokens are the target's;
            ``mixed``: ``family`` on the sessions of new_line(family_share), ``item`` on the others;
            ``new_line``: ``item`` (the references of new lines are recast instead, new_line_refs()).
            The session's own items stay in every mode (a test session holds them too).
    """
    if mode == "new_line":
        mode = "item"
    if mode == "mixed":
        lines = new_line(family_share)
        parts = [(refs.filter(lines), "family"), (refs.filter(~lines), "item")]
        # Candidates are sorted by session, then candidate order: a stable sort puts the two parts back.
        return pl.concat([mask_valid(cands.join(part.select("session"), on="session", maintain_order="left"),
                                     part, single, family_tokens) for part, single in parts]
                         ).sort("session", maintain_order=True)
    out = cands.join(refs.select("session", item="target"), on=["session", "item"], how="anti")
    if mode == "item":
        return out

    def key(column: str) -> pl.Expr:
        return pl.col(column).list.head(family_tokens) if mode == "family" else pl.col(column)

    near = (out.filter(pl.col("si_in_session") == 0)
            .join(refs.select("session", _ref=key("ref")), on="session")
            .filter(key("tokens") == pl.col("_ref")).select("session", "item"))
    return out.join(near, on=["session", "item"], how="anti", maintain_order="left")


def label(cands: pl.DataFrame, target_tokens: pl.DataFrame, kind: str = "gain") -> pl.DataFrame:
    """Add ``bleu``, the regression label of each candidate against its session's target.

    ``sentence``: add-one smoothed sentence BLEU. ``gain``: the first-order change of the corpus
    log-BLEU when this title replaces the last title, sum_n (m_n/M_n - t_n/T_n)/4 plus the brevity
    term, with M, T, C, R the corpus totals of the last titles; it is additive over sessions, so
    the per-session argmax maximises the corpus score to first order (sentence BLEU does not).

    Args:
        target_tokens: session, ref (List(String): the target title's 13a tokens).
    """
    joined = cands.join(target_tokens, on="session", how="left", maintain_order="left")
    stats = bleu_stats(joined["tokens"], joined["ref"].fill_null([]))
    if kind == "sentence":
        return joined.drop("ref").with_columns(bleu=pl.Series(sentence_bleu(stats)))
    last = stats.filter(joined["si_recency"].fill_null(-1) == 0)
    n_ref = last.height if last.height else cands["session"].n_unique()
    tot = (last if last.height else stats).select(pl.col(STAT_COLUMNS).sum()).row(0, named=True)
    gain = sum((pl.col(f"m{n}") / max(tot[f"m{n}"], 1) - pl.col(f"t{n}") / max(tot[f"t{n}"], 1)) / MAX_ORDER
               for n in range(1, MAX_ORDER + 1))
    # d log BP / d c = R / C^2 while the hypotheses are shorter than the references, else 0.
    brevity = tot["ref_len"] / tot["hyp_len"] ** 2 if 0 < tot["hyp_len"] < tot["ref_len"] else 0.0
    # Scaled by the number of sessions so the label is O(1) for LightGBM.
    value = stats.select(((gain + brevity * pl.col("hyp_len")) * n_ref).alias("bleu"))["bleu"]
    return joined.drop("ref").with_columns(bleu=value)


def _lgb_params(cfg: ChooserConfig, seed: int) -> dict:
    # deterministic + force_row_wise: the same model for the same data and seed on any machine.
    return {"objective": "regression", "num_leaves": cfg.num_leaves, "learning_rate": cfg.learning_rate,
            "min_data_in_leaf": cfg.min_child_samples, "bagging_fraction": cfg.bagging_fraction,
            "bagging_freq": cfg.bagging_freq, "feature_fraction": cfg.feature_fraction, "seed": seed,
            "deterministic": True, "force_row_wise": True, "num_threads": cfg.num_threads, "verbosity": -1}


def fit(train: pl.DataFrame, cfg: ChooserConfig, seed: int) -> lgb.Booster:
    """LightGBM regressor of ``bleu`` on titles.features.columns (``train`` = label() output)."""
    names = columns(list(cfg.sources))
    data = lgb.Dataset(train.select(names).to_numpy(), train["bleu"].to_numpy(), feature_name=names,
                       free_raw_data=True)
    return lgb.train(_lgb_params(cfg, seed), data, num_boost_round=cfg.n_estimators)


def predict(model: lgb.Booster, cands: pl.DataFrame) -> pl.DataFrame:
    """``cands`` with ``pred``, on the columns the model was trained on."""
    x = cands.select(model.feature_name()).to_numpy()
    return cands.with_columns(pred=pl.Series(model.predict(x), dtype=pl.Float64))


def out_of_fold(train: pl.DataFrame, cfg: ChooserConfig, seed: int,
                evaluate: pl.DataFrame | None = None) -> pl.DataFrame:
    """``evaluate`` (default ``train``) with ``pred`` from models fitted on ``train``'s sessions of the other
    folds (folds by session id), so no model predicts a session it saw."""
    evaluate = train if evaluate is None else evaluate
    # A multiplicative hash of the id, so the folds do not follow any pattern in the session ids.
    fold = (((pl.col("session").cast(pl.Int64) * 2654435761) % 2**32) // 2**16) % cfg.folds
    parts = []
    for k in range(cfg.folds):
        model = fit(train.filter(fold != k), cfg, seed)
        parts.append(predict(model, evaluate.filter(fold == k)))
    return pl.concat(parts).sort("session", maintain_order=True)


def choose(scored: pl.DataFrame, column: str = "pred") -> pl.DataFrame:
    """The best candidate of each session by ``column`` (ties: candidate order).

    Returns session, locale, item, title, tokens, and the features (used by the editor).
    """
    return (scored.with_columns(_i=pl.int_range(pl.len()))
            .sort(["session", column, "_i"], descending=[False, True, False])
            .unique("session", keep="first", maintain_order=True).drop("_i"))


def advantage(scored: pl.DataFrame, column: str = "pred") -> pl.DataFrame:
    """Per session: the best candidate by ``column``, its ``advantage`` over the last title, the last title.

    The last title is the session's most recent titled item (the own candidate of lowest recency), the
    ``last_titles`` baseline. Returns choose()'s columns plus ``advantage`` (best minus the last title's
    ``column``; null where the session has no own candidate) and ``last_item`` (its item, or null).
    """
    last = (scored.filter(pl.col("si_in_session") == 1).sort("session", "si_recency")
            .unique("session", keep="first", maintain_order=True)
            .select("session", last_item="item", _last=pl.col(column)))
    return (choose(scored, column).join(last, on="session", how="left", maintain_order="left")
            .with_columns(advantage=pl.col(column) - pl.col("_last")).drop("_last"))


def stay(best: pl.DataFrame, scored: pl.DataFrame, margins: dict[str, float]) -> pl.DataFrame:
    """choose()'s frame where a session keeps its last title unless the best beats it by the locale's margin.

    Args:
        best: advantage() output. scored: the candidates it was chosen from. margins: locale -> margin
            (absent: 0, the plain argmax; inf: always the last title).
    """
    margin = pl.col("locale").replace_strict(margins, default=0.0, return_dtype=pl.Float64)
    stays = pl.col("advantage").is_not_null() & (pl.col("advantage") <= margin)
    picked = best.select("session", item=pl.when(stays).then(pl.col("last_item")).otherwise(pl.col("item")))
    return (picked
            .join(scored, on=["session", "item"], maintain_order="left"))


def tune_margins(best: pl.DataFrame, scored: pl.DataFrame, ref: pl.DataFrame,
                 cfg: ChooserConfig) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per locale, the departure margin (a quantile of the advantage, or inf) of the best corpus BLEU.

    A departure from the last title pays only where the model is confident: the argmax of many noisy
    predictions is above the last title's by chance in most sessions (the winner's curse), so where
    the model is weak the best margin is high and the chooser keeps the last title.
    Args:
        best: advantage() of the out-of-fold predictions; scored: those candidates; ref: session, ref.
    Returns the margins and, per locale, the BLEU of the chosen margin and of never departing.
    """
    margins, figures = {}, {}
    for (locale,), part in best.group_by("locale", maintain_order=True):
        adv = part["advantage"].drop_nulls()
        grid = sorted({float(adv.quantile(q)) for q in cfg.depart_quantiles if adv.len()}
                      | {0.0, float("inf")})
        sub = scored.filter(pl.col("locale") == locale)

        def score(m: float, part: pl.DataFrame = part, sub: pl.DataFrame = sub, loc: str = locale) -> float:
            chosen = stay(part, sub, {loc: m}).join(ref, on="session", maintain_order="left")
            return corpus_bleu_of(chosen["tokens"], chosen["ref"])

        by = {m: score(m) for m in grid}
        margins[locale] = max(grid, key=lambda m: (by[m], m))
        figures[locale] = {"margin_bleu": by[margins[locale]], "never_depart_bleu": by[float("inf")],
                           "departed": float((part["advantage"].fill_null(float("inf"))
                                              > margins[locale]).mean())}
    return margins, figures


# --------------------------------------------------------------------------------------------- editor

def tail_support(choice: pl.DataFrame, cands: pl.DataFrame) -> pl.DataFrame:
    """Add ``supported``: per token of the choice, whether another session title holds it.

    Args:
        choice: choose() output. cands: the candidates (the session's own titles are those with
        si_in_session = 1).
    """
    own = (cands.filter(pl.col("si_in_session") == 1).select("session", "item",
                                                             tok=pl.col("tokens").list.unique())
           .explode("tok", empty_as_null=False).drop_nulls("tok"))
    long = (choice.select("session", "item", "tokens").with_row_index("_r")
            .explode("tokens", empty_as_null=False).rename({"tokens": "tok"})
            .with_columns(_j=pl.int_range(pl.len()).over("_r")))
    held = (long.join(own.rename({"item": "_other"}), on=["session", "tok"])
            .filter(pl.col("_other") != pl.col("item")).select("_r", "_j").unique()
            .with_columns(_s=pl.lit(True)))
    flags = (long.join(held, on=["_r", "_j"], how="left").sort("_r", "_j")
             .group_by("_r", maintain_order=True).agg(supported=pl.col("_s").fill_null(False)))
    return choice.with_row_index("_r").join(flags, on="_r", how="left", maintain_order="left").drop("_r")


def apply_edits(choice: pl.DataFrame, edits: Edits) -> pl.DataFrame:
    """Edited token lists: ``choice`` (with ``supported`` from tail_support) gets ``edited``."""
    n = pl.col("tokens").list.len()
    keep = n
    if edits.drop_tail_min > 0:
        # Length without the trailing run of unsupported tokens, never below drop_tail_min.
        last_supported = pl.col("supported").list.eval(
            pl.int_range(pl.len()).filter(pl.element()).max() + 1).list.first().fill_null(0)
        keep = pl.max_horizontal(last_supported, pl.lit(edits.drop_tail_min)).clip(upper_bound=n)
    cap = pl.col("locale").replace_strict(edits.trim, default=0, return_dtype=pl.Int64)
    keep = pl.when(cap > 0).then(pl.min_horizontal(keep, cap)).otherwise(keep)
    return choice.with_columns(edited=pl.col("tokens").list.head(keep))


def edited_titles(choice: pl.DataFrame) -> pl.Series:
    """The submitted string: the original title when untouched, else the kept tokens space-joined."""
    return (choice.select(pl.when(pl.col("edited").list.len() == pl.col("tokens").list.len())
                          .then(pl.col("title")).otherwise(pl.col("edited").list.join(" ")))
            .to_series().alias("next_item_title"))


def tune_edits(choice: pl.DataFrame, ref: pl.Series, cfg: ChooserConfig) -> tuple[Edits, dict[str, float]]:
    """Pick the drop_tail minimum, then each locale's cap (coordinate ascent), by corpus BLEU.

    Args:
        choice: tail_support() output; ref: the target tokens aligned with ``choice`` rows.
    Returns the edits and the corpus BLEU after each step ({"chosen", "drop_tail", "trim"}).
    """
    ref_grams = reference_grams(ref)

    def row_stats(edits: Edits) -> pl.DataFrame:
        return bleu_stats(apply_edits(choice, edits)["edited"], ref, ref_grams)

    steps = {"chosen": corpus_bleu(row_stats(Edits(trim={}, drop_tail_min=0)))}
    by_min = {m: row_stats(Edits(trim={}, drop_tail_min=m)) for m in cfg.drop_tail_min}
    best_min = max(cfg.drop_tail_min, key=lambda m: (corpus_bleu(by_min[m]), -m))
    current = by_min[best_min]
    steps["drop_tail"] = corpus_bleu(current)
    locales = sorted(choice["locale"].unique().to_list())
    # Row statistics under each cap are computed once; a locale's cap then only swaps its rows.
    by_cap = {c: row_stats(Edits(trim=dict.fromkeys(locales, c), drop_tail_min=best_min))
              for c in cfg.trim_grid}
    trim: dict[str, int] = {}
    for locale in locales:
        rows = pl.Series((choice["locale"] == locale).to_list())

        def swapped(cap: int, rows: pl.Series = rows, base: pl.DataFrame = current) -> pl.DataFrame:
            return base.select(pl.when(rows).then(by_cap[cap][c]).otherwise(pl.col(c)).alias(c)
                               for c in base.columns)

        trim[locale] = max(cfg.trim_grid, key=lambda c: (corpus_bleu(swapped(c)), -c))
        current = swapped(trim[locale])
    steps["trim"] = corpus_bleu(current)
    return Edits(trim=trim, drop_tail_min=best_min), steps


def gain_sd(hyp_tokens: pl.Series, base_tokens: pl.Series, ref_tokens: pl.Series, seed: int,
            draws: int = 200) -> float:
    """The standard deviation of the corpus-BLEU gain of ``hyp`` over ``base`` (0-1) across ``draws``
    paired bootstrap resamples of the sessions: how far a validation gain on them may lie from the truth."""
    if ref_tokens.len() == 0:
        return 0.0
    ref_grams = reference_grams(ref_tokens)
    stats = [bleu_stats(h, ref_tokens, ref_grams).select(STAT_COLUMNS).to_numpy()
             for h in (hyp_tokens, base_tokens)]
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(draws):
        idx = rng.integers(0, ref_tokens.len(), ref_tokens.len())
        one, two = (pl.DataFrame([s[idx].sum(axis=0)], schema=STAT_COLUMNS, orient="row") for s in stats)
        gains.append(corpus_bleu(one) - corpus_bleu(two))
    return float(np.std(gains))


def corpus_bleu_of(hyp_tokens: pl.Series, ref_tokens: pl.Series) -> float:
    return corpus_bleu(bleu_stats(hyp_tokens, ref_tokens))


def fill_missing(sessions: pl.DataFrame, titles: pl.DataFrame, fallback: pl.DataFrame) -> pl.DataFrame:
    """session, next_item_title for every session: ``titles`` where present, else ``fallback``'s."""
    return (sessions.select("session").join(titles, on="session", how="left", maintain_order="left")
            .join(fallback.rename({"next_item_title": "_fb"}), on="session", how="left",
                  maintain_order="left")
            .select("session", next_item_title=pl.coalesce("next_item_title", "_fb", pl.lit(""))))

