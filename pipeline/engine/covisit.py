"""Co-visitation on Dask: the counts of candidates.covisit as a bucket shuffle, top-k per key, the neighbour
tables left in buckets on the scratch store.

    fit(client, paths, sources, ranges, root)           # every Covisit: nbrs in <root>/nbrs-s<i>/b<j>.parquet
    nbrs = neighbours(client, paths, cfg, n_parts, root)  # one table gathered (tests, small data)

Input: the split's history parquet (session, position, item), read by each task for its session range.
Plan, per source ``i`` (``B`` buckets, one per range):

1. map, one task per session range: ``candidates.covisit.pair_counts`` (collapse repeats, pairs within
   ``window``, once per session) -> packed pair keys (a | b | d) and their counts, written into ``B``
   buckets by ``a % B`` (the shuffle volume: the bytes written). For cosine and lift, the sessions per key
   of the range are written per range and summed by one task's streamed scan.
2. reduce, one task per bucket: sum the counts per key (integers, exact), then the single-machine code
   (``weights_from_counts``, ``top_neighbours``) on whole ``a`` groups, written back as bucket ``j`` of
   the neighbour table.
3. ``hops: 2`` only: ``expand_hops`` in three bucket steps: each bucket's expanded keys sent to the bucket
   of their neighbour ``b``, joined there with b's neighbours, the a -> b -> c rows sent back to the bucket
   of ``a`` and merged with its direct ones (``merge_hops``).

Because step 2 runs the same polars expressions on the same rows of each ``a``, the neighbour table
equals ``candidates.covisit.neighbours`` exactly, ties included (tests/test_dask.py checks it).

A grid (``Covisit.select``) is chosen the same way: the held-out sessions are drawn per range (the draw is
per session: each range's first ``select_sessions`` by draw, merged, are the first overall), every variant
is counted by the two steps above on the history less the held-out last events, and one task per variant
ranks those events with the variant's neighbours of the held-out sessions' keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import polars as pl

from candidates.base import CATALOGUE_COLUMNS
from candidates.covisit import (
    Covisit,
    CovisitConfig,
    hop_sources,
    merge_hops,
    pair_counts,
    second_hop,
    top_neighbours,
    weights_from_counts,
    with_query_flag,
)
from pipeline.engine import id_ranges, store

log = logging.getLogger(__name__)

EVENTS = ["session", "position", "item"]
NBRS = {"a": pl.Int32, "b": pl.Int32, "score": pl.Float32}
COUNTS = {"a": pl.Int64, "value": pl.Int64, "len": pl.UInt32}


@dataclass(frozen=True)
class Paths:
    """The candidates stage's parquet inputs (paths or URLs every worker can read)."""

    history: str
    items: str
    events: str = ""      # data/prepared/events.parquet: every session's prev_items (the query flag)
    queries: str = ""


def item_bits_of(max_item: int, window: int) -> int:
    """Bits per key in the packed pair key (as candidates.pairs.pack_bits)."""
    bits = max(int(max_item).bit_length(), 1)
    if 2 * bits + window.bit_length() > 62:
        raise ValueError(
            f"co-visitation key needs {2 * bits + window.bit_length()} bits; items must be < 2**29"
        )
    return bits


def to_key(frame: pl.DataFrame, key: str, items: pl.DataFrame | None) -> pl.DataFrame:
    """``Covisit._to_key``: ``item`` replaced by the counted key."""
    if key == "item":
        return frame
    return (frame.join(items.select("item", "product"), on="item", how="left")
            .with_columns(item=pl.col("product")).drop("product"))


def _key_items(paths: Paths, keys: set[str]) -> pl.DataFrame | None:
    return store.read(paths.items, ["item", "product"]) if "product" in keys else None


# map / reduce ----------------------------------------------------------------------------------------

