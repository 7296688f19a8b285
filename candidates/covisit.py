"""Co-visitation: items seen near each other in past sessions, one class, variants are params.

A pair (a, b) is two events of a session at most ``window`` positions apart (``window: 1`` =
consecutive pairs). ``direction`` picks symmetric (``both``), forward-only (a before b) or
backward pairs; ``distance_weight`` p weighs a pair at distance d by 1/d**p (0 = uniform);
``normalize`` turns the summed weights w(a, b) into a neighbour score (``none``; ``conditional``
w / sum_b w(a, b); ``cosine`` w / sqrt(n(a) n(b)); ``lift`` w N / (n(a) n(b)), with n the number of
sessions holding the key and N the number of sessions). The ``top_n`` best neighbours per item are
kept. ``key: product`` counts over the ASIN index shared across locales, so that ES/FR/IT sessions
borrow DE/UK transitions (Task 2 transfer); neighbours are mapped back to the session's locale.

``query_weight`` multiplies the pairs of query sessions (history sessions without their target: the
held-out and test sessions' prefixes, flagged by the ``query`` column :func:`with_query_flag` adds):
they come from the distribution that is scored. ``hops: 2`` adds neighbours of neighbours (a -> b -> c
scored ``hop_weight * s(a, b) * s(b, c)``) for keys with fewer than ``hop_below`` direct neighbours
(0: every key), so that a rare last item still gets a full list.

A session is scored by summing the neighbour scores of its last ``max_session_items`` distinct
items, the r-th most recent weighted ``recency_decay ** r`` (last item highest); ``lag: n`` expands
only the n-th most recent distinct item (candidates from the last 1/2/3 items separately).

All counting is polars over int32 columns: one shifted copy of the sorted events per distance
(linear in the events, no session self-join), then group-bys, so it maps onto any engine that has
group-by.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Self

import polars as pl

from candidates.base import CandidateSource, catalogue_items, finalize
from candidates.pairs import DIRECTIONS, count_pairs, pack_bits
from candidates.session_items import ordered_sum, recent_items

log = logging.getLogger(__name__)

NORMALIZATIONS = ("none", "conditional", "cosine", "lift")
KEYS = ("item", "product")


@dataclass(frozen=True)
class CovisitConfig:
    window: int  # max position distance of a pair (1 = consecutive pairs)
    direction: str  # both | forward | backward
    distance_weight: float  # pair weight 1 / d**distance_weight
    unique_per_session: bool  # a pair counts once per session (at its highest weight)
    collapse_repeats: bool  # drop consecutive duplicates (A A B -> A B) before pairing
    normalize: str  # none | conditional | cosine | lift
    top_n: int  # neighbours kept per key
    key: str  # item | product (cross-locale)
    max_session_items: int  # how many of the session's last distinct items are expanded
    recency_decay: float  # weight of the r-th most recent item: recency_decay ** r
    lag: int  # 0: the last max_session_items items; n: only the n-th most recent one
    query_weight: float  # weight of pairs from query sessions (prefix-only history sessions)
    hops: int  # 2: neighbours of neighbours too
    hop_weight: float  # a -> b -> c scores hop_weight * s(a, b) * s(b, c)
    hop_below: int  # second hop only from keys with fewer direct neighbours (0: all)
    # Chosen on held-out history sessions (see Covisit.select): each entry overrides these knobs.
    grid: tuple[dict[str, Any], ...]
    select_share: float  # share of the history's target-holding sessions held out to choose
    select_sessions: int  # at most this many of them
    select_locales: tuple[str, ...]  # choose on sessions of these locales only (empty: all)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.hops not in (1, 2):
            raise ValueError(f"hops must be 1 or 2, got {self.hops}")
        if self.lag < 0 or self.query_weight < 0:
            raise ValueError(f"lag and query_weight must be >= 0, got {self.lag}, {self.query_weight}")
        for value, allowed, what in (
            (self.direction, DIRECTIONS, "direction"),
            (self.normalize, NORMALIZATIONS, "normalize"),
            (self.key, KEYS, "key"),
        ):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
        allowed = {f.name for f in dataclasses.fields(self)} - {
            "grid",
            "select_share",
            "select_sessions",
            "select_locales",
        }
        for entry in self.grid:
            unknown = set(entry) - allowed
            if unknown:
                raise ValueError(
                    f"grid entry {entry}: unknown knob(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
                )
            dataclasses.replace(self, grid=(), **entry)  # each entry must itself be a valid config

    def variants(self) -> list[CovisitConfig]:
        """The grid's configs (base knobs overridden by each entry); just this config without a grid."""
        base = dataclasses.replace(self, grid=())
        return [dataclasses.replace(base, **entry) for entry in self.grid] or [base]


