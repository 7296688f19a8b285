"""What every feature family sees: the fit inputs, one chunk of candidates, and the knobs.

A family is a module with two functions:

    state = family.fit(inputs, cfg)                       # once per split: stats tables
    frame = family.add(frame, chunk, state, cfg)          # per session chunk: adds columns

``fit`` sees only what the candidate sources were fitted on (the split's history), so a held-out
target can never reach a feature. ``add`` adds columns to the candidate frame with joins and
expressions and never changes its rows or their order.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from candidates.pairs import count_pairs, pack_bits, pair_totals
from core.raw import LOCALES


@dataclass(frozen=True)
class FeaturesConfig:
    """params.yaml ``features``."""

    chunk_sessions: int  # query sessions per chunk (bounds memory at 360k x 300)
    covisit_window: int  # pairs of items at most this many positions apart
    last_k: int  # co-visitation with each of the last k distinct items
    prefix_chars: int  # ASIN prefix length that marks listed-together variants
    deep_models: dict[str, str]  # family deep: registry type -> checkpoint glob
    deep_similarity: bool  # family deep: also each candidate's cosine with the session's last item


@dataclass(frozen=True)
class Inputs:
    """What families may fit on.

    history: session:Int32, position:Int32, item:Int32 (the split's history; train sessions carry
    their target as last event). items: the prepared items table. sessions: session:Int32,
    dataset:String, locale:String, length:Int32 (every prepared session; ``length`` counts prev_items,
    so a history session with ``length + 1`` events carries its target).
    """

    history: pl.DataFrame
    items: pl.DataFrame
    sessions: pl.DataFrame


@dataclass(frozen=True)
class Chunk:
    """One chunk of query sessions.

    events: session, position, item (the queries' prev_items); queries: session, locale.
    """

    events: pl.DataFrame
    queries: pl.DataFrame


LOCALE_CODE = {locale: code for code, locale in enumerate(LOCALES)}


def locale_code(column: str = "locale") -> pl.Expr:
    """Locale as a small integer (LightGBM categorical), same code in every split."""
    return pl.col(column).replace_strict(LOCALE_CODE, return_dtype=pl.Int32, default=-1)


def last_distinct(events: pl.DataFrame, k: int) -> pl.DataFrame:
    """session, lag (1 = most recent), item: the last ``k`` distinct items of each session.

    Distinct because 17% of real sessions hold a consecutive duplicate ('A' 'A'): the second-to-last
    item should be the previous *different* product.
    """
    return (
        events.group_by("session", "item")
        .agg(pl.col("position").max())
        .sort(["session", "position"], descending=[False, True])
        .with_columns(lag=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session"))
        .filter(pl.col("lag") <= k)
        .select("session", "lag", "item")
    )


def covisit_pairs(
    history: pl.DataFrame, window: int, key: str = "item", by: tuple[str, ...] = ()
) -> pl.LazyFrame:
    """src, dst, n:Int32: in how many sessions ``dst`` appears within ``window`` positions of ``src``.

    Both directions, self pairs dropped, each ordered pair counted once per session so a session
    of repeats does not dominate. ``key`` is the id column of ``history`` (item or product:
    non-negative ints below 2**29); ``by`` names per-session columns of ``history`` (e.g. locale)
    the counts are kept apart by (columns first: *by, src, dst, n). Sorted by (*by, src, dst).

    Counted by the co-visitation source's code (:func:`candidates.pairs.count_pairs`, unique per
    session, no collapsing of repeats), one ``by`` group at a time: a session lies in one group, and
    its positions are consecutive, so ``window`` events apart is ``window`` positions apart.
    """
    out_dtype = history.schema[key]
    schema = {**{c: history.schema[c] for c in by}, "src": out_dtype, "dst": out_dtype, "n": pl.Int32}
    groups = history.partition_by(list(by), maintain_order=True) if by else [history]
    frames = []
    for group in groups:
        if group.is_empty():
            continue
        item_bits, _ = pack_bits(group, window, key)
        counts = count_pairs(group, window, "both", True, False, item_bits, key)
        totals = pair_totals(counts, window, item_bits)
        frames.append(
            totals.select(
                *[pl.lit(group.get_column(c)[0], dtype=schema[c]).alias(c) for c in by],
                src=pl.col("a").cast(out_dtype),
                dst=pl.col("b").cast(out_dtype),
                n=pl.col("n").cast(pl.Int32),
            )
        )
    if not frames:
        return pl.LazyFrame(schema=schema)
    return pl.concat(frames).sort(*by, "src", "dst").lazy()


def transition_counts(history: pl.DataFrame, key: str = "item") -> pl.LazyFrame:
    """src, dst, n:Int32, share:Float32: how often ``dst`` comes directly after ``src`` (the next
    position of a session, repeats of the same ``key`` left out), and its share of ``src``'s total."""
    h = history.lazy()
    return (
        h.join(
            h.select("session", (pl.col("position") - 1).alias("position"), dst=pl.col(key)),
            on=["session", "position"],
        )
        .filter(pl.col(key) != pl.col("dst"))
        .group_by(pl.col(key).alias("src"), "dst")
        .agg(n=pl.len().cast(pl.Int32))
        .with_columns(share=(pl.col("n") / pl.col("n").sum().over("src")).cast(pl.Float32))
    )


def with_target_flag(history: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """history + is_target:Boolean, true on the last event of sessions whose target is in history.

    Held-out (valid) and test sessions appear with their prev_items only, so the flag cannot be
    read from the dataset name: a session carries its target iff it has ``length + 1`` events.
    """
    return (
        history.join(sessions.select("session", "length"), on="session", how="left", maintain_order="left")
        .with_columns(
            is_target=(pl.col("position") == pl.col("length"))
            & (pl.len().over("session") == pl.col("length") + 1)
        )
        .drop("length")
    )
