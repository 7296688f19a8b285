"""LightGBM lambdarank over the feature frame: query = session, label = is the next item.

    folds = assign_folds(sessions, cfg.eval_fraction, seed)
    train_rows = training_rows(labelled.join(folds, ...).filter(~is_eval), cfg, seed)
    ranker = train(train_rows, eval_rows, features, cfg, seed)
    scored = score(ranker, frame)

Feature frame: session:Int32, item:Int32 and the feature columns (features.registry); labelled
frames add label:Int8 (1 on the session's target). Early stopping watches MAP@100 on the eval fold,
which with one relevant item per session is exactly MRR@100.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from core.io import atomic_path, write_json
from core.raw import TASK_LOCALES
from core.sampling import seeded_uniform
from features.base import LOCALE_CODE
from features.registry import CATEGORICAL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankerConfig:
    """params.yaml ``ranker``."""

    # false: one model on all locales (locale is a feature); true: one per task
    per_task: bool
    neg_sample_rate: float            # share of negatives kept in the training fold (positives all kept)
    max_train_sessions: int           # training-fold sessions the ranker reads, a seeded sample (0: all)
    eval_fraction: float              # share of valid sessions in the early-stopping / reporting fold
    num_boost_round: int
    early_stopping_rounds: int
    learning_rate: float
    num_leaves: int
    min_data_in_leaf: int
    feature_fraction: float
    lambda_l2: float
    truncation_level: int             # lambdarank_truncation_level: pairs up to this rank matter (MRR@100)
    num_threads: int
    locale_weights: dict[str, float]  # query weight by locale (absent: 1)

    def __post_init__(self) -> None:
        unknown = set(self.locale_weights) - set(LOCALE_CODE)
        if unknown:
            raise ValueError(f"ranker.locale_weights: unknown locale(s) {sorted(unknown)}")


def model_groups(cfg: RankerConfig) -> dict[str, tuple[str, ...]]:
    """Model name -> the locales it is trained on and predicts."""
    if cfg.per_task:
        return {f"task{t}": TASK_LOCALES[t] for t in (1, 2)}
    return {"model": TASK_LOCALES[1] + TASK_LOCALES[2]}


def label(frame: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """frame + label:Int8 (1 where item is the session's target). targets: session, item."""
    hit = targets.select("session", "item", label=pl.lit(1, dtype=pl.Int8))
    return (frame.join(hit, on=["session", "item"], how="left", maintain_order="left")
            .with_columns(pl.col("label").fill_null(0)))


def assign_folds(sessions: pl.Series, eval_fraction: float, seed: int) -> pl.DataFrame:
    """session, is_eval: a seeded session-grouped fold (a session's candidates never straddle folds)."""
    ids = sessions.unique().sort()
    picked = np.random.default_rng(seed).random(len(ids)) < eval_fraction
    return pl.DataFrame({"session": ids, "is_eval": picked})


def training_rows(labelled: pl.DataFrame, neg_sample_rate: float, seed: int) -> pl.DataFrame:
    """Sessions whose target is among the candidates, with a seeded share of their negatives.

    A session without its target has no pair to learn from: lambdarank gradients vanish there.
    Negatives are kept by :func:`seeded_uniform` of (session, item), so the rows kept do not depend
    on how the frame was chunked.
    """
    has_target = labelled.group_by("session").agg(pl.col("label").max()).filter(pl.col("label") == 1)
    rows = labelled.join(has_target.select("session"), on="session", how="semi").sort("session", "item")
    if neg_sample_rate >= 1.0:
        return rows
    keep = seeded_uniform(rows["session"], rows["item"], seed) < neg_sample_rate
    return rows.filter((pl.col("label") == 1) | pl.Series(keep))


def feature_matrix(frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    """The feature columns as one float32 matrix, cast column by column in polars: no float64 copy of the
    whole frame."""
    return frame.select(pl.col(features).cast(pl.Float32)).to_numpy()


def row_weights(frame: pl.DataFrame, cfg: RankerConfig) -> np.ndarray | None:
    """``cfg.locale_weights`` per row (None without them): lambdarank weights are per query, LightGBM reads
    them per row, so each session's weight is repeated on its rows."""
    if not cfg.locale_weights:
        return None
    codes = {LOCALE_CODE[loc]: float(w) for loc, w in cfg.locale_weights.items()}
    return frame["s_locale"].replace_strict(codes, default=1.0, return_dtype=pl.Float64).to_numpy()


def _dataset(frame: pl.DataFrame, features: list[str], cfg: RankerConfig,
             reference: lgb.Dataset | None = None) -> lgb.Dataset:
    frame = frame.sort("session", "item")
    groups = frame.group_by("session", maintain_order=True).len()["len"].to_numpy()
    return lgb.Dataset(feature_matrix(frame, features), label=frame["label"].to_numpy(),
                       group=groups, weight=row_weights(frame, cfg), feature_name=features,
                       categorical_feature=[c for c in CATEGORICAL if c in features],
                       reference=reference, free_raw_data=True)


def lgb_params(cfg: RankerConfig, seed: int) -> dict:
    return {
        "objective": "lambdarank", "metric": "map", "eval_at": [100],
        "lambdarank_truncation_level": cfg.truncation_level,
        "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": cfg.min_data_in_leaf, "feature_fraction": cfg.feature_fraction,
        "lambda_l2": cfg.lambda_l2, "num_threads": cfg.num_threads,
        # Same params + seed => the same model, bit for bit.
        "seed": seed, "deterministic": True, "force_row_wise": True, "verbosity": -1,
    }


def train(train_rows: pl.DataFrame, eval_rows: pl.DataFrame, features: list[str], cfg: RankerConfig,
          seed: int) -> lgb.Booster:
    """Fit lambdarank on ``train_rows``, early-stopped on ``eval_rows`` (both labelled, every session
    holding its target). Returns the booster cut at its best iteration."""
    if train_rows.is_empty() or eval_rows.is_empty():
        raise ValueError(f"nothing to train on: {train_rows.height} training rows, "
                         f"{eval_rows.height} eval rows")
    dtrain = _dataset(train_rows, features, cfg)
    deval = _dataset(eval_rows, features, cfg, reference=dtrain)
    evals: dict = {}
    booster = lgb.train(
        lgb_params(cfg, seed), dtrain, num_boost_round=cfg.num_boost_round, valid_sets=[deval],
        valid_names=["eval"],
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False), lgb.record_evaluation(evals),
                   lgb.log_evaluation(period=50)],
    )
    log.info("best iteration %d, eval map@100 %.4f", booster.best_iteration,
             booster.best_score["eval"]["map@100"])
    return booster