def pair_counts(events: pl.DataFrame, cfg: CovisitConfig, item_bits: int) -> pl.DataFrame:
    """Pair occurrences of ``events`` as packed keys: value:Int64 (a | b | d), len:UInt32, sorted by value.

    :func:`candidates.pairs.count_pairs` with ``cfg``'s window, direction, unique_per_session and
    collapse_repeats. Every pair is counted within its own session, so the counts of disjoint session
    sets add up (pipeline.engine.covisit sums them over session partitions).
    """
    return count_pairs(
        events, cfg.window, cfg.direction, cfg.unique_per_session, cfg.collapse_repeats, item_bits
    )


def weights_from_counts(counts: pl.DataFrame, cfg: CovisitConfig, item_bits: int) -> pl.DataFrame:
    """a:Int32, b:Int32, w:Float64 from :func:`pair_counts` rows (sorted by value, one row per key)."""
    b_mul = 1 << cfg.window.bit_length()
    return (
        counts.select(
            ab=(pl.col("value") // b_mul).set_sorted(),
            w=pl.col("len").cast(pl.Float64)
            / (pl.col("value") % b_mul).cast(pl.Float64).pow(cfg.distance_weight),
        )
        .group_by("ab", maintain_order=True)
        .agg(pl.col("w").sum())
        .select(
            a=(pl.col("ab") // (1 << item_bits)).cast(pl.Int32),
            b=(pl.col("ab") % (1 << item_bits)).cast(pl.Int32),
            w="w",
        )
    )


def pair_weights(events: pl.DataFrame, cfg: CovisitConfig) -> pl.DataFrame:
    """Summed pair weights of the co-visitation graph.

    Each pair (a, b) at distance d is packed into one int64 key, so that counting is a sort of one
    column plus a run-length count (faster than a multi-column hash group-by, and ordered, which
    makes the float sums identical run to run). Pairs are counted per distance as integers and only
    then weighted 1/d**p.

    Args:
        events: session:Int32, position:Int32, item:Int32 (item is whatever key is counted).

    Returns:
        a:Int32, b:Int32, w:Float64, one row per ordered pair with a != b, sorted by (a, b).
    """
    item_bits, _ = pack_bits(events, cfg.window)
    return weights_from_counts(pair_counts(events, cfg, item_bits), cfg, item_bits)


def top_neighbours(
    w: pl.DataFrame, cfg: CovisitConfig, n: pl.DataFrame | None = None, n_sessions: int = 0
) -> pl.DataFrame:
    """Normalise :func:`pair_weights` rows and keep the ``cfg.top_n`` best per key.

    ``w`` must hold every row of each key ``a`` it holds. ``n`` (item, len: sessions holding the key)
    and ``n_sessions`` are needed by cosine and lift only.
    """
    # A fixed row order makes the per-key sums below identical run to run.
    w = w.sort(["a", "w", "b"], descending=[False, True, False])
    if cfg.normalize == "conditional":
        w = w.with_columns(score=pl.col("w") / pl.col("w").sum().over("a"))
    elif cfg.normalize in ("cosine", "lift"):
        w = (
            w.join(n.select(a="item", n_a="len"), on="a")
            .join(n.select(b="item", n_b="len"), on="b")
            .with_columns(
                score=pl.col("w") / (pl.col("n_a").cast(pl.Float64) * pl.col("n_b")).sqrt()
                if cfg.normalize == "cosine"
                else pl.col("w") * n_sessions / (pl.col("n_a").cast(pl.Float64) * pl.col("n_b"))
            )
        )
    else:
        w = w.with_columns(score=pl.col("w"))
    return (
        w.sort(["a", "score", "b"], descending=[False, True, False])
        .group_by("a", maintain_order=True)
        .head(cfg.top_n)
        .select("a", "b", pl.col("score").cast(pl.Float32))
    )


def with_query_flag(history: pl.DataFrame, prev_items: pl.DataFrame) -> pl.DataFrame:
    """history + query:Boolean, true on the events of sessions that hold no target in ``history``.

    ``prev_items`` (session, position, item: every session's prev_items, data/prepared/events.parquet):
    a history session with exactly its prev_items is a query (held-out or test) session; a train
    session carries one event more, its target.
    """
    n_prev = prev_items.group_by("session").agg(_n_prev=pl.len())
    return (
        history.join(n_prev, on="session", how="left", maintain_order="left")
        .with_columns(query=(pl.len().over("session") == pl.col("_n_prev")).fill_null(False))
        .drop("_n_prev")
    )


def weighted_pairs(events: pl.DataFrame, cfg: CovisitConfig) -> pl.DataFrame:
    """:func:`pair_weights`, with the pairs of ``query`` sessions weighted ``cfg.query_weight``.

    The two session sets are counted apart (their counts add up) and summed in (a, b) order, so the
    result is as deterministic as :func:`pair_weights`.
    """
    if cfg.query_weight == 1.0 or "query" not in events.columns:
        return pair_weights(events, cfg)
    item_bits, _ = pack_bits(events, cfg.window)
    parts = []
    for flag, weight in ((False, 1.0), (True, cfg.query_weight)):
        part = events.filter(pl.col("query") == flag)
        if part.height and weight:
            parts.append(
                weights_from_counts(pair_counts(part, cfg, item_bits), cfg, item_bits).with_columns(
                    pl.col("w") * weight
                )
            )
    if not parts:
        return pl.DataFrame(schema={"a": pl.Int32, "b": pl.Int32, "w": pl.Float64})
    return pl.concat(parts).sort("a", "b").group_by("a", "b", maintain_order=True).agg(pl.col("w").sum())


def expand_hops(nbrs: pl.DataFrame, cfg: CovisitConfig) -> pl.DataFrame:
    """Add second-hop neighbours to :func:`top_neighbours` rows (``cfg.hops == 2``), top ``cfg.top_n`` kept.

    a -> b -> c scores ``hop_weight * s(a, b) * s(b, c)``, summed over b and added to any direct
    score of (a, c); only keys with fewer than ``hop_below`` direct neighbours are expanded (0: all).
    """
    if cfg.hops == 1:
        return nbrs
    return merge_hops(nbrs, second_hop(hop_sources(nbrs, cfg), nbrs, cfg), cfg)


def hop_sources(nbrs: pl.DataFrame, cfg: CovisitConfig) -> pl.DataFrame:
    """The rows of :func:`expand_hops`'s keys that get a second hop (every key's rows in ``nbrs`` given)."""
    n_direct = nbrs.group_by("a").len()
    return (
        nbrs
        if not cfg.hop_below
        else nbrs.join(n_direct.filter(pl.col("len") < cfg.hop_below).select("a"), on="a", how="semi")
    )


def second_hop(expand: pl.DataFrame, nbrs: pl.DataFrame, cfg: CovisitConfig) -> pl.DataFrame:
    """a -> b -> c rows (a, b=c, score, hop=2) of ``expand``'s rows through ``nbrs`` (those of every b)."""
    return (
        expand.join(nbrs.select(pl.col("a").alias("b"), pl.col("b").alias("c"), s2="score"), on="b")
        .filter(pl.col("c") != pl.col("a"))
        .select("a", b="c", score=(cfg.hop_weight * pl.col("score").cast(pl.Float64) * pl.col("s2")), hop=2)
    )


def merge_hops(nbrs: pl.DataFrame, second: pl.DataFrame, cfg: CovisitConfig) -> pl.DataFrame:
    """Direct and second-hop scores summed per (a, b), top ``cfg.top_n`` per key."""
    both = pl.concat(
        [
            nbrs.select("a", "b", pl.col("score").cast(pl.Float64), hop=pl.lit(1)),
            second.with_columns(pl.col("hop").cast(pl.Int32)),
        ],
        how="vertical_relaxed",
    )
    return (
        both.sort("a", "b", "hop")
        .group_by("a", "b", maintain_order=True)
        .agg(pl.col("score").sum())
        .sort(["a", "score", "b"], descending=[False, True, False])
        .group_by("a", maintain_order=True)
        .head(cfg.top_n)
        .select("a", "b", pl.col("score").cast(pl.Float32))
    )


def neighbours(events: pl.DataFrame, cfg: CovisitConfig) -> pl.DataFrame:
    """Top ``cfg.top_n`` normalised neighbours per key: a:Int32, b:Int32, score:Float32.

    ``events`` may carry a ``query`` column (:func:`with_query_flag`) for ``cfg.query_weight``.
    """
    n, n_sessions = None, 0
    if cfg.normalize in ("cosine", "lift"):
        n = events.select("session", "item").unique().group_by("item").len()
        n_sessions = events.get_column("session").n_unique()
    return expand_hops(top_neighbours(weighted_pairs(events, cfg), cfg, n, n_sessions), cfg)


class Covisit(CandidateSource):
    name = "covisit"
    Config = CovisitConfig

    def __init__(self, cfg: CovisitConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.nbrs: pl.DataFrame | None = None

    def _to_key(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Replace ``item`` by the counted key (the ASIN index when key is product)."""
        if self.cfg.key == "item":
            return frame
        return (
            frame.join(self._items.select("item", "product"), on="item", how="left")
            .with_columns(item=pl.col("product"))
            .drop("product")
        )

    def fit(self, history: pl.DataFrame, items: pl.DataFrame) -> Self:
        self._items = catalogue_items(items)
        if self.cfg.grid:
            self.cfg = self.select(history, items)
        columns = ["session", "position", "item"] + (["query"] if "query" in history.columns else [])
        self.nbrs = neighbours(self._to_key(history.select(columns)), self.cfg)
        return self

    def generate(self, sessions: pl.DataFrame, k: int) -> pl.DataFrame:
        assert self.nbrs is not None, "fit first"
        recent = recent_items(sessions, max(self.cfg.max_session_items, self.cfg.lag), self.cfg.recency_decay)
        if self.cfg.lag:
            recent = recent.filter(pl.col("recency") == self.cfg.lag - 1).with_columns(weight=pl.lit(1.0))
        recent = self._to_key(recent)
        scores = recent.join(self.nbrs, left_on="item", right_on="a").select(
            "session", "b", "recency", score=pl.col("weight") * pl.col("score")
        )
        scores = ordered_sum(scores, ["session", "b"], ["recency"])
        if self.cfg.key == "product":
            # Back from ASIN to the (ASIN, locale) item of the session's own locale.
            locale_items = self._items.filter(pl.col("in_catalog")).select("item", "product", "locale")
            scores = (
                scores.join(sessions.select("session", "locale").unique(), on="session")
                .join(locale_items, left_on=["b", "locale"], right_on=["product", "locale"])
                .select("session", "item", "score")
            )
        else:
            scores = scores.rename({"b": "item"})
        return finalize(scores, sessions, self._items, k, summed=True)

    def select(self, history: pl.DataFrame, items: pl.DataFrame) -> CovisitConfig:
        """The grid variant with the best MRR@100 on held-out history sessions (ties: the first listed).

        What the local validation split does, inside the history: a hash-drawn ``select_share`` of the
        sessions holding their target (at most ``select_sessions``; of ``select_locales`` when given)
        lose their last event, every variant is fitted on the rest and ranks that event. The draw
        depends on the session id and seed only, so the valid and test splits hold out nearly the same
        sessions and choose alike.
        """
        variants = self.cfg.variants()
        cols = ["session", "position", "item"] + (["query"] if "query" in history.columns else [])
        h = history.select(cols)
        locale = (
            h.group_by("session")
            .agg(pl.col("item").first())
            .join(items.select("item", "locale"), on="item")
            .select("session", "locale")
        )
        eligible = h.group_by("session").agg(n=pl.len()).filter(pl.col("n") >= 2)
        if "query" in h.columns:
            eligible = eligible.join(
                h.filter(~pl.col("query")).select("session").unique(), on="session", how="semi"
            )
        eligible = eligible.join(locale, on="session")
        if self.cfg.select_locales:
            eligible = eligible.filter(pl.col("locale").is_in(list(self.cfg.select_locales)))
        draw = (pl.col("session").hash(self.seed) % 1_000_003).cast(pl.Float64) / 1_000_003
        held = (
            eligible.with_columns(_u=draw)
            .filter(pl.col("_u") < self.cfg.select_share)
            .sort("_u", "session")
            .head(self.cfg.select_sessions)
            .select("session", "locale")
        )
        if held.is_empty():
            log.warning("covisit grid: no held-out session to choose on; first variant kept")
            return variants[0]
        last = h.join(held, on="session", how="semi").group_by("session").agg(pl.col("position").max())
        is_last = pl.struct("session", "position").is_in(
            last.select(pl.struct("session", "position")).to_series().implode()
        )
        fit_on, target = h.filter(~is_last), h.filter(is_last).select("session", "item")
        queries = held.join(fit_on.select("session", "position", "item"), on="session").sort(
            "session", "position"
        )
        scores = []
        for cfg in variants:
            top = Covisit(cfg, self.seed).fit(fit_on, items).generate(queries, 100)
            ranks = target.join(top, on=["session", "item"], how="left")["rank"]
            scores.append(float((1.0 / ranks.cast(pl.Float64)).fill_null(0.0).sum() / held.height))
        best = max(range(len(variants)), key=lambda i: (scores[i], -i))
        log.info(
            "covisit grid on %d held-out sessions: MRR@100 %s; chose %s",
            held.height,
            [round(x, 4) for x in scores],
            self.cfg.grid[best],
        )
        self.selection = {"sessions": held.height, "mrr@100": scores, "chosen": dict(self.cfg.grid[best])}
        return variants[best]
