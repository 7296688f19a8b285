"""Exact leaderboard metrics.

Tasks 1/2: for each test row the rank r of the true next item in the predicted list (1-based,
absent -> no hit). MRR@K = mean(1/r), Recall@K = mean(hit), NDCG@K = mean(1/log2(r+1)) (one
relevant item, so the ideal DCG is 1). Task 3: sacrebleu corpus BLEU-4, uniform weights, brevity
penalty, reported on a 0..1 scale.
"""

from __future__ import annotations

import polars as pl
import sacrebleu

K = 100


def target_ranks(predictions: pl.Series, targets: pl.Series, k: int = K) -> pl.Series:
    """1-based rank of each target in its prediction list (first k entries), null when absent."""
    return _ranks(pl.DataFrame({"pred": predictions.list.head(k), "target": targets}))


def _ranks(frame: pl.DataFrame) -> pl.Series:
    hits = (
        frame.with_row_index("_row")
        .explode("pred", empty_as_null=True)
        .with_columns(_pos=pl.int_range(1, pl.len() + 1).over("_row"))
        .filter(pl.col("pred") == pl.col("target"))
        .group_by("_row").agg(pl.col("_pos").min())
    )
    ranked = frame.with_row_index("_row").join(hits, on="_row", how="left").sort("_row")
    return ranked["_pos"].alias("rank")


def ranking_metrics_from_ranks(ranks: pl.Series) -> dict[str, float]:
    """MRR@K, Recall@K and NDCG@K from 1-based ranks (null = miss)."""
    n = len(ranks)
    if n == 0:
        return {"mrr@100": 0.0, "recall@100": 0.0, "ndcg@100": 0.0, "n": 0}
    r = ranks.cast(pl.Float64)
    return {
        "mrr@100": float((1.0 / r).fill_null(0.0).sum() / n),
        "recall@100": float(r.is_not_null().sum() / n),
        "ndcg@100": float((1.0 / (r + 1.0).log(2)).fill_null(0.0).sum() / n),
        "n": n,
    }


def ranking_metrics(predictions: pl.Series, targets: pl.Series, k: int = K) -> dict[str, float]:
    return ranking_metrics_from_ranks(target_ranks(predictions, targets, k))


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 (sacrebleu defaults: 13a tokenizer, brevity penalty), on a 0..1 scale."""
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score / 100.0)


def within_targets(measured: dict, targets: dict) -> dict:
    """key -> {value, real, target [lo, hi or None], ok} for each measured figure against
    ``targets`` (key -> (real value, (lo, hi))); a missing value is not ok."""
    out = {}
    for key, value in measured.items():
        real, (lo, hi) = targets[key]
        out[key] = {
            "value": value,
            "real": real,
            "target": [lo, hi if hi != float("inf") else None],
            "ok": value is not None and lo <= value <= hi,
        }
    return out
