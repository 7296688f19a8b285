"""From ranked candidates to submission rows: popularity fill and test-file ordering.

Shared by every stage that writes a task 1/2 submission (baselines, single sources, the ranker).
"""

from __future__ import annotations

import polars as pl

from core.submission import N_PREDICTIONS


def locale_popularity(history: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Event count of every catalogue item in ``history``: locale, item, count, pop_rank (1 = most).

    Ties are broken by item index, so the order is deterministic.
    """
    return popularity_from_counts(history.group_by("item").agg(count=pl.len()), items)


def popularity_from_counts(counts: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """:func:`locale_popularity` from the events per item (item, count): counts of disjoint session sets
    add up, so the Dask path sums them over session ranges."""
    return (items.filter(pl.col("in_catalog")).select("item", "locale")
            .join(counts, on="item", how="left").with_columns(pl.col("count").fill_null(0))
            .sort(["locale", "count", "item"], descending=[False, True, False])
            .with_columns(pop_rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("locale")))


def fill_with_popular(ranked: pl.DataFrame, queries: pl.DataFrame, own: pl.DataFrame, popular: pl.DataFrame,
                      k: int = N_PREDICTIONS, chunk: int = 20_000) -> pl.DataFrame:
    """Top ``k`` items per query session: ``ranked`` first (by its rank), then locale popularity.

    Args:
        ranked: session, item, rank (1 = best); may hold fewer than k rows per session, or none.
        queries: session, locale. own: session, item (the session's prev_items, never predicted).
        popular: locale_popularity() output.
    Returns session, item, rank (1..k) for every query session.
    """
    out = []
    sessions = queries.select("session", "locale").unique("session", maintain_order=True)
    for start in range(0, sessions.height, chunk):
        part = sessions.slice(start, chunk)
        part_own = own.join(part.select("session"), on="session")
        head = (ranked.join(part.select("session"), on="session")
                .join(part_own, on=["session", "item"], how="anti")
                .select("session", "item", pl.col("rank").cast(pl.Int64)))
        # Popular items a session may need: k + its own item count (own items are dropped), none when
        # its ranked head already holds k; never more than that (one long session must not make the
        # whole chunk read hundreds of fill rows each).
        need = (part.join(part_own.group_by("session").agg(_own=pl.len()), on="session", how="left")
                .join(head.group_by("session").agg(_head=pl.len()), on="session", how="left")
                .select("session", "locale",
                        _depth=pl.when(pl.col("_head").fill_null(0) >= k).then(0)
                        .otherwise(k + pl.col("_own").fill_null(0))))
        depth = int(need["_depth"].max() or 0)
        fill = (need.filter(pl.col("_depth") > 0)
                .join(popular.filter(pl.col("pop_rank") <= depth), on="locale")
                .filter(pl.col("pop_rank") <= pl.col("_depth"))
                .select("session", "item", (pl.col("pop_rank").cast(pl.Int64) + 10**9).alias("rank"))
                .join(head, on=["session", "item"], how="anti")  # a ranked item keeps its own rank
                .join(part_own, on=["session", "item"], how="anti"))
        merged = (pl.concat([head, fill])
                  .sort("session", "rank")
                  .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session"))
                  .filter(pl.col("rank") <= k))
        out.append(merged)
    if not out:
        return pl.DataFrame(schema={"session": pl.Int32, "item": pl.Int32, "rank": pl.Int32})
    return pl.concat(out)


def submission_frames(top: pl.DataFrame, queries: pl.DataFrame,
                      items: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """dataset -> (locale, next_item_prediction) in test-file row order.

    ``top``: session, item, rank; ``queries``: session, locale, dataset, row.
    """
    lists = (top.join(items.select("item", "id"), on="item").sort("session", "rank")
             .group_by("session", maintain_order=True).agg(next_item_prediction=pl.col("id")))
    frames = {}
    for (dataset,), group in queries.join(lists, on="session", how="left").group_by("dataset"):
        frames[dataset] = group.sort("row").select("locale", "next_item_prediction")
    return frames