def score(booster: lgb.Booster, frame: pl.DataFrame) -> pl.DataFrame:
    """session, item, score, rank (1 = best, ties by item index) for every row of ``frame``."""
    features = booster.feature_name()
    missing = set(features) - set(frame.columns)
    if missing:
        raise ValueError(f"feature frame lacks the model's features {sorted(missing)}")
    values = booster.predict(feature_matrix(frame, features), num_iteration=booster.best_iteration or None)
    return rank_by(frame.select("session", "item").with_columns(score=pl.Series(values, dtype=pl.Float64)),
                   "score")


def rank_by(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """session, item, score, rank: rows with a non-null ``column`` ranked by it, descending, ties by item."""
    return (frame.filter(pl.col(column).is_not_null())
            .select("session", "item", score=pl.col(column).cast(pl.Float64))
            .sort(["session", "score", "item"], descending=[False, True, False])
            .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session")))


def importance(booster: lgb.Booster) -> pl.DataFrame:
    """feature, gain, split: sorted by gain, descending."""
    return (pl.DataFrame({"feature": booster.feature_name(),
                          "gain": booster.feature_importance("gain").astype(np.float64),
                          "split": booster.feature_importance("split").astype(np.int64)})
            .sort(["gain", "feature"], descending=[True, False]))


def model_file(model_dir: str | Path, name: str) -> Path:
    return Path(model_dir) / f"{name}.txt"


def save(models: dict[str, lgb.Booster], model_dir: str | Path, cfg: RankerConfig, seed: int) -> None:
    """One LightGBM text model per group plus meta.json (groups' locales, resolved params, best
    iterations)."""
    groups = model_groups(cfg)
    for name, booster in models.items():
        with atomic_path(model_file(model_dir, name)) as tmp:
            booster.save_model(tmp, num_iteration=booster.best_iteration or None)
    write_json({"groups": {n: list(groups[n]) for n in models}, "params": dataclasses.asdict(cfg),
                "seed": seed,
                "best_iteration": {n: b.best_iteration for n, b in models.items()},
                "features": {n: b.feature_name() for n, b in models.items()}}, Path(model_dir) / "meta.json")


def load(model_dir: str | Path) -> dict[str, tuple[lgb.Booster, tuple[str, ...]]]:
    """name -> (booster, the locales it predicts)."""
    meta = json.loads((Path(model_dir) / "meta.json").read_text())
    return {name: (lgb.Booster(model_file=str(model_file(model_dir, name))), tuple(locales))
            for name, locales in meta["groups"].items()}


def score_models(models: dict[str, tuple[lgb.Booster, tuple[str, ...]]], frame: pl.DataFrame) -> pl.DataFrame:
    """session, item, score, rank: each session scored by the model of its locale."""
    parts = []
    for booster, locales in models.values():
        codes = [LOCALE_CODE[loc] for loc in locales]
        rows = frame.filter(pl.col("s_locale").is_in(codes))
        if rows.height:
            parts.append(score(booster, rows))
    if not parts:
        return pl.DataFrame(schema={"session": pl.Int32, "item": pl.Int32, "score": pl.Float64,
                                    "rank": pl.Int32})
    return pl.concat(parts).sort("session", "rank")
