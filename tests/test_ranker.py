"""The lambdarank ranker on tiny planted data, and the chunked prediction path."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from core import sampling
from pipeline.predictions import fill_with_popular
from pipeline.ranking import complete, mrr_report, ranked_top, source_ranker
from rankers import lgbm
from tests._params import section

CFG = section(lgbm.RankerConfig, "ranker", num_boost_round=60, early_stopping_rounds=20, num_leaves=7,
              min_data_in_leaf=5, learning_rate=0.2, num_threads=1, neg_sample_rate=0.5, eval_fraction=0.3,
              max_train_sessions=0, locale_weights={}, per_task=False, feature_fraction=0.5, lambda_l2=10.0,
              truncation_level=100)


def planted(n_sessions: int = 240, n_cands: int = 15, seed: int = 0) -> pl.DataFrame:
    """Candidates where si_signal carries the label (noisily) and cand_noise_score carries nothing.

    Every third session lacks its target (all labels 0); locales alternate DE and ES.
    """
    rng = np.random.default_rng(seed)
    session = np.repeat(np.arange(n_sessions, dtype=np.int32), n_cands)
    item = np.tile(np.arange(n_cands, dtype=np.int32), n_sessions)
    positive = rng.integers(0, n_cands, n_sessions)
    label = ((item == positive[session]) & (session % 3 != 0)).astype(np.int8)
    return pl.DataFrame({
        "session": session, "item": item, "label": label,
        "si_signal": (label * 1.5 + rng.normal(size=len(label))).astype(np.float32),
        "cand_noise_score": rng.random(len(label)).astype(np.float32),
        "cand_noise_rank": np.ones(len(label), dtype=np.int32),
        "s_locale": np.where(session % 2 == 0, 0, 3).astype(np.int32),
    })


def fit_planted(frame: pl.DataFrame, cfg: lgbm.RankerConfig = CFG, seed: int = 1):
    folds = lgbm.assign_folds(frame["session"], cfg.eval_fraction, seed)
    frame = frame.join(folds, on="session")
    train = lgbm.training_rows(frame.filter(~pl.col("is_eval")), cfg.neg_sample_rate, seed)
    stop = lgbm.training_rows(frame.filter(pl.col("is_eval")), 1.0, seed)
    features = ["si_signal", "cand_noise_score", "s_locale"]
    return lgbm.train(train, stop, features, cfg, seed), frame.filter(pl.col("is_eval"))


def mrr(ranked: pl.DataFrame, labelled: pl.DataFrame) -> float:
    hits = ranked.join(labelled.filter(pl.col("label") == 1), on=["session", "item"])
    return float((1.0 / hits["rank"]).sum() / labelled["session"].n_unique())


def test_training_rows_drop_sessions_without_target_and_sample_negatives():
    frame = planted()
    rows = lgbm.training_rows(frame, 0.5, seed=3)
    assert set(rows["session"].unique()) == set(frame.filter(pl.col("label") == 1)["session"])
    assert rows["label"].sum() == frame["label"].sum()  # every positive kept
    negatives = rows.height - rows["label"].sum()
    assert 0.35 < negatives / (frame.filter(pl.col("session") % 3 != 0).height - frame["label"].sum()) < 0.65
    assert rows.equals(lgbm.training_rows(frame, 0.5, seed=3))


def test_folds_are_session_grouped_and_seeded():
    sessions = pl.Series("session", np.arange(1000, dtype=np.int32))
    folds = lgbm.assign_folds(sessions, 0.2, seed=5)
    assert folds.height == 1000 and 150 < folds["is_eval"].sum() < 250
    assert folds.equals(lgbm.assign_folds(sessions.reverse(), 0.2, seed=5))


def test_ranker_learns_planted_signal_and_is_deterministic():
    frame = planted()
    booster, held = fit_planted(frame)
    scored = lgbm.score(booster, held)
    learned = mrr(scored, held)
    by_noise = mrr(lgbm.rank_by(held, "cand_noise_score"), held)
    by_signal = mrr(lgbm.rank_by(held, "si_signal"), held)  # the best any model can do here
    assert learned > 0.9 * by_signal and learned > 2 * by_noise
    importance = lgbm.importance(booster)
    assert importance["feature"][0] == "si_signal"
    again, _ = fit_planted(frame)
    assert np.array_equal(booster.predict(held.select(booster.feature_name()).to_numpy()),
                          again.predict(held.select(booster.feature_name()).to_numpy()))


def test_per_task_models_save_load_and_score_their_locales(tmp_path):
    frame = planted()
    cfg = dataclasses.replace(CFG, per_task=True, locale_weights={"ES": 2.0})
    models = {}
    for name, locales in lgbm.model_groups(cfg).items():
        codes = [0 if "DE" in locales else 3]
        booster, _ = fit_planted(frame.filter(pl.col("s_locale").is_in(codes)), cfg)
        models[name] = booster
    lgbm.save(models, tmp_path, cfg, seed=1)
    loaded = lgbm.load(tmp_path)
    assert set(loaded) == {"task1", "task2"} and loaded["task2"][1] == ("ES", "FR", "IT")
    scored = lgbm.score_models(loaded, frame)
    assert scored.height == frame.height
    es = frame.filter(pl.col("s_locale") == 3)
    direct = lgbm.score(models["task2"], es).sort("session", "item")["score"].to_numpy()
    assert np.allclose(scored.join(es.select("session", "item"), on=["session", "item"], how="semi")
                       .sort("session", "item")["score"].to_numpy(), direct)


def test_locale_weights_reject_unknown_locale():
    with pytest.raises(ValueError, match="XX"):
        dataclasses.replace(CFG, locale_weights={"XX": 2.0})


def test_chunked_prediction_equals_unchunked():
    frame = planted()
    booster, _ = fit_planted(frame)
    models = {"model": (booster, ("DE", "JP", "UK", "ES", "FR", "IT"))}
    rank = lambda f: lgbm.score_models(models, f)  # noqa: E731
    whole = ranked_top([frame], rank, k=5)
    chunks = [frame.filter(pl.col("session") // 50 == c) for c in range(5)]
    chunked = ranked_top(chunks, rank, k=5)
    assert whole.sort("session", "rank").equals(chunked.sort("session", "rank"))
    assert whole.group_by("session").len()["len"].max() == 5


def test_complete_fills_from_popularity_and_reports_mrr():
    items = pl.DataFrame({"item": [0, 1, 2, 3, 4], "locale": ["DE"] * 4 + ["ES"], "in_catalog": [True] * 5},
                         schema_overrides={"item": pl.Int32})
    history = pl.DataFrame({"session": [9, 9, 9, 9, 1], "position": [0, 1, 2, 3, 0], "item": [3, 3, 2, 4, 3]},
                           schema={"session": pl.Int32, "position": pl.Int32, "item": pl.Int32})
    queries = pl.DataFrame({"session": [1, 2], "locale": ["DE", "ES"]},
                           schema_overrides={"session": pl.Int32})
    cands = pl.DataFrame({"session": [1], "item": [0], "cand_a_score": [1.0]},
                         schema_overrides={"session": pl.Int32, "item": pl.Int32})
    top = complete(ranked_top([cands], source_ranker("a")), queries, history, items, k=3)
    # session 1: its candidate, then DE popularity (2 before 1), its own item 3 never
    assert top.filter(pl.col("session") == 1)["item"].to_list() == [0, 2, 1]
    assert top.filter(pl.col("session") == 2)["item"].to_list() == [4]  # ES has one item
    targets = pl.DataFrame({"session": [1, 2], "item": [2, 3]}, schema_overrides={"session": pl.Int32,
                                                                                  "item": pl.Int32})
    report = mrr_report(top, queries, targets)
    assert report["all"]["mrr@100"] == pytest.approx(0.25)
    assert report["task1"]["mrr@100"] == pytest.approx(0.5) and report["ES"]["recall@100"] == 0.0


def test_popularity_fill_equals_a_plain_merge():
    """fill_with_popular reads only the fill each session needs: the same rows as merging every
    session's ranked items with its locale's whole popularity list, own items out, first rank kept."""
    rng = np.random.default_rng(3)
    n_items, k = 60, 10
    popular = pl.DataFrame({"item": np.arange(n_items, dtype=np.int32), "locale": ["DE"] * 40 + ["ES"] * 20})
    popular = popular.with_columns(pop_rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("locale"))
    queries = pl.DataFrame({"session": np.arange(30, dtype=np.int32), "locale": ["DE"] * 20 + ["ES"] * 10})
    # own items: session 0 is long (30 items), others 0-4; ranked heads of 0, a few, or more than k
    own = pl.DataFrame({"session": np.r_[np.zeros(30), rng.integers(1, 30, 60)].astype(np.int32),
                        "item": np.r_[np.arange(30), rng.integers(0, 40, 60)].astype(np.int32)}).unique()
    own = own.join(queries, on="session").join(popular.select("item", "locale"), on=["item", "locale"],
                                                   how="semi").select("session", "item")
    heads = [(s, i, r + 1) for s in range(0, 30, 2) for r, i in
             enumerate(rng.choice(popular.filter(pl.col("locale") == ("DE" if s < 20 else "ES"))["item"],
                                  size=int(rng.integers(1, 15)), replace=False))]
    schema = {"session": pl.Int32, "item": pl.Int32, "rank": pl.Int32}
    ranked = pl.DataFrame(heads, schema=schema, orient="row")
    got = fill_with_popular(ranked, queries, own, popular, k=k, chunk=7)
    fill = queries.join(popular, on="locale").select("session", "item", rank=pl.col("pop_rank") + 10**9)
    want = (pl.concat([frame.with_columns(pl.col("rank").cast(pl.Int64)) for frame in (ranked, fill)])
            .join(own, on=["session", "item"], how="anti").sort("session", "rank")
            .unique(["session", "item"], keep="first", maintain_order=True)
            .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session"))
            .filter(pl.col("rank") <= k))
    assert got.sort("session", "rank").equals(want.sort("session", "rank"))


def test_negative_sampling_does_not_depend_on_chunking():
    frame = planted()
    whole = lgbm.training_rows(frame, 0.3, seed=4)
    halves = pl.concat([lgbm.training_rows(part, 0.3, seed=4)
                        for part in (frame.filter(pl.col("session") < 100),
                                     frame.filter(pl.col("session") >= 100))])
    assert whole.equals(halves)
    assert not whole.equals(lgbm.training_rows(frame, 0.3, seed=5))


def test_sample_sessions_is_a_seeded_capped_subset():
    sessions = pl.Series("session", np.arange(1000, dtype=np.int32))
    picked = sampling.sample_sessions(sessions, 100, seed=1)
    assert len(picked) == 100 and picked.is_sorted() and set(picked) <= set(sessions)
    assert picked.equals(sampling.sample_sessions(sessions.reverse(), 100, seed=1))
    assert not picked.equals(sampling.sample_sessions(sessions, 100, seed=2))
    assert sampling.sample_sessions(sessions, 0, seed=1).equals(sessions)
