"""Stage ``train_ranker``: LightGBM lambdarank on the valid split's features, with its validation MRR.

    python -m pipeline.train_ranker --features data/features/valid --splitdir data/split \
        --prepared data/prepared --model models/ranker --metrics metrics/ranker.json \
        --importance plots/ranker_importance.csv

The valid queries are cut into a training fold and a session-grouped eval fold (``ranker.eval_fraction``).
The model learns on training-fold sessions whose target is among the candidates, negatives
down-sampled; it stops early on the eval fold. The reported MRR@100 is the eval fold's *every*
session (targets missing from the candidates count as misses), ranked and popularity-filled by the
same code as the submissions, so it estimates the leaderboard. Each single source, ranked by its own
score, is reported on the same sessions for comparison.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from candidates.columns import score_col, source_names
from core import config, guards, sampling
from core.errors import exit_on_error
from core.io import atomic_path, peak_rss_mib, setup_logging, timed, write_json
from features.base import LOCALE_CODE
from features.parts import part_paths
from features.registry import feature_columns
from pipeline import engine
from pipeline.ranking import completion, mrr_report, ranked_top, source_ranker
from rankers import lgbm

log = logging.getLogger(__name__)


def load_training(parts: list[Path], targets: pl.DataFrame, folds: pl.DataFrame, cfg: lgbm.RankerConfig,
                  seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(training rows, early-stopping rows), labelled, read part by part so only the sampled rows stay.

    Training rows: training-fold sessions holding their target (at most ``max_train_sessions`` of
    them, a seeded sample), negatives down-sampled. Early-stopping rows: eval-fold sessions holding
    their target, every candidate. Both samples are drawn per session, not per part.
    """
    train_ids = sampling.sample_sessions(
        folds.filter(~pl.col("is_eval")).join(targets, on="session", how="semi")["session"],
        cfg.max_train_sessions, seed)
    keep = pl.concat([train_ids, folds.filter(pl.col("is_eval"))["session"]]).implode()
    log.info("training fold: %d sessions with a target kept (ranker.max_train_sessions = %d)", len(train_ids),
             cfg.max_train_sessions)
    train, stop = [], []
    for path in tqdm(parts, desc="load features", unit="part"):
        # The rows to keep are chosen on (session, item) alone; then only those rows of the wide part are
        # read, streamed through a join (a part is never held whole: most training negatives are dropped).
        pairs = (lgbm.label(pl.read_parquet(path, columns=["session", "item"])
                            .filter(pl.col("session").is_in(keep)), targets)
                 .join(folds, on="session", how="left"))
        kept = (lgbm.training_rows(pairs.filter(~pl.col("is_eval")), cfg.neg_sample_rate, seed),
                lgbm.training_rows(pairs.filter(pl.col("is_eval")), 1.0, seed))
        for out, rows in zip((train, stop), kept, strict=True):
            out.append(pl.scan_parquet(path).join(rows.lazy(), on=["session", "item"], how="inner")
                       .collect(engine="streaming").sort("session", "item"))
    return pl.concat(train), pl.concat(stop)


def require_memory(parts: list[Path], folds: pl.DataFrame, n_sessions: int, cfg: lgbm.RankerConfig) -> None:
    """Guard: the training and early-stopping rows the params keep, against ``resources.memory_budget_gib``.

    Rows per session are the features' average; training sessions count at the negatives' rate.
    """
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    n_eval = int(folds["is_eval"].sum())
    n_train = folds.height - n_eval
    if cfg.max_train_sessions:
        n_train = min(n_train, cfg.max_train_sessions)
    kept = rows / max(n_sessions, 1) * (n_train * min(1.0, cfg.neg_sample_rate * 1.2) + n_eval)
    columns = len(pq.ParquetFile(parts[0]).schema_arrow) if parts else 0
    guards.require("train_ranker: training and early-stopping rows", int(kept), columns,
                   config.load_section(guards.ResourcesConfig, "resources"),
                   "ranker.max_train_sessions, ranker.neg_sample_rate, ranker.eval_fraction "
                   "or split.max_valid_sessions")


def fit(train_rows: pl.DataFrame, stop_rows: pl.DataFrame, cfg: lgbm.RankerConfig,
        seed: int) -> dict[str, lgb.Booster]:
    """Model name -> booster, one per group of locales (model_groups)."""
    features = feature_columns(train_rows.columns)
    models = {}
    for name, locales in lgbm.model_groups(cfg).items():
        codes = [LOCALE_CODE[loc] for loc in locales]
        in_group = pl.col("s_locale").is_in(codes)
        log.info("model %s (%s): %d training rows, %d early-stopping rows, %d features", name,
                 ",".join(locales),
                 train_rows.filter(in_group).height, stop_rows.filter(in_group).height, len(features))
        models[name] = lgbm.train(train_rows.filter(in_group), stop_rows.filter(in_group), features, cfg,
                                  seed)
    return models


