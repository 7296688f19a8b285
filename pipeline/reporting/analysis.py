"""The report's analysis: pure functions of the prepared frames and of the other stages' files.

Dataset analysis reads only data/prepared (core/schemas.py); the results functions reshape
metrics/recall.json, metrics/leaderboard.json and plots/ranker_importance.csv into frames the plots
and tables take. Nothing here draws or writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from core import raw


def locale_order(frame: pl.DataFrame, column: str = "locale") -> list[str]:
    present = set(frame.get_column(column).unique().to_list())
    return [loc for loc in raw.LOCALES if loc in present] + sorted(present - set(raw.LOCALES))


def interactions(sessions: pl.DataFrame, events: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Every viewed item: prev_items of all sessions plus each train target.

    Returns session:Int32, locale:String, item:Int32.
    """
    viewed = pl.concat([events.select("session", "item"), targets.select("session", "item")])
    return viewed.join(sessions.select("session", "locale"), on="session").select("session", "locale", "item")


def session_lengths(sessions: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Length distribution of train sessions, target included (as the paper counts them).

    Returns locale:String, length:Int32, sessions:UInt32, sorted by locale and length.
    """
    return (sessions.filter(pl.col("dataset") == "train")
            .with_columns(length=pl.col("length")
                          + pl.col("session").is_in(targets["session"].implode()).cast(pl.Int32))
            .group_by("locale", "length").agg(sessions=pl.len())
            .sort("locale", "length"))


def repeat_shares(sessions: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Share of train sessions whose prev_items repeat an item, and hold a consecutive duplicate.

    The target never repeats a session item, so prev_items alone decide.
    Returns locale:String, sessions:UInt32, repeated:Float64, consecutive:Float64.
    """
    train = sessions.filter(pl.col("dataset") == "train").select("session", "locale")
    flags = (events.join(train, on="session", how="semi")
             .group_by("session").agg(
                 repeated=pl.col("item").n_unique() < pl.len(),
                 consecutive=(pl.col("item").sort_by("position").diff() == 0).any()))
    return (train.join(flags, on="session", how="left").fill_null(False)
            .group_by("locale").agg(sessions=pl.len(), repeated=pl.col("repeated").mean(),
                                    consecutive=pl.col("consecutive").mean())
            .sort("locale"))


def item_counts(viewed: pl.DataFrame) -> pl.DataFrame:
    """Views per item, ranked within its locale: locale, item, count:UInt32, rank:Int32 (1 = most viewed).

    Ties are broken by item index so the curve is deterministic.
    """
    return (viewed.group_by("locale", "item").agg(count=pl.len())
            .sort(["locale", "count", "item"], descending=[False, True, False])
            .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("locale")))


def tail_curve(counts: pl.DataFrame, points_per_decade: int) -> pl.DataFrame:
    """The rank-count curve thinned to about ``points_per_decade`` ranks per power of ten (a real
    locale has ~500k items; a log-log plot cannot show more). Keeps each locale's first and last rank.

    Returns locale:String, rank:Int32, count:UInt32.
    """
    bucket = (pl.col("rank").cast(pl.Float64).log10() * points_per_decade).floor()
    last = pl.col("rank") == pl.col("rank").max().over("locale")
    return (counts.filter((bucket != bucket.shift(1).over("locale")).fill_null(True) | last)
            .select("locale", "rank", "count").sort("locale", "rank"))


def top_share(counts: pl.DataFrame, fraction: float = 0.01) -> pl.DataFrame:
    """Share of views going to the top ``fraction`` of viewed items: locale, top_share:Float64."""
    cut = (pl.len() * fraction).ceil().clip(lower_bound=1)
    return (counts.group_by("locale")
            .agg(top_share=pl.col("count").filter(pl.col("rank") <= cut).sum() / pl.col("count").sum())
            .sort("locale"))


def locale_overlap(items: pl.DataFrame) -> pl.DataFrame:
    """|A and B| / |A| over the catalogue ASINs of each pair of locales (A = locale_a).

    Returns locale_a:String, locale_b:String, overlap:Float64, every pair (0 where none is shared).
    """
    catalogue = items.filter(pl.col("in_catalog")).select("id", "locale").unique()
    sizes = catalogue.group_by("locale").agg(size=pl.len()).rename({"locale": "locale_a"})
    shared = (catalogue.rename({"locale": "locale_a"})
              .join(catalogue.rename({"locale": "locale_b"}), on="id")
              .group_by("locale_a", "locale_b").agg(shared=pl.len()))
    locales = pl.DataFrame({"locale_a": locale_order(catalogue)})
    return (locales.join(locales.rename({"locale_a": "locale_b"}), how="cross")
            .join(shared, on=["locale_a", "locale_b"], how="left")
            .join(sizes, on="locale_a", how="left")
            .select("locale_a", "locale_b",
                    overlap=(pl.col("shared").fill_null(0) / pl.col("size")).fill_null(0.0).fill_nan(0.0)))


