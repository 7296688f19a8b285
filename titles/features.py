"""Task 3 stage one, features of the candidate titles (titles.candidates), named as in features/.

Names say their entity, as the task 1-2 features do: ``s_`` the session, ``i_`` the candidate
item's title, ``si_`` the candidate within its session, ``cand_<source>_`` a title source's rank
and score; the locale code ``s_locale`` is Int32 with the codes of ``features.base.locale_code``
(core.raw.LOCALES order, -1 unknown). The chooser's columns come from :func:`columns`, never
from a hand-kept list elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from core.raw import LOCALES
from titles.candidates import candidates, neighbours, own_items, score_rel_col
from titles.text import session_events

if TYPE_CHECKING:
    from candidates.union import SourceSpec

SESSION_ITEM = ["si_in_session", "si_recency", "si_count"]
TITLE = ["i_n_tok", "si_len_ratio", "i_df_mean", "i_df_min",
         "si_support_mean", "si_overlap", "si_overlap_last", "si_shared_last", "si_cand_support",
         "si_prefix_n", "si_prefix_session", "si_prefix_mass"]
SESSION = ["s_len", "s_distinct", "s_n_titles", "s_locale"]


def columns(names: list[str]) -> list[str]:
    """The chooser's feature columns for title sources ``names`` (task3.chooser.sources), in order."""
    per_source = [c for n in names for c in (f"cand_{n}_rank", f"cand_{n}_score", score_rel_col(n))]
    return [*SESSION_ITEM, *per_source, *TITLE, *SESSION]


def locale_code(column: str = "locale") -> pl.Expr:
    """Int32 locale code, LOCALES order, -1 for an unknown locale (as features.base.locale_code)."""
    return pl.col(column).replace_strict(list(LOCALES), list(range(len(LOCALES))), default=-1,
                                         return_dtype=pl.Int32)


def candidate_titles(sessions: pl.DataFrame, events: pl.DataFrame, fitted: list[SourceSpec],
                     items: pl.DataFrame, titles: pl.DataFrame, max_session_items: int) -> pl.DataFrame:
    """Candidate titles with their features for each session.

    Args:
        sessions: session, locale. events: session, position, item (their prev_items).
        fitted: the title sources (titles.candidates.sources), fitted on a history that holds no
            evaluated target.
        items: the prepared items. titles: titles.text.item_titles(items).

    Returns:
        session, item, locale, title, tokens and the ``columns`` of the sources, one row per distinct
        (session, title), sorted by session then candidate order (session items by recency first).
    """
    names = [spec.name for spec in fitted]
    long = session_events(sessions, events)
    own = own_items(long, max_session_items)
    cands = candidates(own, neighbours(long, fitted), titles, names)
    return features(cands, own.join(titles.select("item", "tokens"), on="item"), long, items, titles, names)


