"""Stage ``train_ranker`` on Dask: lambdarank with ``lightgbm.dask.DaskLGBMRanker``, and the completion's
counts on the workers (``predict`` on Dask: pipeline/engine/predict.py).

    models = fit(dask_cfg, train_rows, stop_rows, ranker_cfg, seed)      # same as train_ranker.fit
    fill = completion(dask_cfg, queries, split_dir, prepared_dir)        # same as ranking.completion

Training: the training rows (sorted by session, item, as rankers.lgbm builds its Dataset) are cut
into one block of whole sessions per worker partition, so a query group never straddles partitions;
LightGBM trains data-parallel over the workers (``tree_learner: data``, histograms summed across them).
``lightgbm.dask`` has no early stopping (each worker would see only its own eval rows), so it is done
here: trees are added ``early_stopping_rounds`` at a time (``init_model`` continues the model), after
each block the eval-fold rows are scored tree by tree on the client and MAP@100 (= MRR@100 with one
target per session, query-weighted like LightGBM's metric) is tracked; training stops
``early_stopping_rounds`` past the best iteration, and the model is saved cut at it, like
``lgb.early_stopping``. Same model files as the single-machine ranker (rankers.lgbm.save).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from features.base import LOCALE_CODE
from features.registry import CATEGORICAL, feature_columns
from pipeline.engine import DaskConfig, dask_client, n_workers
from rankers import lgbm

log = logging.getLogger(__name__)

MAP_AT = 100


def _dask_arrays(client: Any, frame: pl.DataFrame, features: list[str], cfg: lgbm.RankerConfig,
                 n_parts: int) -> dict[str, Any]:
    """X, y, group, sample_weight as dask arrays, persisted on the workers: partition i holds whole
    sessions, and group's chunk i counts exactly the rows of X's chunk i."""
    import dask.array as da

    frame = frame.sort("session", "item")
    groups = frame.group_by("session", maintain_order=True).len()["len"].to_numpy()
    blocks = [b for b in np.array_split(np.arange(len(groups)), min(n_parts, len(groups))) if len(b)]
    group_chunks = tuple(len(b) for b in blocks)
    row_chunks = tuple(int(groups[b].sum()) for b in blocks)
    columns = {"X": lgbm.feature_matrix(frame, features), "y": frame["label"].to_numpy(),
               "group": groups}
    weight = lgbm.row_weights(frame, cfg)
    if weight is not None:
        columns["sample_weight"] = weight
    # Partition i lives on worker i (in address order): LightGBM trains each worker on the parts it holds
    # and finds each feature's bins on one worker's rows, so a fixed placement makes the model reproducible.
    workers = sorted(client.scheduler_info()["workers"])
    row_ends, group_ends = np.cumsum((0, *row_chunks)), np.cumsum((0, *group_chunks))
    arrays: dict[str, list] = {name: [] for name in columns}
    for i in range(len(blocks)):
        for name, values in columns.items():
            lo, hi = (group_ends[i], group_ends[i + 1]) if name == "group" else (row_ends[i], row_ends[i + 1])
            arrays[name].append(client.persist(
                da.from_array(values[lo:hi], chunks=values[lo:hi].shape),
                workers=[workers[i % len(workers)]], allow_other_workers=False))
    return {name: da.concatenate(parts) for name, parts in arrays.items()}


class _EvalFold:
    """The early-stopping rows, scored one tree at a time: MAP@100 after every iteration."""

    def __init__(self, frame: pl.DataFrame, features: list[str], cfg: lgbm.RankerConfig):
        frame = frame.sort("session", "item")
        self.x = lgbm.feature_matrix(frame, features)
        self.qid = frame["session"].rank("dense").cast(pl.Int64).to_numpy() - 1
        labels = frame["label"].to_numpy()
        self.n_queries = int(self.qid.max()) + 1 if len(self.qid) else 0
        self.pos = np.full(self.n_queries, -1)
        self.pos[self.qid[labels == 1]] = np.flatnonzero(labels == 1)  # one target per session
        weight = lgbm.row_weights(frame, cfg)
        self.weight = (np.ones(self.n_queries) if weight is None
                       else np.bincount(self.qid, weights=weight) / np.bincount(self.qid))
        self.raw = np.zeros(len(self.qid))
        self.rows = np.arange(len(self.qid))

    def advance(self, booster: lgb.Booster, iteration: int) -> float:
        """Add tree ``iteration`` (0-based) to the scores; MAP@100 of the model with trees 0..iteration."""
        self.raw += booster.predict(self.x, start_iteration=iteration, num_iteration=1, raw_score=True)
        target = self.raw[self.pos][self.qid]
        # LightGBM's MAP sorts rows stably by score: a row tied with the target and before it ranks above it.
        above = (self.raw > target) | ((self.raw == target) & (self.rows < self.pos[self.qid]))
        rank = 1 + np.bincount(self.qid, weights=above.astype(np.float64), minlength=self.n_queries)
        ap = np.where(rank <= MAP_AT, 1.0 / rank, 0.0)
        return float((ap * self.weight).sum() / self.weight.sum())


def _params(cfg: lgbm.RankerConfig, seed: int, dcfg: DaskConfig) -> dict[str, Any]:
    params = lgbm.lgb_params(cfg, seed)
    for key in ("metric", "eval_at", "num_threads"):  # no eval set on the workers; threads per worker below
        params.pop(key, None)
    return {**params, "n_jobs": dcfg.threads_per_worker, "tree_learner": "data"}


def train_on(client: Any, train_rows: pl.DataFrame, stop_rows: pl.DataFrame, features: list[str],
             cfg: lgbm.RankerConfig, seed: int, dcfg: DaskConfig) -> lgb.Booster:
    """rankers.lgbm.train on the cluster: the booster with ``best_iteration`` set (early stopping above)."""
    from lightgbm.dask import DaskLGBMRanker

    if train_rows.is_empty() or stop_rows.is_empty():
        raise ValueError(f"nothing to train on: {train_rows.height} training rows, "
                         f"{stop_rows.height} eval rows")
    data = _dask_arrays(client, train_rows, features, cfg, n_workers(client) * dcfg.partitions_per_worker)
    evals = _EvalFold(stop_rows, features, cfg)
    categorical = [features.index(c) for c in CATEGORICAL if c in features]
    booster, best, best_score, done = None, 0, -1.0, 0
    while done < cfg.num_boost_round and done - best < cfg.early_stopping_rounds:
        block = min(cfg.early_stopping_rounds, cfg.num_boost_round - done)
        model = DaskLGBMRanker(client=client, n_estimators=block, **_params(cfg, seed, dcfg))
        model.fit(data["X"], data["y"], group=data["group"], sample_weight=data.get("sample_weight"),
                  feature_name=features, categorical_feature=categorical, init_model=booster)
        booster = model.booster_
        for it in range(done, booster.current_iteration()):
            score = evals.advance(booster, it)
            if score > best_score:
                best, best_score = it + 1, score
        done = booster.current_iteration()
        log.info("dask ranker: %d trees, best iteration %d, eval map@%d %.4f", done, best, MAP_AT, best_score)
    booster.best_iteration = best
    return booster


def fit(dcfg: DaskConfig, train_rows: pl.DataFrame, stop_rows: pl.DataFrame, cfg: lgbm.RankerConfig,
        seed: int) -> dict[str, lgb.Booster]:
    """pipeline.train_ranker.fit on the cluster of ``dcfg``: model name -> booster, one per locale group."""
    features = feature_columns(train_rows.columns)
    models = {}
    with dask_client(dcfg) as client:
        for name, locales in lgbm.model_groups(cfg).items():
            in_group = pl.col("s_locale").is_in([LOCALE_CODE[loc] for loc in locales])
            models[name] = train_on(client, train_rows.filter(in_group), stop_rows.filter(in_group), features,
                                    cfg, seed, dcfg)
    return models


def _own(history: str, queries: str, lo: int, hi: int) -> pl.DataFrame:
    """One session range: the queries' own events (session, item)."""
    from pipeline.engine.store import read_range

    ids = read_range(queries, lo, hi, ["session"])
    return read_range(history, lo, hi, ["session", "item"]).join(ids, on="session", how="semi")


