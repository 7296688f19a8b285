"""Stage ``features`` on Dask: every family fitted by the workers from the parquet inputs, the count tables
kept in buckets on ``dask.scratch_dir`` and met by each chunk through a bucket join, the feature parts
written by the workers.

    inputs = Paths(history=..., queries=..., items=..., sessions=..., union=...)
    rows, columns, parts = run(client, inputs, cfg, out, scratch_url, n_parts)

The driver passes paths, id bounds and small configs; it never reads a frame that grows with the data.
With ``P`` session ranges of the history (``dask.partitions_per_worker`` per worker), ``B = P`` buckets and
``C`` chunks of ``features.chunk_sessions`` query sessions:

1. count map, one task per history range: the counted families' per-session counts on that range
   (``session_item``: co-visits, transitions; ``cross_locale``: per-locale product co-visits, product
   transitions), written into ``B`` buckets by ``src % B``; the item counts of ``item`` and
   ``cross_locale`` written per range, then summed by one task's streamed scan into the item tables.
2. count reduce, one task per bucket: the integer counts summed per key and the shares computed with the
   families' expressions, on whole ``src`` groups: one bucket of each table, exact.
3. requests, one task per chunk: the chunk's prev_items (read from the history by id range) give the keys
   ``restrict`` keeps (the last ``last_k`` distinct items, their products), written by ``src % B``.
4. join, one task per bucket: the bucket's tables inner-joined with the bucket's requests, written per
   chunk: the cut ``restrict`` would make, in pieces.
5. features, one task per chunk: its candidates, queries and prev_items read by id range, its cuts read
   back, ``features.assemble.add_features`` with the small states (item tables: one row per item) that
   one worker fitted, ``<out>/part-<n>.parquet`` written.

Integer sums are exact and every ``add`` sees the rows ``restrict`` keeps, so the parts equal the polars
ones (tests/test_dask.py). The ``deep`` family's encoders are fitted on one worker (their checkpoints are
trained elsewhere; fit matches them to the history) and capped as on one machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from core.io import write_parquet
from features import cross_locale, registry, session_item
from features import item as item_family
from features.assemble import add_features, chunk_of
from features.base import (
    FeaturesConfig,
    Inputs,
    covisit_pairs,
    last_distinct,
    transition_counts,
)
from features.parts import part_path
from pipeline.engine import (
    DaskConfig,
    chunk_bounds,
    dask_client,
    id_ranges,
    map_ranges,
    n_workers,
    scratch,
    store,
)

log = logging.getLogger(__name__)

EVENTS = ["session", "position", "item"]
PAIRS = {"src": pl.Int32, "dst": pl.Int32}

# table -> (family, request key, value column, share column or None, schema of the reduced table)
TABLES: dict[str, tuple[str, str, str | None, dict[str, pl.DataType]]] = {
    "si_covisit": ("session_item", "n", "share", {**PAIRS, "n": pl.Int32, "share": pl.Float32}),
    "si_transitions": ("session_item", "n", "share", {**PAIRS, "n": pl.Int32, "share": pl.Float32}),
    "xl_per_locale": ("cross_locale", "n", None, {**PAIRS, "locale": pl.String, "n": pl.Int32}),
    "xl_transitions": ("cross_locale", "si_xl_tr_last1", "si_xl_tr_last1_share",
                       {**PAIRS, "si_xl_tr_last1": pl.Int32, "si_xl_tr_last1_share": pl.Float32}),
}
TOTAL_SCHEMA = {**PAIRS, "n_all": pl.Int32}
COUNTED = ("session_item", "cross_locale")


@dataclass(frozen=True)
class Paths:
    """The stage's parquet inputs, as paths or URLs every worker can read."""

    history: str
    queries: str
    items: str
    sessions: str
    union: str


def _items(paths: Paths, columns: list[str] | None = None) -> pl.DataFrame:
    return store.read(paths.items, columns)


# 1. count map ----------------------------------------------------------------------------------------

