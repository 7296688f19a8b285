"""Title similarity: popular items of the locale that share rare-enough title words with the
session's last items (the same product line, category or model words; real Amazon-M2 titles of
co-viewed items share words, and so do the synthetic ones).

Titles are lower-cased and split into word tokens; a token's weight is its IDF within the locale
(log(n_items / df)). Tokens present in more than ``max_df`` of a locale's items carry no signal and
are dropped; the inverted index token -> items keeps the ``items_per_token`` most viewed items per
token, which bounds the work per query (the same sampling idea as SKNN). A candidate j scores
    sum_r decay**r * sum_{token in title(i_r) & title(j)} idf(token),
times (1 + log1p(views_j)) ** popularity_power
over the session's last ``max_session_items`` distinct items i_r. Items never viewed in the history
are still reachable (views 0), which session-based sources cannot do.

``weighting: lift`` replaces the IDF by what the history says a shared word is worth: the log lift
log(P(w in next | w in current) / P(w in a random item)) over consecutive history pairs (add-one
smoothed, floored at 0). Words that persist along sessions (the category noun, the model words)
weigh a lot, words that do not (colours, sizes) nothing, whatever their frequency; with ``max_df``
raised, the category noun's index (its most viewed items) then acts as a category-popularity
source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Self

import polars as pl

from candidates.base import CandidateSource, catalogue_items, finalize
from candidates.session_items import ordered_sum, recent_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextConfig:
    max_df: float  # drop tokens in more than this share of a locale's items
    min_token_len: int
    items_per_token: int  # most viewed items kept per token in the inverted index
    max_session_items: int
    recency_decay: float
    popularity_power: float
    weighting: str  # idf | lift (token weight learned from consecutive history pairs)

    def __post_init__(self) -> None:
        if self.weighting not in ("idf", "lift"):
            raise ValueError(f"text: weighting must be idf or lift, got {self.weighting!r}")


def title_tokens(items: pl.DataFrame, cfg: TextConfig) -> pl.DataFrame:
    """item:Int32, locale:String, token:Int32 (id of a locale's word), idf:Float64, per catalogue title."""
    tokens = (
        items.filter(pl.col("in_catalog"))
        .select(
            "item", "locale", token=pl.col("title").fill_null("").str.to_lowercase().str.extract_all(r"\w+")
        )
        .explode("token", empty_as_null=True)
        .drop_nulls("token")
        .filter(pl.col("token").str.len_chars() >= cfg.min_token_len)
        .unique(["item", "token"])
    )
    n_items = tokens.group_by("locale").agg(n=pl.col("item").n_unique())
    df = tokens.group_by("locale", "token").agg(df=pl.len())
    kept = (
        tokens.join(df, on=["locale", "token"])
        .join(n_items, on="locale")
        .filter((pl.col("df") > 1) & (pl.col("df") <= cfg.max_df * pl.col("n")))
    )
    # Integer token ids (locale-specific) keep the query-time joins and sorts on int32 columns.
    ids = kept.select("locale", "token").unique().sort("locale", "token").with_row_index("token_id")
    return kept.join(ids, on=["locale", "token"]).select(
        "item",
        "locale",
        pl.col("token_id").cast(pl.Int32).alias("token"),
        idf=(pl.col("n") / pl.col("df")).log(),
    )


def token_lift(history: pl.DataFrame, tokens: pl.DataFrame) -> pl.DataFrame:
    """token:Int32, idf:Float64 holding max(0, log lift) of each token over consecutive history pairs.

    lift(w) = P(w in title(b) | w in title(a)) / P(w in a random title of the locale), for the
    consecutive pairs a -> b (a != b) of the history, with (n_both + 1) / (n_a + 1 / base) as the
    smoothed conditional so that a token seen in few pairs stays near lift 1 (weight 0).
    """
    ev = history.select("session", "position", "item").sort("session", "position")
    pairs = (
        ev.select(a="item", b=pl.col("item").shift(-1), same=pl.col("session") == pl.col("session").shift(-1))
        .filter(pl.col("same") & (pl.col("a") != pl.col("b")))
        .select("a", "b")
    )
    tok = tokens.select("item", "token")
    n_items = tokens.group_by("locale").agg(n=pl.col("item").n_unique())
    base = (
        tokens.group_by("locale", "token")
        .agg(df=pl.len())
        .join(n_items, on="locale")
        .select("token", base=pl.col("df") / pl.col("n"))
    )
    counts = (
        pairs.join(tok.rename({"item": "a"}), on="a")
        .join(tok.rename({"item": "b"}).with_columns(both=pl.lit(1)), on=["b", "token"], how="left")
        .group_by("token")
        .agg(n_a=pl.len(), n_both=pl.col("both").sum())
    )
    return (
        base.join(counts, on="token", how="left")
        .fill_null(0)
        .select(
            "token",
            idf=(((pl.col("n_both") + 1) / (pl.col("n_a") + 1 / pl.col("base"))) / pl.col("base"))
            .log()
            .clip(lower_bound=0.0),
        )
    )


class TitleSimilarity(CandidateSource):
    name = "text"
    Config = TextConfig

    def __init__(self, cfg: TextConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.tokens: pl.DataFrame | None = None

    def fit(self, history: pl.DataFrame, items: pl.DataFrame) -> Self:
        self._items = catalogue_items(items)
        self.tokens = title_tokens(items, self.cfg)
        if self.tokens.height == 0:  # e.g. a catalogue of placeholder titles, read as missing
            log.warning(
                "text: no catalogue title has a word in more than one item (%d of %d items titled): "
                "no candidates",
                items.filter(pl.col("in_catalog"))["title"].is_not_null().sum(),
                items.filter(pl.col("in_catalog")).height,
            )
        if self.cfg.weighting == "lift":
            self.tokens = self.tokens.drop("idf").join(token_lift(history, self.tokens), on="token")
        views = history.group_by("item").agg(views=pl.len())
        self.index = (
            self.tokens.join(views, on="item", how="left")
            .with_columns(
                pl.col("views").fill_null(0),
                prior=(1.0 + pl.col("views").fill_null(0).cast(pl.Float64).log1p())
                ** self.cfg.popularity_power,
            )
            .sort(["token", "views", "item"], descending=[False, True, False])
            .group_by("token", maintain_order=True)
            .head(self.cfg.items_per_token)
            .select("locale", "token", "idf", cand="item", prior="prior")
        )
        return self

    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame:
        assert self.tokens is not None, "fit first"
        recent = recent_items(sessions, self.cfg.max_session_items, self.cfg.recency_decay)
        # A word shared by several of the last items is looked up once, with their weights summed:
        # the recent items of a session share most words, so this divides the index rows read.
        session_tokens = (
            recent.join(self.tokens.select("item", "token"), on="item")
            .pipe(ordered_sum, ["session", "token"], ["recency"], "weight")
        )
        scores = (
            session_tokens.join(self.index.drop("locale"), on="token")
            .select(
                "session", item="cand", score=pl.col("weight") * pl.col("idf") * pl.col("prior"), _t="token"
            )
            .pipe(ordered_sum, ["session", "item"], ["_t"])
        )
        return finalize(scores, sessions, self._items, k, summed=True)
