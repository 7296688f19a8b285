"""Stage ``candidates`` on Dask: every source fitted by the workers, the union one task per chunk of query
sessions, the co-visitation neighbours met by each chunk through a bucket join.

    for part in union_parts(client, paths, specs, chunk_size, max_per_session, root, n_parts): ...

The driver passes paths, id bounds and the sources' configs; it holds one union part at a time (the
stage streams them into its output file), never the history or a neighbour table.

- ``covisit`` sources: counted by ``pipeline.engine.covisit`` (grid choice included) into neighbour
  buckets on the scratch store.
- every other source (attribute, popularity, sknn, als, bpr, text, deep) is fitted by one worker task
  that reads the history and items itself, within the source's own caps (``max_fit_sessions``,
  ``sample_size``, ``items_per_key``...): the fitted source stays on the workers (a future) and is sent
  worker to worker to the union tasks.
- query chunks: the sorted query session ids cut every ``chunk_size`` (``pipeline.engine.chunk_bounds``:
  the workers find the edges), so each task runs ``candidates.union.generate_union`` on exactly a chunk of
  the polars path. Per chunk a request task writes the chunk's keys (its sessions' items, and their
  products) into the buckets, a join task per bucket keeps the neighbour rows of requested keys, per
  chunk, and the union task reads its cut back: the rows ``Covisit.generate`` joins, in their order.
- parts come back in session order: concatenated, they are the polars union.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import polars as pl

from candidates.base import CATALOGUE_COLUMNS, query_sessions
from candidates.covisit import Covisit, with_query_flag
from candidates.union import SourceSpec
from core.io import timed
from pipeline.engine import (
    _count_ids,
    chunk_bounds,
    id_ranges,
    item_counts,
    map_ranges,
    store,
    summed_item_counts,
)
from pipeline.engine import covisit as dask_covisit
from pipeline.engine.covisit import NBRS, Paths, to_key

log = logging.getLogger(__name__)


def _fit_other(spec: SourceSpec, paths: Paths) -> SourceSpec:
    """A source fitted on this worker from the whole history, as ``candidate_gen`` fits it (history with
    the query flag): sknn, text, the deep encoders. Its state is capped by its own knobs; the read is not
    (README "Scale-out": what stays capped)."""
    history = with_query_flag(store.read(paths.history), store.read(paths.events, ["session"]))
    spec.source.fit(history, store.read(paths.items))
    return spec


# sources fitted from the events per item (popularity, attribute): counted per range, summed

def _fit_counts(spec: SourceSpec, paths: Paths, folder: str, *parts: None) -> SourceSpec:
    """``fit_counts`` on the per-range counts in ``folder`` (``parts``: their tasks, waited for)."""
    counts = summed_item_counts(folder).rename({"count": "len"})
    spec.source.fit_counts(counts, store.read(paths.items))
    return spec


# sources fitted on a capped sample of sessions (als, bpr: max_fit_sessions), drawn by the workers

def _draw(paths: Paths, lo: int, hi: int, cap: int, seed: int) -> pl.DataFrame:
    """The range's ``cap`` sessions with the smallest ``core.sampling.seeded_uniform`` draw."""
    from core.sampling import seeded_uniform

    ids = store.read_range(paths.history, lo, hi, ["session"])["session"].unique().sort()
    return (pl.DataFrame({"session": ids, "_u": seeded_uniform(ids, None, seed)})
            .sort("_u", "session").head(cap))


def _kept(cap: int, *parts: pl.DataFrame) -> pl.DataFrame:
    """``core.sampling.sample_sessions`` over every range: the ``cap`` smallest draws overall (ties: id)."""
    return pl.concat(parts).sort("_u", "session").head(cap).select("session").sort("session")


def _sample_events(paths: Paths, lo: int, hi: int, kept: pl.DataFrame) -> pl.DataFrame:
    history = store.read_range(paths.history, lo, hi).join(kept, on="session", how="semi")
    return with_query_flag(history, store.read_range(paths.events, lo, hi, ["session"]))


def _fit_sample(spec: SourceSpec, paths: Paths, *parts: pl.DataFrame) -> SourceSpec:
    spec.source.fit(pl.concat(parts), store.read(paths.items))
    return spec


def fit_others(client: Any, paths: Paths, specs: list[SourceSpec], ranges: list[tuple[int, int]],
               root: str) -> dict:
    """name -> future of the fitted spec, for every source but co-visitation: by per-item counts summed
    over ranges (``fit_counts``; the counts pass through ``root``), on a sample the workers draw
    (``max_fit_sessions``), or on one worker."""
    from pipeline.engine import id_at

    out = {}
    for spec in specs:
        source = spec.source
        if hasattr(source, "fit_counts"):
            position = source.cutoff_position(sum(map_ranges(client, _count_ids, paths.history, ranges))) \
                if hasattr(source, "cutoff_position") else 0
            cutoff = id_at(client, paths.history, ranges, position) if position else 0
            folder = store.join(root, f"counts-{spec.name}")
            parts = item_counts(client, paths.history, ranges, folder, cutoff)
            out[spec.name] = client.submit(_fit_counts, spec, paths, folder, *parts, pure=False)
        elif getattr(getattr(source, "cfg", None), "max_fit_sessions", 0):
            cap = source.cfg.max_fit_sessions
            draws = [client.submit(_draw, paths, lo, hi, cap, source.seed, pure=False) for lo, hi in ranges]
            kept = client.submit(_kept, cap, *draws, pure=False)
            parts = [client.submit(_sample_events, paths, lo, hi, kept, pure=False) for lo, hi in ranges]
            out[spec.name] = client.submit(_fit_sample, spec, paths, *parts, pure=False)
        else:
            out[spec.name] = client.submit(_fit_other, spec, paths, pure=False)
    return out