def _count_map(paths: Paths, lo: int, hi: int, r: int, cfg: FeaturesConfig, families: tuple[str, ...],
               root: str, n_buckets: int) -> dict[str, int]:
    """One history range: the counted families' tables into buckets, the item-level counts into
    ``<root>/<name>/m<r>.parquet`` (summed by a streamed scan: no task holds every range's counts)."""
    history = store.read_range(paths.history, lo, hi, EVENTS)
    tables: dict[str, pl.DataFrame] = {}
    counts: dict[str, pl.DataFrame] = {}
    if "session_item" in families:
        tables["si_covisit"] = covisit_pairs(history, cfg.covisit_window).collect()
        tables["si_transitions"] = transition_counts(history).select("src", "dst", "n").collect()
    if "cross_locale" in families or "item" in families:
        items = _items(paths, ["item", "product", "locale"])
    if "cross_locale" in families:
        hist = history.join(items, on="item", how="left")
        tables["xl_per_locale"] = covisit_pairs(hist, cfg.covisit_window, key="product",
                                                by=("locale",)).collect()
        tables["xl_transitions"] = (transition_counts(hist, key="product").collect()
                                    .select("src", "dst", si_xl_tr_last1="n"))
        counts["xl_counts"] = cross_locale.locale_counts(hist).with_columns(pl.col("n").cast(pl.Int64))
    if "item" in families:
        sessions = store.read_range(paths.sessions, lo, hi, ["session", "dataset", "length"])
        counts["item_counts"] = item_family.item_counts(history, sessions).with_columns(
            pl.col("n", "n_next", "n_recent").cast(pl.Int64))
    for name, frame in counts.items():
        store.write(frame, store.join(root, name, f"m{r:05d}.parquet"))
    return {"events": history.height,
            "shuffle_bytes": sum(store.write_buckets(frame, "src", n_buckets, store.join(root, f"map-{name}"),
                                                     f"m{r:05d}")
                                 for name, frame in tables.items())}


# 2. count reduce -------------------------------------------------------------------------------------

def _count_reduce(root: str, j: int, names: list[str]) -> None:
    """Bucket ``j`` of each table: partial counts summed per key, shares over ``src`` (whole in it)."""
    for name in names:
        _, value, share, schema = TABLES[name]
        keys = [c for c in schema if c not in (value, share)]
        partial = store.read_dir(store.bucket_dir(store.join(root, f"map-{name}"), j),
                                 {k: schema[k] for k in (*keys, value)})
        table = partial.group_by(keys).agg(pl.col(value).sum().cast(schema[value]))
        if share:
            table = table.with_columns((pl.col(value) / pl.col(value).sum().over("src"))
                                       .cast(pl.Float32).alias(share))
        store.write(table.select(list(schema)), store.join(root, name, f"b{j:05d}.parquet"))
        if name == "xl_per_locale":  # as cross_locale.fit: every locale's co-visits of (src, dst)
            store.write(table.group_by("src", "dst").agg(n_all=pl.col("n").sum()),
                        store.join(root, "xl_total", f"b{j:05d}.parquet"))


def _shuffle_bytes(*parts: dict[str, int]) -> int:
    return sum(p["shuffle_bytes"] for p in parts)


def _sum_item_counts(root: str, *maps: dict[str, int]) -> pl.DataFrame:
    """``item``'s counts summed over the ranges (``maps``: the map tasks, waited for)."""
    return store.sum_dir(store.join(root, "item_counts"), "item", ["n", "n_next", "n_recent"]).with_columns(
        pl.col("n", "n_next", "n_recent").cast(pl.UInt32))


def _item_state(paths: Paths, cfg: FeaturesConfig, counts: pl.DataFrame) -> pl.DataFrame:
    return item_family.table(_items(paths, list(item_family.ITEM_COLUMNS)), counts, cfg)


def _xl_item_state(paths: Paths, root: str, *maps: dict[str, int]) -> pl.DataFrame:
    items = _items(paths, ["item", "product", "locale", "in_catalog"])
    products = items.select("item", "product", "locale")
    counts = (store.sum_dir(store.join(root, "xl_counts"), ["product", "locale"], "n")
              .select(pl.col("product").cast(products["product"].dtype), pl.col("locale").cast(pl.String),
                      pl.col("n").cast(pl.UInt32)))
    return cross_locale.item_table(products, counts, items)


