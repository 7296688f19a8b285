"""Family ``candidate`` (prefix ``cand_``): every source's score and rank, normalised within the session.

The source columns are discovered from the union frame (``cand_<name>_score``/``cand_<name>_rank``),
so adding a source to params ``candidates.sources`` adds its features without touching this file.
"""

from __future__ import annotations

import polars as pl

from candidates.columns import rank_col, score_col, source_names
from features.base import Chunk, FeaturesConfig, Inputs


def fit(inputs: Inputs, cfg: FeaturesConfig) -> None:
    return None


def add(frame: pl.DataFrame, chunk: Chunk, state: None, cfg: FeaturesConfig) -> pl.DataFrame:
    """Adds cand_n_sources, and per source: cand_<s>_norm (score / session max; sources' scales
    differ, the share of the session's best is comparable), cand_<s>_gap (session max - score) and
    cand_<s>_rank_pct (rank / number the source proposed in the session). Nulls stay null where the
    source did not propose the item (LightGBM routes missing values)."""
    exprs = [pl.col("n_sources").cast(pl.Int32).alias("cand_n_sources")]
    for name in source_names(frame.columns):
        score, rank = pl.col(score_col(name)), pl.col(rank_col(name))
        best = score.max().over("session")
        exprs += [
            pl.when(best > 0).then(score / best).otherwise(None).cast(pl.Float32).alias(f"cand_{name}_norm"),
            (best - score).cast(pl.Float32).alias(f"cand_{name}_gap"),
            (rank / rank.max().over("session")).cast(pl.Float32).alias(f"cand_{name}_rank_pct"),
        ]
    return frame.with_columns(exprs)
