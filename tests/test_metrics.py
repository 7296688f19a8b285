import math

import polars as pl
import pytest

from core.metrics import bleu, ranking_metrics, target_ranks


def test_ranks_and_metrics_by_hand():
    preds = pl.Series([["a", "b", "c"], ["x", "y"], ["q"], ["m", "n", "o", "p"]])
    truth = pl.Series(["b", "z", "q", "p"])
    assert target_ranks(preds, truth).to_list() == [2, None, 1, 4]
    got = ranking_metrics(preds, truth)
    assert got["mrr@100"] == pytest.approx((1 / 2 + 0 + 1 + 1 / 4) / 4)
    assert got["recall@100"] == pytest.approx(3 / 4)
    assert got["ndcg@100"] == pytest.approx((1 / math.log2(3) + 0 + 1 + 1 / math.log2(5)) / 4)


def test_only_the_first_k_count():
    preds = pl.Series([[str(i) for i in range(150)]])
    assert ranking_metrics(preds, pl.Series(["120"]))["recall@100"] == 0.0
    assert ranking_metrics(preds, pl.Series(["99"]))["mrr@100"] == pytest.approx(1 / 100)


def test_bleu_matches_sacrebleu_scale():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert bleu(["completely different words here"], ["the cat sat on the mat"]) == pytest.approx(0.0)
    partial = bleu(["the cat sat on a mat today"], ["the cat sat on the mat"])
    assert 0.0 < partial < 1.0
