"""Family ``deep`` (prefix ``si_deep_``): each deep session encoder's score for every candidate.

The gru4rec/sasrec candidate sources only propose their own top k, so their ``cand_`` columns are
null for most of the union. Here each model scores *every* candidate (``DeepSource.score_pairs``:
the inner product of the session vector with the item's [embedding, bias]), and the candidate's
rank among the session's candidates by that score, so the ranker can weigh a co-visitation or
text candidate by what the sequence model thinks of it. With ``features.deep_similarity`` also the
cosine of the candidate's item embedding with the session's last item's (``si_deep_<type>_last_cos``):
the item-to-item view of the same model, which the session vector blends with the rest of the prefix.

The checkpoints come from the globs in ``features.deep_models`` (registry type -> glob) and are
matched to the split's history exactly as the candidate sources match them: the valid split never
gets a model that saw its targets. A glob with no matching checkpoint is an error, not a skip.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from candidates.base import query_sessions
from candidates.registry import source_class
from features.base import Chunk, FeaturesConfig, Inputs


@dataclass(frozen=True)
class State:
    models: dict  # registry type -> its Scorer (candidates/deep/source.py)


def fit(inputs: Inputs, cfg: FeaturesConfig) -> State:
    models = {}
    for kind, pattern in cfg.deep_models.items():
        cls = source_class(kind)
        if not hasattr(cls, "scorer"):
            raise ValueError(f"features.deep_models.{kind}: {kind!r} is not a deep source type")
        models[kind] = cls.scorer(pattern, inputs.history, inputs.items)
    return State(models)


def add(frame: pl.DataFrame, chunk: Chunk, state: State, cfg: FeaturesConfig) -> pl.DataFrame:
    sessions = query_sessions(chunk.queries, chunk.events)
    pairs = frame.select("session", "item")
    columns = []
    if cfg.deep_similarity:
        last = (sessions.drop_nulls("item").group_by("session")
                .agg(pl.col("item").sort_by("position").last().alias("last")))
        pairs_last = pairs.join(last, on="session", how="left", maintain_order="left")
    for kind, model in state.models.items():
        scored = model.score_pairs(sessions, pairs)  # in the order of pairs
        columns += scored.select(
            pl.col("score").alias(f"si_deep_{kind}_score"),
            pl.col("score").rank("ordinal", descending=True).over("session").cast(pl.Int32)
            .alias(f"si_deep_{kind}_rank")).get_columns()
        if cfg.deep_similarity:
            cos = model.item_cosine(pairs_last["item"], pairs_last["last"])
            columns.append(cos.alias(f"si_deep_{kind}_last_cos"))
    return frame.hstack(columns) if columns else frame