def _map(paths: Paths, lo: int, hi: int, r: int, cfgs: dict[str, CovisitConfig], bits: dict[str, int],
         root: str, n_buckets: int, exclude: pl.DataFrame | None = None) -> dict[str, Any]:
    """One session range: every source's packed pair counts into its buckets (``map-<name>``)."""
    history = store.read_range(paths.history, lo, hi, EVENTS)
    if exclude is not None:
        history = history.join(exclude, on=["session", "position"], how="anti")
    items = _key_items(paths, {c.key for c in cfgs.values()})
    keyed = {key: to_key(history, key, items) for key in {c.key for c in cfgs.values()}}
    out: dict[str, Any] = {"shuffle_rows": {}, "shuffle_bytes": 0, "n_sessions": 0}
    for name, cfg in cfgs.items():
        shift = bits[cfg.key] + cfg.window.bit_length()
        counts = pair_counts(keyed[cfg.key], cfg, bits[cfg.key]).select(
            a=pl.col("value") // (1 << shift), value="value", len="len")
        out["shuffle_rows"][name] = counts.height
        out["shuffle_bytes"] += store.write_buckets(counts, "a", n_buckets, store.join(root, f"map-{name}"),
                                                    f"m{r:05d}")
    for key in {c.key for c in cfgs.values() if c.normalize in ("cosine", "lift")}:  # sessions per key
        store.write(keyed[key].select("session", "item").unique().group_by("item").len(),
                    store.join(root, f"n-{key}", f"m{r:05d}.parquet"))
    out["n_sessions"] = history["session"].n_unique()
    return out


def _sum_n(root: str, key: str, *parts: dict[str, Any]) -> tuple[pl.DataFrame, int]:
    """(item, len: sessions holding the key; sessions): the ranges' figures summed (each session in one),
    the per-range files by a streamed scan: no task holds every range's rows."""
    n = store.sum_dir(store.join(root, f"n-{key}"), "item", "len").with_columns(pl.col("len").cast(pl.UInt32))
    return n, sum(p["n_sessions"] for p in parts)


def _reduce(root: str, j: int, name: str, cfg: CovisitConfig, item_bits: int,
            n: tuple[pl.DataFrame, int] | None) -> int:
    """Bucket ``j`` of source ``name``: counts summed per key, the top neighbours of its ``a`` keys."""
    partial = store.read_dir(store.bucket_dir(store.join(root, f"map-{name}"), j), COUNTS)
    counts = (partial.group_by("value").agg(pl.col("len").sum()).sort("value")
              .with_columns(pl.col("len").cast(pl.UInt32)))
    w = weights_from_counts(counts, cfg, item_bits)
    nbrs = top_neighbours(w, cfg, *(n if n is not None else (None, 0)))
    table = "nbrs" if cfg.hops == 1 else "direct"  # hops: 2 expands the direct table below
    store.write(nbrs, store.join(root, f"{table}-{name}", f"b{j:05d}.parquet"))
    return nbrs.height


# hops: 2 (candidates.covisit.expand_hops in three bucket steps) --------------------------------------

SECOND = {"a": pl.Int32, "b": pl.Int32, "score": pl.Float64, "hop": pl.Int32}


def _direct(root: str, name: str, j: int) -> pl.DataFrame:
    return store.read(store.join(root, f"direct-{name}", f"b{j:05d}.parquet")).cast(NBRS)


def _hop_map(root: str, j: int, name: str, cfg: CovisitConfig, n_buckets: int) -> None:
    """Bucket ``j``'s keys that get a second hop, sent to the bucket of their neighbour ``b``."""
    store.write_buckets(hop_sources(_direct(root, name, j), cfg), "b", n_buckets,
                        store.join(root, f"hop-{name}"), f"m{j:05d}")


def _hop_join(root: str, k: int, name: str, cfg: CovisitConfig, n_buckets: int) -> None:
    """a -> b -> c through bucket ``k``'s keys b, sent back to the bucket of ``a``."""
    expand = store.read_dir(store.bucket_dir(store.join(root, f"hop-{name}"), k), NBRS)
    store.write_buckets(second_hop(expand, _direct(root, name, k), cfg).cast(SECOND), "a", n_buckets,
                        store.join(root, f"second-{name}"), f"m{k:05d}")


def _hop_merge(root: str, j: int, name: str, cfg: CovisitConfig) -> int:
    second = store.read_dir(store.bucket_dir(store.join(root, f"second-{name}"), j), SECOND)
    nbrs = merge_hops(_direct(root, name, j), second, cfg)
    store.write(nbrs, store.join(root, f"nbrs-{name}", f"b{j:05d}.parquet"))
    return nbrs.height


def _hops(client: Any, root: str, name: str, cfg: CovisitConfig, n_buckets: int) -> int:
    """``expand_hops`` over the buckets: each step reads one bucket, as the counts did."""
    for step in (_hop_map, _hop_join):
        client.gather([client.submit(step, root, j, name, cfg, n_buckets, pure=False)
                       for j in range(n_buckets)])
    return sum(client.gather([client.submit(_hop_merge, root, j, name, cfg, pure=False)
                              for j in range(n_buckets)]))


def _maxima(items: str) -> dict[str, int]:
    frame = store.read(items, ["item", "product"])
    return {"item": int(frame["item"].max() or 0), "product": int(frame["product"].max() or 0)}


def count(client: Any, paths: Paths, cfgs: dict[str, CovisitConfig], ranges: list[tuple[int, int]],
          root: str, exclude: Any = None, stats: dict[str, Any] | None = None) -> int:
    """Every ``cfgs`` source's neighbour table into ``<root>/nbrs-<name>/b<j>.parquet``; the buckets."""
    for name, cfg in cfgs.items():
        if cfg.query_weight != 1.0:
            raise ValueError(f"{name}: co-visitation query_weight != 1 is not implemented on engine: dask "
                             "(use engine: polars)")
    keys = {c.key for c in cfgs.values()}
    maxima = client.submit(_maxima, paths.items, pure=False).result()  # two ints: the items stay there
    bits = {key: item_bits_of(maxima[key], max(c.window for c in cfgs.values())) for key in keys}
    n_buckets = max(len(ranges), 1)
    maps = [client.submit(_map, paths, lo, hi, r, cfgs, bits, root, n_buckets, exclude, pure=False)
            for r, (lo, hi) in enumerate(ranges)]
    n = {key: client.submit(_sum_n, root, key, *maps, pure=False)
         for key in {c.key for c in cfgs.values() if c.normalize in ("cosine", "lift")}}
    from distributed import wait

    wait(maps)  # the buckets written
    reduced = [client.submit(_reduce, root, j, name, cfg, bits[cfg.key], n.get(cfg.key) if
                             cfg.normalize in ("cosine", "lift") else None, pure=False)
               for name, cfg in cfgs.items() for j in range(n_buckets)]
    rows = client.gather(reduced)
    for name, cfg in cfgs.items():
        if cfg.hops != 1:
            rows.append(_hops(client, root, name, cfg, n_buckets))
    if stats is not None:
        figures = client.submit(_map_figures, *maps, pure=False).result()
        stats.update(figures, neighbour_rows=sum(rows))
    return n_buckets


def _map_figures(*parts: dict[str, Any]) -> dict[str, Any]:
    rows: dict[str, int] = {}
    for p in parts:
        for name, v in p["shuffle_rows"].items():
            rows[name] = rows.get(name, 0) + v
    return {"shuffle_rows": rows, "shuffle_mib": round(sum(p["shuffle_bytes"] for p in parts) / 2**20, 1)}


def read_nbrs(root: str, name: str, keys: pl.Series | None = None) -> pl.DataFrame:
    """Source ``name``'s neighbour rows (of ``keys`` only, when given), in the single-machine order: each
    key's rows lie in one bucket in their order, so a stable sort on ``a`` restores it."""
    fs_frames = []
    n_buckets = len(_list(store.join(root, f"nbrs-{name}")))
    for j in range(n_buckets):
        frame = store.read(store.join(root, f"nbrs-{name}", f"b{j:05d}.parquet"))
        fs_frames.append(frame if keys is None else frame.filter(pl.col("a").is_in(keys.implode())))
    if not fs_frames:
        return pl.DataFrame(schema=NBRS)
    return pl.concat(fs_frames).cast(NBRS).sort("a", maintain_order=True)


def _list(url: str) -> list[str]:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    return sorted(fs.glob(store.join(path, "*.parquet")))


def neighbours(client: Any, paths: Paths, cfg: CovisitConfig, n_parts: int, root: str,
               stats: dict[str, Any] | None = None) -> pl.DataFrame:
    """Top ``cfg.top_n`` neighbours per key, a:Int32, b:Int32, score:Float32, sorted by (a, score desc, b):
    equal to ``candidates.covisit.neighbours`` of the history. Gathers the whole table here: for tests
    and small data (the stage leaves it in buckets)."""
    count(client, paths, {"s": cfg}, id_ranges(paths.history, n_parts), root, stats=stats)
    return read_nbrs(root, "s")


# grid selection --------------------------------------------------------------------------------------

def _held_candidates(paths: Paths, lo: int, hi: int, cfg: CovisitConfig, seed: int) -> pl.DataFrame:
    """Covisit.select's eligible sessions of one range, its first ``select_sessions`` by draw."""
    history = store.read_range(paths.history, lo, hi, EVENTS)
    h = with_query_flag(history, store.read_range(paths.events, lo, hi, ["session"]))
    items = store.read(paths.items, ["item", "locale"])
    locale = (h.group_by("session").agg(pl.col("item").first()).join(items, on="item")
              .select("session", "locale"))
    eligible = h.group_by("session").agg(n=pl.len()).filter(pl.col("n") >= 2)
    eligible = eligible.join(h.filter(~pl.col("query")).select("session").unique(), on="session", how="semi")
    eligible = eligible.join(locale, on="session")
    if cfg.select_locales:
        eligible = eligible.filter(pl.col("locale").is_in(list(cfg.select_locales)))
    draw = (pl.col("session").hash(seed) % 1_000_003).cast(pl.Float64) / 1_000_003
    return (eligible.with_columns(_u=draw).filter(pl.col("_u") < cfg.select_share).sort("_u", "session")
            .head(cfg.select_sessions).select("session", "locale", "_u"))


def _held_events(paths: Paths, lo: int, hi: int, held: pl.DataFrame) -> pl.DataFrame:
    return store.read_range(paths.history, lo, hi, EVENTS).join(held, on="session", how="semi")


def _held_split(cfg: CovisitConfig, held: pl.DataFrame, *events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Covisit.select's split of the held-out sessions: their last event (the target, excluded from the
    counts) and the rest (the query)."""
    held = held.sort("_u", "session").head(cfg.select_sessions).select("session", "locale")
    h = pl.concat(events)
    last = h.join(held, on="session", how="semi").group_by("session").agg(pl.col("position").max())
    is_last = pl.struct("session", "position").is_in(last.select(pl.struct("session", "position"))
                                                     .to_series().implode())
    fit_on, target = h.filter(~is_last), h.filter(is_last).select("session", "item")
    queries = held.join(fit_on.select("session", "position", "item"), on="session").sort("session",
                                                                                        "position")
    return {"held": held, "exclude": last, "target": target, "queries": queries}


def _score(paths: Paths, root: str, name: str, cfg: CovisitConfig, seed: int,
           split: dict[str, pl.DataFrame]) -> float:
    """MRR@100 of variant ``name`` on the held-out last events (Covisit.select's score)."""
    items = store.read(paths.items, list(CATALOGUE_COLUMNS))
    source = Covisit(cfg, seed)
    source._items = items
    keys = to_key(split["queries"], cfg.key, items)["item"].drop_nulls().unique()
    source.nbrs = read_nbrs(root, name, keys)
    top = source.generate(split["queries"], 100)
    ranks = split["target"].join(top, on=["session", "item"], how="left")["rank"]
    return float((1.0 / ranks.cast(pl.Float64)).fill_null(0.0).sum() / split["held"].height)


def select(client: Any, paths: Paths, source: Covisit, ranges: list[tuple[int, int]],
           root: str) -> CovisitConfig:
    """``source.select`` on the cluster: the same held-out sessions, variants and choice."""
    cfg = source.cfg
    variants = cfg.variants()
    held_parts = [client.submit(_held_candidates, paths, lo, hi, cfg, source.seed, pure=False)
                  for lo, hi in ranges]
    held = client.submit(lambda *parts: pl.concat(parts), *held_parts, pure=False)
    events = [client.submit(_held_events, paths, lo, hi, held, pure=False) for lo, hi in ranges]
    split = client.submit(_held_split, cfg, held, *events, pure=False)
    n_held = client.submit(lambda s: s["held"].height, split, pure=False).result()
    if n_held == 0:
        log.warning("covisit grid: no held-out session to choose on; first variant kept")
        return variants[0]
    exclude = client.submit(lambda s: s["exclude"], split, pure=False)
    variant_cfgs = {f"grid{v}": variant for v, variant in enumerate(variants)}
    count(client, paths, variant_cfgs, ranges, root, exclude)
    scores = client.gather([client.submit(_score, paths, root, name, variant, source.seed, split, pure=False)
                            for name, variant in variant_cfgs.items()])
    best = max(range(len(variants)), key=lambda i: (scores[i], -i))
    log.info("covisit grid on %d held-out sessions (dask): MRR@100 %s; chose %s", n_held,
             [round(x, 4) for x in scores], cfg.grid[best])
    source.selection = {"sessions": n_held, "mrr@100": scores, "chosen": dict(cfg.grid[best])}
    return variants[best]
