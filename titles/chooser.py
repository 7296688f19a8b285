"""Task 3 BLEU-aware title chooser and editor.

1. Candidates: per session, the titles of its most recent distinct items and of the top
   co-visitation neighbours of its recent items (``candidates.covisit``), deduplicated by title.
2. Chooser: a LightGBM regressor of a BLEU label of the candidate title against the target title
   (``gain``: its first-order contribution to corpus BLEU, see label(); or smoothed sentence BLEU),
   with features of the title and of the session (recency, co-visitation score, token support by
   the other session titles and by the co-visitation mass, shared two-token prefix, length, token
   catalogue frequency); per session the highest prediction wins. Learned on the valid split,
   evaluated out of fold (session folds).
3. Editor: edits that corpus BLEU rewards, tuned on the out-of-fold choices against the exact
   corpus BLEU: (a) ``trim``: a per-locale cap on the title length in tokens (drops trailing
   tokens, whose n-grams match least often; the cap trades precision against the brevity
   penalty); (b) ``drop_tail``: strip trailing tokens that no other title of the session holds.

Real Task 3 targets are products absent from the catalogue, while a held-out train session's
target is a catalogue item that co-visitation may propose verbatim; with ``mask_target`` the
target item is removed from the valid candidates so the chooser learns for new targets.

Frames: ``cands`` has session, item, title, tokens, and the ``c_``/``t_``/``si_``/``s_`` features
below; a ``choice`` frame has session, tokens (the chosen title's 13a tokens), title, locale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import lightgbm as lgb
import polars as pl

from candidates.covisit import Covisit, CovisitConfig
from pipeline.raw import LOCALES
from titles.text import MAX_ORDER, STAT_COLUMNS, bleu_stats, corpus_bleu, sentence_bleu, session_events

log = logging.getLogger(__name__)

FEATURES = [
    "c_from_session", "c_recency", "c_count", "c_cov_rank", "c_cov_score", "c_cov_score_rel",
    "t_n_tok", "t_len_ratio", "t_df_mean", "t_df_min",
    "si_support_mean", "si_overlap", "si_overlap_last", "si_shared_last", "si_cov_support",
    "c_prefix_n", "c_prefix_session", "c_prefix_mass",
    "s_len", "s_distinct", "s_n_titles", "s_locale",
]


@dataclass(frozen=True)
class ChooserConfig:
    max_session_items: int = 10   # most recent distinct items of the session kept as candidates
    n_covisit: int = 10           # co-visitation neighbours added as candidates
    mask_target: bool = True      # valid: drop the target item itself (real targets are new products)
    label: str = "gain"           # regression label: gain (first-order corpus BLEU gain) | sentence
    folds: int = 3                # session folds for the out-of-fold validation choices
    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 300
    min_child_samples: int = 20
    trim_grid: tuple[int, ...] = (0, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32)  # token caps tried (0 = none)
    drop_tail_min: tuple[int, ...] = (0, 4, 6, 8)  # drop_tail keeps at least this many tokens (0 = off)
    covisit: CovisitConfig = field(default_factory=CovisitConfig)

    def __post_init__(self) -> None:
        if self.label not in ("gain", "sentence"):
            raise ValueError(f"label must be 'gain' or 'sentence', got {self.label!r}")


@dataclass(frozen=True)
class Edits:
    """Tuned editor settings: per-locale token cap (0 = none) and drop_tail minimum (0 = off)."""

    trim: dict[str, int]
    drop_tail_min: int


# ----------------------------------------------------------------------------------------- candidates

def token_df(titles: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """locale, token, log_df: log(1 + number of catalogue titles of the locale holding the token)."""
    return (titles.join(items.select("item", "locale"), on="item")
            .select("locale", token=pl.col("tokens").list.unique()).explode("token", empty_as_null=False).drop_nulls()
            .group_by("locale", "token").agg(log_df=pl.len().cast(pl.Float64).log1p()))


def candidate_titles(sessions: pl.DataFrame, events: pl.DataFrame, history: pl.DataFrame, items: pl.DataFrame,
                     titles: pl.DataFrame, cfg: ChooserConfig, covisit: Covisit | None = None) -> pl.DataFrame:
    """Candidate titles with features for each session.

    Args:
        sessions: session, locale. events: session, position, item (their prev_items).
        history: session, position, item: what co-visitation is fitted on (no evaluated target).
        items: the prepared items. titles: titles.text.item_titles(items).
        covisit: an already fitted source (else one is fitted on ``history``).

    Returns:
        session, item, title, tokens and the FEATURES columns, one row per distinct
        (session, title), sorted by session then candidate order (session items by recency first).
    """
    long = session_events(sessions, events)
    own = (long.drop_nulls("item").group_by("session", "item")
           .agg(pos=pl.col("position").max(), c_count=pl.len().cast(pl.Int32))
           .sort(["session", "pos"], descending=[False, True])
           .with_columns(c_recency=pl.int_range(pl.len(), dtype=pl.Int32).over("session"))
           .filter(pl.col("c_recency") < cfg.max_session_items)
           .select("session", "item", "c_recency", "c_count", c_from_session=pl.lit(1, pl.Int8)))
    if covisit is None:
        covisit = Covisit(cfg.covisit).fit(history, items)
    cov = (covisit.generate(long, cfg.n_covisit)
           .select("session", "item", c_cov_rank=pl.col("rank"), c_cov_score=pl.col("score").cast(pl.Float64))
           .with_columns(c_cov_score_rel=pl.col("c_cov_score") / pl.col("c_cov_score").max().over("session"),
                         c_from_session=pl.lit(0, pl.Int8)))
    cands = (pl.concat([own, cov], how="diagonal_relaxed")
             .join(titles.select("item", "title", "tokens", t_n_tok="n_tok"), on="item")
             .filter(pl.col("t_n_tok") > 0)
             .with_columns(_order=pl.coalesce(pl.col("c_recency"), pl.col("c_cov_rank") + 1000))
             .sort("session", "_order")
             .unique(["session", "title"], keep="first", maintain_order=True))
    return _features(cands, own.join(titles.select("item", "tokens"), on="item"), long, items, titles)


def _features(cands: pl.DataFrame, own: pl.DataFrame, long: pl.DataFrame, items: pl.DataFrame,
              titles: pl.DataFrame) -> pl.DataFrame:
    locale = long.select("session", "locale").unique("session")
    # How many of the session's own titles hold each token; a candidate from the session is one of
    # them, so its own vote is taken back out below.
    own_tok = (own.select("session", "item", "c_recency", tok=pl.col("tokens").list.unique()).explode("tok", empty_as_null=False)
               .drop_nulls("tok"))
    support = own_tok.group_by("session", "tok").agg(n_hold=pl.len())
    last_tok = own_tok.filter(pl.col("c_recency") == 0).select("session", "tok", in_last=pl.lit(1))
    n_titles = own.group_by("session").agg(s_n_titles=pl.len().cast(pl.Int32),
                                           _med_len=pl.col("tokens").list.len().median())
    df = token_df(titles, items)
    cand_tok = (cands.select("session", "item", "c_from_session", "c_recency", tok=pl.col("tokens").list.unique())
                .explode("tok", empty_as_null=False).drop_nulls("tok")
                .join(locale, on="session")
                .join(support, on=["session", "tok"], how="left")
                .join(last_tok, on=["session", "tok"], how="left")
                .join(df.rename({"token": "tok"}), on=["locale", "tok"], how="left")
                .with_columns(others=(pl.col("n_hold").fill_null(0) - pl.col("c_from_session").cast(pl.Int64)),
                              in_last=pl.when(pl.col("c_recency") == 0).then(None).otherwise(pl.col("in_last"))))
    # Co-visitation mass behind each token: the summed neighbour scores of the other candidates
    # holding it, so a title whose words many likely neighbours share scores high.
    cov_mass = (cand_tok.join(cands.select("session", "item", _w=pl.col("c_cov_score_rel").fill_null(0.0)),
                              on=["session", "item"])
                .with_columns(_tok_mass=pl.col("_w").sum().over("session", "tok") - pl.col("_w"),
                              _total=pl.col("_w").sum().over("session") - pl.col("_w"))
                .group_by("session", "item")
                .agg(si_cov_support=(pl.col("_tok_mass") / pl.col("_total").clip(lower_bound=1e-9)).mean()))
    # Titles that open with the same two tokens (brand and product line on Amazon) form a family.
    prefix = (cands.select("session", "item", "c_from_session", _w=pl.col("c_cov_score_rel").fill_null(0.0),
                           _p=pl.col("tokens").list.head(2).list.join(" "))
              .with_columns(c_prefix_n=pl.len().over("session", "_p").cast(pl.Int32) - 1,
                            c_prefix_session=pl.col("c_from_session").cast(pl.Int32).sum().over("session", "_p")
                            - pl.col("c_from_session").cast(pl.Int32),
                            c_prefix_mass=pl.col("_w").sum().over("session", "_p") - pl.col("_w"))
              .select("session", "item", "c_prefix_n", "c_prefix_session", "c_prefix_mass"))
    per_cand = (cand_tok.join(n_titles, on="session", how="left")
                .group_by("session", "item")
                .agg(si_support_mean=(pl.col("others") / (pl.col("s_n_titles") - pl.col("c_from_session"))
                                      .clip(lower_bound=1)).mean(),
                     si_overlap=(pl.col("others") > 0).mean(),
                     si_overlap_last=pl.col("in_last").fill_null(0).mean(),
                     si_shared_last=pl.col("in_last").fill_null(0).sum(),
                     t_df_mean=pl.col("log_df").fill_null(0).mean(),
                     t_df_min=pl.col("log_df").fill_null(0).min()))
    sess = (long.group_by("session").agg(s_len=pl.col("item").count().cast(pl.Int32),
                                         s_distinct=pl.col("item").n_unique().cast(pl.Int32))
            .join(locale, on="session")
            .with_columns(s_locale=pl.col("locale").replace_strict(list(LOCALES), list(range(len(LOCALES))),
                                                                   default=-1, return_dtype=pl.Int8)))
    return (cands.join(per_cand, on=["session", "item"], how="left", maintain_order="left")
            .join(cov_mass, on=["session", "item"], how="left", maintain_order="left")
            .join(prefix, on=["session", "item"], how="left", maintain_order="left")
            .join(sess, on="session", how="left", maintain_order="left")
            .join(n_titles, on="session", how="left", maintain_order="left")
            .with_columns(pl.col("s_n_titles").fill_null(0),
                          t_len_ratio=pl.col("t_n_tok") / pl.col("_med_len").fill_null(pl.col("t_n_tok")))
            .select("session", "item", "locale", "title", "tokens", *FEATURES))


# -------------------------------------------------------------------------------------------- chooser

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
    last = stats.filter(joined["c_recency"].fill_null(-1) == 0)
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
    return {"objective": "regression", "num_leaves": cfg.num_leaves, "learning_rate": cfg.learning_rate,
            "min_data_in_leaf": cfg.min_child_samples, "bagging_fraction": 0.8, "bagging_freq": 1,
            "feature_fraction": 0.8, "seed": seed, "deterministic": True, "force_row_wise": True,
            "num_threads": 1, "verbosity": -1}


def fit(train: pl.DataFrame, cfg: ChooserConfig, seed: int) -> lgb.Booster:
    """LightGBM regressor of ``bleu`` on FEATURES (``train`` = label() output)."""
    data = lgb.Dataset(train.select(FEATURES).to_numpy(), train["bleu"].to_numpy(), feature_name=FEATURES,
                       free_raw_data=True)
    return lgb.train(_lgb_params(cfg, seed), data, num_boost_round=cfg.n_estimators)


def predict(model: lgb.Booster, cands: pl.DataFrame) -> pl.DataFrame:
    return cands.with_columns(pred=pl.Series(model.predict(cands.select(FEATURES).to_numpy()), dtype=pl.Float64))


def out_of_fold(train: pl.DataFrame, cfg: ChooserConfig, seed: int) -> pl.DataFrame:
    """``train`` with ``pred`` from models that never saw the session (folds by session id)."""
    # A multiplicative hash of the id, so the folds do not follow any pattern in the session ids.
    fold = (((pl.col("session").cast(pl.Int64) * 2654435761) % 2**32) // 2**16) % cfg.folds
    parts = []
    for k in range(cfg.folds):
        model = fit(train.filter(fold != k), cfg, seed)
        parts.append(predict(model, train.filter(fold == k)))
    return pl.concat(parts).sort("session", maintain_order=True)


def choose(scored: pl.DataFrame, column: str = "pred") -> pl.DataFrame:
    """The best candidate of each session by ``column`` (ties: candidate order).

    Returns session, locale, item, title, tokens, and the features (used by the editor).
    """
    return (scored.with_columns(_i=pl.int_range(pl.len()))
            .sort(["session", column, "_i"], descending=[False, True, False])
            .unique("session", keep="first", maintain_order=True).drop("_i"))


# --------------------------------------------------------------------------------------------- editor

def tail_support(choice: pl.DataFrame, cands: pl.DataFrame) -> pl.DataFrame:
    """Add ``supported``: per token of the choice, whether another session title holds it.

    Args:
        choice: choose() output. cands: the candidates (the session's own titles are those with
        c_from_session = 1).
    """
    own = (cands.filter(pl.col("c_from_session") == 1).select("session", "item", tok=pl.col("tokens").list.unique())
           .explode("tok", empty_as_null=False).drop_nulls("tok"))
    long = (choice.select("session", "item", "tokens").with_row_index("_r")
            .explode("tokens", empty_as_null=False).rename({"tokens": "tok"}).with_columns(_j=pl.int_range(pl.len()).over("_r")))
    held = (long.join(own.rename({"item": "_other"}), on=["session", "tok"])
            .filter(pl.col("_other") != pl.col("item")).select("_r", "_j").unique().with_columns(_s=pl.lit(True)))
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
    def row_stats(edits: Edits) -> pl.DataFrame:
        return bleu_stats(apply_edits(choice, edits)["edited"], ref)

    steps = {"chosen": corpus_bleu(row_stats(Edits(trim={}, drop_tail_min=0)))}
    by_min = {m: row_stats(Edits(trim={}, drop_tail_min=m)) for m in cfg.drop_tail_min}
    best_min = max(cfg.drop_tail_min, key=lambda m: (corpus_bleu(by_min[m]), -m))
    current = by_min[best_min]
    steps["drop_tail"] = corpus_bleu(current)
    locales = sorted(choice["locale"].unique().to_list())
    # Row statistics under each cap are computed once; a locale's cap then only swaps its rows.
    by_cap = {c: row_stats(Edits(trim=dict.fromkeys(locales, c), drop_tail_min=best_min)) for c in cfg.trim_grid}
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


def corpus_bleu_of(hyp_tokens: pl.Series, ref_tokens: pl.Series) -> float:
    return corpus_bleu(bleu_stats(hyp_tokens, ref_tokens))


def fill_missing(sessions: pl.DataFrame, titles: pl.DataFrame, fallback: pl.DataFrame) -> pl.DataFrame:
    """session, next_item_title for every session: ``titles`` where present, else ``fallback``'s."""
    return (sessions.select("session").join(titles, on="session", how="left", maintain_order="left")
            .join(fallback.rename({"next_item_title": "_fb"}), on="session", how="left", maintain_order="left")
            .select("session", next_item_title=pl.coalesce("next_item_title", "_fb", pl.lit(""))))