def evaluate(parts: list[Path], models: dict[str, tuple], queries: pl.DataFrame, targets: pl.DataFrame,
             history: pl.DataFrame | None, items: pl.DataFrame | None,
             fill: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> dict[str, dict]:
    """Eval-fold metrics of the ranker and of every single source (each by its own score).

    ``models``: lgbm.load() output, so what is evaluated is what was saved. ``fill``: the completion
    of the rankings (default: ``pipeline.ranking.completion`` of ``history`` and ``items``).
    """
    eval_ids = queries["session"].implode()

    def frames(columns: list[str] | None = None):
        for path in parts:
            yield pl.read_parquet(path, columns=columns).filter(pl.col("session").is_in(eval_ids))

    if fill is None:
        fill = completion(queries, history, items)
    report = {"ranker": mrr_report(fill(ranked_top(frames(), lambda f: lgbm.score_models(models, f))),
                                   queries, targets)}
    columns = pl.read_parquet_schema(parts[0]) if parts else {}
    for name in source_names(list(columns)):
        top = ranked_top(frames(["session", "item", score_col(name)]), source_ranker(name))
        report[f"source_{name}"] = mrr_report(fill(top), queries, targets)
    return report


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--splitdir", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--importance", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    cfg = config.load_section(lgbm.RankerConfig, "ranker")
    seed = config.seed()
    split = args.splitdir / "valid"
    queries = pl.read_parquet(split / "queries.parquet")
    targets = pl.read_parquet(split / "targets.parquet")
    parts = part_paths(args.features)
    folds = lgbm.assign_folds(queries["session"], cfg.eval_fraction, seed)
    require_memory(parts, folds, queries.height, cfg)
    with timed("train ranker"):
        train_rows, stop_rows = load_training(parts, targets, folds, cfg, seed)
        log.info("training rows %d (%d sessions), early-stopping rows %d (%d sessions)", train_rows.height,
                 train_rows["session"].n_unique(), stop_rows.height, stop_rows["session"].n_unique())
        if engine.engine() == "dask":  # DaskLGBMRanker on a Dask cluster, same model files
            from pipeline.engine import ranker as dask_ranker
            models = dask_ranker.fit(engine.dask_config(), train_rows, stop_rows, cfg, seed)
        else:
            models = fit(train_rows, stop_rows, cfg, seed)
    lgbm.save(models, args.model, cfg, seed)
    with timed("evaluate on the eval fold"):
        eval_queries = queries.join(folds.filter(pl.col("is_eval")), on="session", how="semi")
        if engine.engine() == "dask":  # the completion's counts on the workers: no history here
            from pipeline.engine import ranker as dask_ranker
            fill = dask_ranker.completion(engine.dask_config(), eval_queries, split, args.prepared)
            report = evaluate(parts, lgbm.load(args.model), eval_queries, targets, None, None, fill)
        else:
            report = evaluate(parts, lgbm.load(args.model), eval_queries, targets,
                              pl.read_parquet(split / "history.parquet"),
                              pl.read_parquet(args.prepared / "items.parquet"))
    sources = {k: v["all"]["mrr@100"] for k, v in report.items() if k.startswith("source_")}
    best = max(sources, key=sources.get) if sources else None
    summary = {
        "mrr@100": report["ranker"]["all"]["mrr@100"],
        "best_source": best,
        "best_source_mrr@100": sources.get(best),
        "target_in_candidates": float(stop_rows["session"].n_unique() / max(eval_queries.height, 1)),
        "eval_sessions": eval_queries.height,
        "best_iteration": {name: b.best_iteration for name, b in models.items()},
        "peak_rss_mib": round(peak_rss_mib()),
    }
    write_json({**summary, "eval": report}, args.metrics)
    table = pl.concat([lgbm.importance(b).with_columns(model=pl.lit(name)) for name, b in models.items()])
    table = (table.group_by("feature").agg(pl.col("gain").sum(), pl.col("split").sum())
             .with_columns(gain_share=(pl.col("gain") / pl.col("gain").sum()).round(5))
             .sort(["gain", "feature"], descending=[True, False]))
    write_importance(table, args.importance)
    log.info("ranker MRR@100 %.4f (eval fold, %d sessions); best single source %s %.4f", summary["mrr@100"],
             eval_queries.height, best, summary["best_source_mrr@100"] or 0.0)


def write_importance(table: pl.DataFrame, path: Path) -> None:
    """The importance table as CSV (a DVC plot: feature against gain share)."""
    with atomic_path(path) as tmp:
        table.select("feature", "gain_share", "gain", "split").write_csv(tmp)


if __name__ == "__main__":
    main()