def token_df(titles: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """locale, token, log_df: log(1 + number of catalogue titles of the locale holding the token)."""
    return (titles.join(items.select("item", "locale"), on="item")
            .select("locale", token=pl.col("tokens").list.unique())
            .explode("token", empty_as_null=False).drop_nulls()
            .group_by("locale", "token").agg(log_df=pl.len().cast(pl.Float64).log1p()))


def features(cands: pl.DataFrame, own: pl.DataFrame, long: pl.DataFrame, items: pl.DataFrame,
             titles: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """``cands`` (titles.candidates.candidates) with the feature columns of ``columns(names)``.

    Args:
        own: the own frame joined with the titles' tokens. long: the session events.
        names: the title sources (task3.chooser.sources), in params order.

    Returns:
        session, item, locale, title, tokens, then ``columns(names)``, in ``cands`` row order.
    """
    # A candidate's source weight: its best score relative to the session's best, over the sources.
    weight = (pl.max_horizontal([pl.col(score_rel_col(n)) for n in names]) if names
              else pl.lit(None, pl.Float64)).fill_null(0.0)
    locale = long.select("session", "locale").unique("session")
    # How many of the session's own titles hold each token; a candidate from the session is one of
    # them, so its own vote is taken back out below.
    own_tok = (own.select("session", "item", "si_recency", tok=pl.col("tokens").list.unique())
               .explode("tok", empty_as_null=False)
               .drop_nulls("tok"))
    support = own_tok.group_by("session", "tok").agg(n_hold=pl.len())
    last_tok = own_tok.filter(pl.col("si_recency") == 0).select("session", "tok", in_last=pl.lit(1))
    n_titles = own.group_by("session").agg(s_n_titles=pl.len().cast(pl.Int32),
                                           _med_len=pl.col("tokens").list.len().median())
    df = token_df(titles, items)
    cand_tok = (cands.select("session", "item", "si_in_session", "si_recency",
                             tok=pl.col("tokens").list.unique())
                .explode("tok", empty_as_null=False).drop_nulls("tok")
                .join(locale, on="session")
                .join(support, on=["session", "tok"], how="left")
                .join(last_tok, on=["session", "tok"], how="left")
                .join(df.rename({"token": "tok"}), on=["locale", "tok"], how="left")
                .with_columns(others=(pl.col("n_hold").fill_null(0) - pl.col("si_in_session").cast(pl.Int64)),
                              in_last=pl.when(pl.col("si_recency") == 0).then(None)
                              .otherwise(pl.col("in_last"))))
    # Co-visitation mass behind each token: the summed neighbour scores of the other candidates
    # holding it, so a title whose words many likely neighbours share scores high.
    cov_mass = (cand_tok.join(cands.select("session", "item", _w=weight),
                              on=["session", "item"])
                .with_columns(_tok_mass=pl.col("_w").sum().over("session", "tok") - pl.col("_w"),
                              _total=pl.col("_w").sum().over("session") - pl.col("_w"))
                .group_by("session", "item")
                .agg(si_cand_support=(pl.col("_tok_mass") / pl.col("_total").clip(lower_bound=1e-9)).mean()))
    # Titles that open with the same two tokens (brand and product line on Amazon) form a family.
    prefix = (cands.select("session", "item", "si_in_session", _w=weight,
                           _p=pl.col("tokens").list.head(2).list.join(" "))
              .with_columns(si_prefix_n=pl.len().over("session", "_p").cast(pl.Int32) - 1,
                            si_prefix_session=pl.col("si_in_session").cast(pl.Int32).sum()
                            .over("session", "_p")
                            - pl.col("si_in_session").cast(pl.Int32),
                            si_prefix_mass=pl.col("_w").sum().over("session", "_p") - pl.col("_w"))
              .select("session", "item", "si_prefix_n", "si_prefix_session", "si_prefix_mass"))
    per_cand = (cand_tok.join(n_titles, on="session", how="left")
                .group_by("session", "item")
                .agg(si_support_mean=(pl.col("others") / (pl.col("s_n_titles") - pl.col("si_in_session"))
                                      .clip(lower_bound=1)).mean(),
                     si_overlap=(pl.col("others") > 0).mean(),
                     si_overlap_last=pl.col("in_last").fill_null(0).mean(),
                     si_shared_last=pl.col("in_last").fill_null(0).sum(),
                     i_df_mean=pl.col("log_df").fill_null(0).mean(),
                     i_df_min=pl.col("log_df").fill_null(0).min()))
    sess = (long.group_by("session").agg(s_len=pl.col("item").count().cast(pl.Int32),
                                         s_distinct=pl.col("item").n_unique().cast(pl.Int32))
            .join(locale, on="session")
            .with_columns(s_locale=locale_code()))
    return (cands.join(per_cand, on=["session", "item"], how="left", maintain_order="left")
            .join(cov_mass, on=["session", "item"], how="left", maintain_order="left")
            .join(prefix, on=["session", "item"], how="left", maintain_order="left")
            .join(sess, on="session", how="left", maintain_order="left")
            .join(n_titles, on="session", how="left", maintain_order="left")
            .with_columns(pl.col("s_n_titles").fill_null(0),
                          si_len_ratio=pl.col("i_n_tok") / pl.col("_med_len").fill_null(pl.col("i_n_tok")))
            .select("session", "item", "locale", "title", "tokens", *columns(names)))