def _popularity(items: str, folder: str, *parts: None) -> pl.DataFrame:
    """The locale popularity from :func:`pipeline.engine.item_counts`' files in ``folder`` (``parts``:
    their tasks, waited for)."""
    from pipeline.engine import summed_item_counts
    from pipeline.engine.store import read
    from pipeline.predictions import popularity_from_counts

    return popularity_from_counts(summed_item_counts(folder), read(items, ["item", "locale", "in_catalog"]))


def _concat(*parts: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(parts)


def completion(dcfg: DaskConfig, queries: pl.DataFrame, split: Path, prepared: Path,
               k: int | None = None) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """``pipeline.ranking.completion`` of the split's history without reading it here: the workers read it
    by session range and return the queries' own items and the per-locale popularity (one row per item)."""
    from pipeline.engine import id_ranges, item_counts, scratch, store
    from pipeline.ranking import K, completion_from

    history, queries_path = store.url(split / "history.parquet"), store.url(split / "queries.parquet")
    with dask_client(dcfg) as client, scratch(dcfg, "completion") as root:
        ranges = id_ranges(history, n_workers(client) * dcfg.partitions_per_worker)
        folder = store.join(root, "counts")
        counts = item_counts(client, history, ranges, folder)
        popular = client.submit(_popularity, store.url(prepared / "items.parquet"), folder, *counts,
                                pure=False).result()
        own = client.submit(_concat, *[client.submit(_own, history, queries_path, lo, hi, pure=False)
                                       for lo, hi in ranges], pure=False).result()
    own = own.join(queries.select("session"), on="session", how="semi")
    return completion_from(queries, own, popular, K if k is None else k)