def dataset_summary(items: pl.DataFrame, sessions: pl.DataFrame, viewed: pl.DataFrame,
                    lengths: pl.DataFrame, repeats: pl.DataFrame, tops: pl.DataFrame) -> pl.DataFrame:
    """One row per locale: train_sessions, catalogue_products, interactions, mean_length, repeated,
    consecutive, top1pct_share."""
    mean_length = lengths.group_by("locale").agg(
        mean_length=(pl.col("length") * pl.col("sessions")).sum() / pl.col("sessions").sum())
    products = items.filter(pl.col("in_catalog")).group_by("locale").agg(catalogue_products=pl.len())
    views = viewed.group_by("locale").agg(interactions=pl.len())
    frame = (repeats.rename({"sessions": "train_sessions"})
             .join(products, on="locale", how="full", coalesce=True)
             .join(views, on="locale", how="full", coalesce=True)
             .join(mean_length, on="locale", how="left")
             .join(tops, on="locale", how="left"))
    order = pl.DataFrame({"locale": locale_order(frame)}).with_row_index("_order")
    return (frame.join(order, on="locale").sort("_order")
            .select("locale", "train_sessions", "catalogue_products", "interactions", "mean_length",
                    "repeated", "consecutive", "top_share"))


# --------------------------------------------------------------------------------------------
# Results files written by other stages, reshaped for plotting.
# --------------------------------------------------------------------------------------------

def recall_curves(report: dict) -> pl.DataFrame:
    """From recall.json: scope:String ("source" or "locale"), name:String, k:Int32, recall:Float64.

    scope "source": every source and the union, overall; scope "locale": the union per locale. A
    source that records ``max_rank`` (the deepest rank it proposed, pipeline.recall) keeps only the
    K below it, plus K = max_rank itself, whose recall is that of any K beyond (the source has no
    item deeper), so its curve ends where its list does.
    """
    def curve(metrics: dict) -> list[tuple[int, float]]:
        points = sorted((int(key.split("@")[1]), float(value)) for key, value in metrics.items()
                        if key.startswith("recall@"))
        deepest = metrics.get("max_rank")
        if deepest is None:
            return points
        beyond = [r for k, r in points if k >= deepest]
        return [(k, r) for k, r in points if k < deepest] + ([(int(deepest), beyond[0])] if beyond else [])

    overall = report["overall"]
    rows = [("source", name, k, r) for name, m in sorted(overall["sources"].items()) for k, r in curve(m)]
    rows += [("source", "union", k, r) for k, r in curve(overall["union"])]
    rows += [("locale", loc, k, r) for loc, part in report.get("by_locale", {}).items()
             for k, r in curve(part["union"])]
    schema = {"scope": pl.String, "name": pl.String, "k": pl.Int32, "recall": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def read_importance(path: Path) -> pl.DataFrame:
    """ranker_importance.csv: feature:String, gain_share:Float64 (plus gain, split), best first."""
    table = pl.read_csv(path, schema_overrides={"feature": pl.String, "gain_share": pl.Float64})
    for column in ("feature", "gain_share"):
        if column not in table.columns:
            raise ValueError(f"{path}: no column {column!r} (has {table.columns})")
    return table.sort(["gain_share", "feature"], descending=[True, False])


def leaderboard_frame(board: dict) -> pl.DataFrame:
    """leaderboard.json, one row per (task, method): task:String, method:String, metric:String
    ("mrr@100" or "bleu"), score, recall@100, ndcg@100, share_of_ceiling, ceiling (Float64, null where
    not applicable), best score first within a task."""
    rows = []
    for task, methods in board.items():
        if task == "unscored":  # pipeline.score.UNSCORED: the datasets without ground truth, and why
            continue
        for method, result in methods.items():
            overall = result["all"]
            metric = "bleu" if "bleu" in overall else "mrr@100"
            rows.append((task, method, metric, overall[metric], overall.get("recall@100"),
                         overall.get("ndcg@100"),
                         overall.get("share_of_ceiling"), overall.get("ceiling_mrr@100")))
    schema = {"task": pl.String, "method": pl.String, "metric": pl.String, "score": pl.Float64,
              "recall@100": pl.Float64, "ndcg@100": pl.Float64, "share_of_ceiling": pl.Float64,
              "ceiling": pl.Float64}
    return (pl.DataFrame(rows, schema=schema, orient="row")
            .sort(["task", "score", "method"], descending=[False, True, False]))


def task3_gap(publish: dict, board: dict) -> pl.DataFrame:
    """The Task 3 choice per locale beside what the test files say of it.

    Args:
        publish: metrics/publish.json (stage choose); board: metrics/leaderboard.json (stage score).
    Returns locale, method, chosen (bool), valid_gain (BLEU over the last title on the locale's valid
    sessions) and test_gain_p1/p2 (the same on each test phase, null without ground truth); sacrebleu scale.
    """
    def test_gain(method: str, locale: str, phase: int) -> float | None:
        scores = board.get(f"task3_phase{phase}", {})
        ours, last = (scores.get(m, {}).get(locale, {}).get("bleu") for m in (method, "last_title"))
        return None if ours is None or last is None else 100 * (ours - last)

    rows = []
    for locale, entry in publish.get("task3", {}).get("per_locale", {}).items():
        for method, figures in entry["valid"].items():
            valid_gain = 100 * (figures["bleu"] - figures["last_title"])
            rows.append((locale, method, method == entry["method"], valid_gain,
                         test_gain(method, locale, 1), test_gain(method, locale, 2)))
    schema = {"locale": pl.String, "method": pl.String, "chosen": pl.Boolean, "valid_gain": pl.Float64,
              "test_gain_p1": pl.Float64, "test_gain_p2": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def flatten(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Leaves of a nested dict as (key path, value)."""
    if isinstance(obj, dict):
        return [leaf for key, value in obj.items() for leaf in flatten(value, (*prefix, str(key)))]
    return [(prefix, obj)]
