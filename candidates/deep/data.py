"""From the long-form history frame to the padded tensors the encoders read.

Item index ``i`` (core.schemas items.item) is token ``i + 1``; token 0 is padding. Sequences
are left-padded so the last real item always sits in the last column: both encoders read their
session vector from there, and sasrec's position embedding then counts back from the newest item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

PAD = 0


def session_sequences(events: pl.DataFrame, max_len: int) -> pl.DataFrame:
    """The last ``max_len`` items of each session, oldest first.

    Args:
        events: session:Int32, position:Int32, item:Int32 (null items, i.e. empty sessions, allowed).
    Returns:
        session:Int32, items:List[Int32], sorted by session; an empty session has an empty list.
    """
    return (
        events.group_by("session")
        .agg(pl.col("item").sort_by("position").drop_nulls().tail(max_len).alias("items"))
        .sort("session")
    )


def session_locales(events: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Locale of each session of a history frame (which has none): the locale of its items.

    An item index belongs to one (ASIN, locale) pair, so any item of the session names it; the last
    one is used. Returns session:Int32, locale:String.
    """
    return (
        events.drop_nulls("item")
        .sort("session", "position")
        .group_by("session")
        .agg(pl.col("item").last())
        .join(items.select("item", "locale"), on="item", how="left")
        .select("session", "locale")
    )


def item_locales(items: pl.DataFrame, n_items: int, locales: list[str]) -> np.ndarray:
    """(n_items,) int64: the index into ``locales`` of each item index's locale (-1: no such item)."""
    out = np.full(n_items, -1, dtype=np.int64)
    known = items.filter(pl.col("locale").is_in(locales))
    out[known["item"].to_numpy()] = locale_ids(known["locale"], locales)
    return out


def product_rows(items: pl.DataFrame, n_items: int) -> np.ndarray:
    """(n_items + 1,) int64: token -> embedding row shared by the item indices of one product (ASIN).

    PAD keeps row 0; products take rows 1.. in order of their index; an item index with no product (or
    absent from ``items``) gets a row of its own after them.
    """
    product = np.full(n_items, -1, dtype=np.int64)
    known = items.drop_nulls("product")
    product[known["item"].to_numpy()] = known["product"].to_numpy()
    lone = product < 0
    rows = np.empty(n_items, dtype=np.int64)
    rows[~lone] = np.unique(product[~lone], return_inverse=True)[1] + 1
    rows[lone] = rows[~lone].max(initial=0) + 1 + np.arange(int(lone.sum()))
    return np.concatenate([[PAD], rows]).astype(np.int64)


def pad_left(lists: pl.Series, length: int) -> np.ndarray:
    """List[Int32] series of item indices -> int64 array (n, length) of tokens, left-padded with PAD.

    Lists longer than ``length`` keep their last ``length`` items.
    """
    lists = lists.list.tail(length)
    lens = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = lists.explode(empty_as_null=False).drop_nulls().to_numpy().astype(np.int64) + 1
    out = np.zeros((len(lens), length), dtype=np.int64)
    rows = np.repeat(np.arange(len(lens)), lens)
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    cols = length - np.repeat(lens, lens) + (np.arange(len(flat)) - starts)
    out[rows, cols] = flat
    return out


@dataclass(frozen=True)
class Encoded:
    """Query sessions ready for an encoder: ``tokens`` (n, max_len) int64, ``locale`` (n,) int64."""

    session: np.ndarray
    tokens: np.ndarray
    locale: np.ndarray


def locale_ids(locale: pl.Series, locales: list[str]) -> np.ndarray:
    """Locale names -> indices into ``locales`` (the vocabulary saved with the model)."""
    unknown = set(locale.drop_nulls().unique().to_list()) - set(locales)
    if unknown or locale.null_count():
        raise ValueError(
            f"sessions with locales unknown to the model: {sorted(unknown)} ({locale.null_count()} null)"
        )
    return locale.replace_strict(locales, list(range(len(locales))), return_dtype=pl.Int64).to_numpy().copy()


def encode_queries(sessions: pl.DataFrame, max_len: int, locales: list[str]) -> Encoded:
    """Query sessions (session, locale, position, item; see candidates.base) -> padded arrays."""
    # sorted: a join's row order is not fixed, and a row's vector may differ in its last bits with its
    # place in the batch (the attention encoders' batched matrix products), so the same queries always
    # go in the same order
    seqs = session_sequences(sessions.select("session", "position", "item"), max_len).join(
        sessions.select("session", "locale").unique("session"), on="session"
    ).sort("session")
    return Encoded(
        session=seqs["session"].to_numpy(),
        tokens=pad_left(seqs["items"], max_len),
        locale=locale_ids(seqs["locale"], locales),
    )


def training_sequences(
    history: pl.DataFrame, items: pl.DataFrame, max_len: int, locales: list[str]
) -> Encoded:
    """Training windows: the last ``max_len + 1`` items of every history session with at least two.

    Column t of ``tokens[:, :-1]`` predicts column t of ``tokens[:, 1:]``, so one session trains
    every prefix of its window at once.
    """
    seqs = session_sequences(history, max_len + 1).filter(pl.col("items").list.len() >= 2)
    seqs = seqs.join(session_locales(history, items), on="session", how="left")
    return Encoded(
        session=seqs["session"].to_numpy(),
        tokens=pad_left(seqs["items"], max_len + 1),
        locale=locale_ids(seqs["locale"], locales),
    )


def history_fingerprint(history: pl.DataFrame) -> str:
    """Identity of the history a model was trained on, saved in its checkpoint.

    A checkpoint is only reused on the history it was fitted on: a model fitted on the test split
    (which holds the valid targets) must never score the valid split.
    """
    # A sum of row hashes does not depend on row order, so no sort is needed.
    h = history.select("session", "position", "item")
    digest = int(
        h.hash_rows(seed=0, seed_1=1, seed_2=2, seed_3=3)
        .cast(pl.UInt64)
        .to_numpy()
        .astype(np.uint64)
        .sum(dtype=np.uint64)
    )
    return f"{h.height}:{h['session'].n_unique()}:{digest:016x}"


def session_event_counts(history: pl.DataFrame) -> dict[str, np.ndarray]:
    """session:int32 and events:int32 arrays: how many events of each session a model was trained on."""
    counts = history.group_by("session").agg(events=pl.len()).sort("session")
    return {
        "session": counts.get_column("session").to_numpy().astype(np.int32),
        "events": counts.get_column("events").to_numpy().astype(np.int32),
    }


def history_prefix(history: pl.DataFrame, counts: dict[str, np.ndarray]) -> pl.DataFrame:
    """The first ``counts["events"]`` events (by position) of each session of ``counts`` in ``history``.

    Its :func:`history_fingerprint` equals a checkpoint's exactly when that model was trained on a
    per-session prefix of ``history``: it saw no event that ``history`` lacks. The valid split's
    history is such a prefix of the test split's (the test history adds the valid targets), so a
    model trained for the valid split may encode test queries; the reverse never matches.
    """
    keep = pl.DataFrame({"session": counts["session"], "_n": counts["events"]})
    return (
        history.select("session", "position", "item")
        .join(keep, on="session")
        .sort("session", "position")
        .filter(pl.int_range(pl.len()).over("session") < pl.col("_n"))
        .drop("_n")
    )
