"""Task 3 stage one: candidate titles for each session, from sources named in params.yaml.

Two kinds of candidate, every one an item whose catalogue title could be the next title:

- the session's own most recent distinct items (``task3.chooser.max_session_items``): the next
  product is usually a variant of one of them;
- items proposed by the candidate sources of ``task3.chooser.sources``, each a params entry
  ``name -> {type: <candidates/registry.py key>, k: <cap per session>, <the type's knobs>}`` built
  through the same registry as stage one of tasks 1-2 (``candidates.union.build_sources``), so a
  title source is a params entry, not code here.

Frames:
    own:        session:Int32, item:Int32, si_recency:Int32 (0 = last item), si_count:Int32,
                si_in_session:Int8 (1)
    neighbours: session:Int32, item:Int32, si_in_session:Int8 (0), and per source ``name``
                cand_<name>_rank:Int32, cand_<name>_score:Float64,
                cand_<name>_score_rel:Float64 (score / the session's best score of that source)
    candidates: both, joined with the titles, one row per distinct (session, title): the session's
                own items first (by recency), then the sources' items by their best rank.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from candidates.union import SourceSpec, build_sources


def score_rel_col(name: str) -> str:
    return f"cand_{name}_score_rel"


def sources(specs: dict[str, dict[str, Any]], seed: int) -> list[SourceSpec]:
    """The title sources of ``task3.chooser.sources`` (params order), unfitted."""
    return build_sources(specs, seed, where="task3.chooser.sources")


def own_items(long: pl.DataFrame, max_items: int) -> pl.DataFrame:
    """The ``own`` frame: each session's last ``max_items`` distinct items, by recency.

    Args:
        long: session, locale, position, item (titles.text.session_events).
    """
    return (long.drop_nulls("item").group_by("session", "item")
            .agg(pos=pl.col("position").max(), si_count=pl.len().cast(pl.Int32))
            .sort(["session", "pos"], descending=[False, True])
            .with_columns(si_recency=pl.int_range(pl.len(), dtype=pl.Int32).over("session"))
            .filter(pl.col("si_recency") < max_items)
            .select("session", "item", "si_recency", "si_count", si_in_session=pl.lit(1, pl.Int8)))


def neighbours(long: pl.DataFrame, fitted: list[SourceSpec]) -> pl.DataFrame:
    """The ``neighbours`` frame: every fitted source's top ``k`` for each session, outer-joined."""
    out: pl.DataFrame | None = None
    for spec in fitted:
        name = spec.name
        score = pl.col(f"cand_{name}_score")
        frame = (spec.source.generate(long, spec.k)
                 .select("session", "item", pl.col("rank").alias(f"cand_{name}_rank"),
                         pl.col("score").cast(pl.Float64).alias(f"cand_{name}_score"))
                 .with_columns((score / score.max().over("session")).alias(score_rel_col(name))))
        out = frame if out is None else out.join(frame, on=["session", "item"], how="full", coalesce=True)
    if out is None:
        out = pl.DataFrame(schema={"session": pl.Int32, "item": pl.Int32})
    return out.with_columns(si_in_session=pl.lit(0, pl.Int8))


def candidates(own: pl.DataFrame, near: pl.DataFrame, titles: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """The ``candidates`` frame, with title, tokens and i_n_tok; items without a title are dropped.

    The order (own items by recency, then source items by their best rank over ``names``) decides
    which row stays when two items share a title.
    """
    best_rank = (pl.min_horizontal([pl.col(f"cand_{n}_rank") for n in names]) if names
                 else pl.lit(None, pl.Int32))
    return (pl.concat([own, near], how="diagonal_relaxed")
            .join(titles.select("item", "title", "tokens", i_n_tok="n_tok"), on="item")
            .filter(pl.col("i_n_tok") > 0)
            .with_columns(_own_first=1 - pl.col("si_in_session"),
                          _order=pl.coalesce(pl.col("si_recency"), best_rank))
            .sort("session", "_own_first", "_order")
            .unique(["session", "title"], keep="first", maintain_order=True)
            .drop("_own_first", "_order"))