def _fit_small(paths: Paths, cfg: FeaturesConfig, name: str) -> Any:
    """A family whose state does not hold the history's counts (items-only, or the deep encoders)."""
    history = (store.read(paths.history, EVENTS) if name == "deep" and cfg.deep_models
               else pl.DataFrame(schema={c: pl.Int32 for c in EVENTS}))
    inputs = Inputs(history=history, items=_items(paths), sessions=pl.DataFrame())
    if name == "session_item":  # its attrs: the items table only
        return session_item.fit(inputs, cfg).attrs
    return registry.family(name).fit(inputs, cfg)


# 3. requests -----------------------------------------------------------------------------------------

def _chunk(paths: Paths, lo: int, hi: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The query rows with ``lo <= session <= hi`` and their prev_items (the history's events of them)."""
    queries = store.read_range(paths.queries, lo, hi)
    events = store.read_range(paths.history, lo, hi, EVENTS).join(queries.select("session"), on="session",
                                                                   how="semi")
    return queries, events


def _requests(paths: Paths, lo: int, hi: int, c: int, cfg: FeaturesConfig, families: tuple[str, ...],
              root: str, n_buckets: int, xl_item: pl.DataFrame | None) -> None:
    last = last_distinct(_chunk(paths, lo, hi)[1], cfg.last_k)
    keys = {}
    if "session_item" in families:
        keys["session_item"] = last.select(src="item")
    if "cross_locale" in families:
        keys["cross_locale"] = last.join(xl_item.select("item", "product"), on="item", how="left").select(
            src="product")
    for family, frame in keys.items():
        frame = frame.drop_nulls().unique().with_columns(chunk=pl.lit(c, pl.Int32))
        store.write_buckets(frame, "src", n_buckets, store.join(root, f"req-{family}"), f"c{c:05d}")


# 4. join ---------------------------------------------------------------------------------------------

def _join(root: str, j: int, names: list[str]) -> int:
    """Bucket ``j``: each table's rows whose ``src`` a chunk asked for, written per chunk; the rows."""
    rows = 0
    for name in names:
        family = "cross_locale" if name.startswith("xl_") else "session_item"
        schema = TOTAL_SCHEMA if name == "xl_total" else TABLES[name][3]
        table = store.read(store.join(root, name, f"b{j:05d}.parquet")).cast(schema)
        req = store.read_dir(store.bucket_dir(store.join(root, f"req-{family}"), j),
                             {"src": pl.Int32, "chunk": pl.Int32})
        joined = table.join(req, on="src").partition_by("chunk", as_dict=True)
        for (c,), frame in joined.items():
            rows += frame.height
            store.write(frame.drop("chunk"),
                        store.join(root, f"cut-{name}", f"c{c:05d}", f"b{j:05d}.parquet"))
    return rows


# 5. features -----------------------------------------------------------------------------------------

def _cut(root: str, name: str, c: int) -> pl.DataFrame:
    schema = TOTAL_SCHEMA if name == "xl_total" else TABLES[name][3]
    return store.read_dir(store.join(root, f"cut-{name}", f"c{c:05d}"), schema)


def _features(paths: Paths, lo: int, hi: int, c: int, cfg: FeaturesConfig, root: str,
              small: dict[str, Any], out: str) -> tuple[int, list[str]]:
    queries, events = _chunk(paths, lo, hi)
    ids = queries["session"].unique().sort()
    cands, chunk = chunk_of(pl.scan_parquet(paths.union), queries, events, ids)
    state = {}
    for name in registry.FAMILIES:
        if name == "session_item":
            state[name] = session_item.State(_cut(root, "si_covisit", c), _cut(root, "si_transitions", c),
                                             small[name])
        elif name == "cross_locale":
            state[name] = cross_locale.State(_cut(root, "xl_total", c), _cut(root, "xl_transitions", c),
                                             _cut(root, "xl_per_locale", c), small[name])
        else:
            state[name] = small[name]
    frame = add_features(cands, chunk, state, cfg)
    write_parquet(frame, part_path(out, c))
    return frame.height, frame.columns


def run(client: Any, paths: Paths, cfg: FeaturesConfig, out: Path, root: str, n_parts: int,
        stats: dict[str, Any] | None = None) -> tuple[int, list[str], int]:
    """Write ``out/part-<n>.parquet`` for every chunk of the queries; (rows, columns, chunks).

    ``root`` is a fresh scratch folder (URL); ``stats``, when given, receives the shuffle figures.
    """
    families = tuple(registry.FAMILIES)
    missing = [f for f in COUNTED if f not in families]
    if missing:
        raise ValueError(f"features on dask expects the counted families {COUNTED}; missing {missing}")
    ranges = id_ranges(paths.history, n_parts)
    n_buckets = max(len(ranges), 1)
    # 1.-2. counts: map per history range, reduce per bucket
    maps = [client.submit(_count_map, paths, lo, hi, r, cfg, families, root, n_buckets, pure=False)
            for r, (lo, hi) in enumerate(ranges)]
    counts = client.submit(_sum_item_counts, root, *maps, pure=False)
    small: dict[str, Any] = {"item": client.submit(_item_state, paths, cfg, counts, pure=False),
                             "cross_locale": client.submit(_xl_item_state, paths, root, *maps, pure=False)}
    for name in registry.FAMILIES:
        if name not in small:
            small[name] = client.submit(_fit_small, paths, cfg, name, pure=False)
    from distributed import wait

    wait(maps)  # every bucket written before any reduce reads
    reduced = client.map(_count_reduce, [root] * n_buckets, range(n_buckets), names=list(TABLES), pure=False)
    # 3. requests, one per chunk (the chunk edges found by the workers)
    bounds = chunk_bounds(client, paths.queries, cfg.chunk_sessions, n_parts)
    requests = [client.submit(_requests, paths, lo, hi, c, cfg, families, root, n_buckets,
                              small["cross_locale"], pure=False) for c, (lo, hi) in enumerate(bounds)]
    client.gather(reduced + requests)
    # 4. join per bucket
    names = [*TABLES, "xl_total"]
    cut_rows = sum(client.gather(client.map(_join, [root] * n_buckets, range(n_buckets), names=names,
                                            pure=False)))
    # 5. one task per chunk
    out.mkdir(parents=True, exist_ok=True)
    # ``small`` holds futures: the workers resolve them, the states never come here
    results = client.gather([client.submit(_features, paths, lo, hi, c, cfg, root, small, str(out.resolve()),
                                           pure=False) for c, (lo, hi) in enumerate(bounds)])
    if stats is not None:
        stats.update(shuffle_mib=round(client.submit(_shuffle_bytes, *maps).result() / 2**20, 1),
                     cut_rows=cut_rows, chunks=len(bounds), ranges=len(ranges), small=small)
    return sum(r for r, _ in results), (results[-1][1] if results else []), len(bounds)


def read_table(root: str, name: str) -> pl.DataFrame:
    """Every bucket of a reduced table concatenated (tests: the stage never gathers a table)."""
    schema = TOTAL_SCHEMA if name == "xl_total" else TABLES[name][3]
    return store.read_dir(store.join(root, name), schema)


def read_state(root: str, small: dict[str, Any]) -> dict[str, Any]:
    """The fitted state as ``features.assemble.fit_families`` returns it, gathered from the buckets and the
    small states' futures (``stats["small"]`` of :func:`run`): for tests on tiny data."""
    state = {name: f.result() for name, f in small.items()}
    state["session_item"] = session_item.State(read_table(root, "si_covisit"),
                                               read_table(root, "si_transitions"), state["session_item"])
    state["cross_locale"] = cross_locale.State(read_table(root, "xl_total"),
                                               read_table(root, "xl_transitions"),
                                               read_table(root, "xl_per_locale"), state["cross_locale"])
    return state


def _max_per_session(union: str, lo: int, hi: int) -> int:
    frame = store.read_range(union, lo, hi, ["session"])
    return int(frame.group_by("session").len()["len"].max() or 0)


def max_per_session(client: Any, union: str, n_parts: int) -> int:
    """The most candidates of one session in the union, one task per session range."""
    return max(map_ranges(client, _max_per_session, union, id_ranges(union, n_parts)), default=0)


def assemble(dcfg: DaskConfig, paths: Paths, cfg: FeaturesConfig, out: Path) -> tuple[int, list[str], int]:
    """:func:`run` on the cluster of ``dcfg``, ``dask.partitions_per_worker`` history ranges per worker."""
    with dask_client(dcfg) as client, scratch(dcfg, "features") as root:
        return run(client, paths, cfg, out, root, n_workers(client) * dcfg.partitions_per_worker)