def _sessions(paths: Paths, lo: int, hi: int) -> pl.DataFrame:
    queries = store.read_range(paths.queries, lo, hi)
    events = store.read_range(paths.events, lo, hi).join(queries.select("session"), on="session")
    return query_sessions(queries, events)


def _requests(paths: Paths, lo: int, hi: int, c: int, keys: list[str], root: str, n_buckets: int) -> None:
    sessions = _sessions(paths, lo, hi).select("session", "position", "item")
    items = store.read(paths.items, ["item", "product"]) if "product" in keys else None
    for key in keys:
        frame = (to_key(sessions, key, items).select(a="item").drop_nulls().unique()
                 .with_columns(chunk=pl.lit(c, pl.Int32)))
        store.write_buckets(frame, "a", n_buckets, store.join(root, f"req-{key}"), f"c{c:05d}")


def _join(root: str, j: int, names: dict[str, str]) -> int:
    """Bucket ``j``: each source's neighbour rows of the keys some chunk asked for, per chunk, in order."""
    rows = 0
    for name, key in names.items():
        nbrs = store.read(store.join(root, f"nbrs-{name}", f"b{j:05d}.parquet")).cast(NBRS)
        req = store.read_dir(store.bucket_dir(store.join(root, f"req-{key}"), j),
                             {"a": pl.Int32, "chunk": pl.Int32})
        joined = nbrs.join(req, on="a", maintain_order="left").partition_by("chunk", as_dict=True)
        for (c,), frame in joined.items():
            rows += frame.height
            store.write(frame.drop("chunk"),
                        store.join(root, f"cut-{name}", f"c{c:05d}", f"b{j:05d}.parquet"))
    return rows


def _union(paths: Paths, lo: int, hi: int, c: int, specs: list[SourceSpec], covisit: dict[str, Any],
           root: str, chunk_size: int, max_per_session: int) -> int:
    """Chunk ``c``'s union, written to ``<root>/union/c<c>.parquet``; its rows."""
    from candidates.union import generate_union

    items = store.read(paths.items, list(CATALOGUE_COLUMNS))
    chosen = []
    for spec in specs:
        if spec.name in covisit:
            source = Covisit(covisit[spec.name], spec.source.seed)
            source._items = items
            source.nbrs = store.read_dir(store.join(root, f"cut-{spec.name}", f"c{c:05d}"), NBRS).sort(
                "a", maintain_order=True)
            spec = SourceSpec(spec.name, spec.type, spec.k, source)
        chosen.append(spec)
    parts = list(generate_union(chosen, _sessions(paths, lo, hi), chunk_size, max_per_session))
    frame = pl.concat(parts) if len(parts) > 1 else parts[0]
    store.write(frame, store.join(root, "union", f"c{c:05d}.parquet"))
    return frame.height


def union_parts(client: Any, paths: Paths, specs: list[SourceSpec], chunk_size: int, max_per_session: int,
                root: str, n_parts: int, stats: dict[str, Any] | None = None) -> Iterator[pl.DataFrame]:
    """Fit ``specs`` on the history and yield the union of the query sessions chunk by chunk, in session
    order (each part read back from the scratch store when the driver asks for it)."""
    ranges = id_ranges(paths.history, n_parts)
    n_buckets = max(len(ranges), 1)
    covisit = {s.name: s.source for s in specs if isinstance(s.source, Covisit)}
    others = fit_others(client, paths, [s for s in specs if s.name not in covisit], ranges, root)
    with timed(f"dask: count {list(covisit)}"):
        cfgs = {name: (dask_covisit.select(client, paths, src, ranges, store.join(root, f"grid-{name}"))
                       if src.cfg.grid else src.cfg) for name, src in covisit.items()}
        dask_covisit.count(client, paths, cfgs, ranges, root, stats=stats)
    bounds = chunk_bounds(client, paths.queries, chunk_size, n_parts)
    keys = sorted({c.key for c in cfgs.values()})
    client.gather([client.submit(_requests, paths, lo, hi, c, keys, root, n_buckets, pure=False)
                   for c, (lo, hi) in enumerate(bounds)])
    names = {name: cfg.key for name, cfg in cfgs.items()}
    cut = sum(client.gather(client.map(_join, [root] * n_buckets, range(n_buckets), names=names, pure=False)))
    if stats is not None:
        stats.update(cut_rows=cut, chunks=len(bounds), ranges=len(ranges))
    fitted = [others.get(s.name, s) for s in specs]  # futures for the fitted ones: resolved on the workers
    futures = [client.submit(_union, paths, lo, hi, c, fitted, cfgs, root, chunk_size, max_per_session,
                             pure=False) for c, (lo, hi) in enumerate(bounds)]
    for c, future in enumerate(futures):
        future.result()
        log.info("dask: union chunk %d/%d", c + 1, len(futures))
        yield store.read(store.join(root, "union", f"c{c:05d}.parquet"))
