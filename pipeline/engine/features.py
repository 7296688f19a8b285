"""Stage ``features`` on Dask: the families' co-visitation counts as partitioned group-bys, then the
feature joins one task per session chunk.

    state = fit_families(dask_cfg, inputs, cfg)
    rows, columns = assemble(dask_cfg, state, union_path, history_path, queries, cfg, out)

Counts (``session_item``: co-visits and transitions; ``cross_locale``: per-locale product co-visits,
product transitions, per-locale product counts): each session partition runs the family's own ``fit``
on its sessions (a task per parquet partition), the partial integer counts are shuffled on ``src`` and
summed, and the shares are computed per ``src`` partition with the family's expressions. Integer sums
are exact, so the state (and every feature) equals the single-machine one. The other families are
fitted as on one machine.

Joins: one task per chunk of ``features.chunk_sessions`` query sessions (the same chunks as the polars
path). The count tables are the big part of the state (every co-visited pair of the history), and
broadcasting them to every worker killed a 4 GiB worker at scale 0.25; instead the driver cuts them to
each chunk's last items (``restrict`` of the family, which its ``add`` applies on one machine too) and
ships each task its own cut with the chunk's prev_items. The small states are scattered once. A task
reads its candidates from parquet by session range, runs ``features.assemble.add_features`` and writes
``<out>/part-<n>.parquet`` itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

from core.io import write_parquet
from features import cross_locale, registry, session_item
from features.assemble import add_features, chunk_of, session_chunks
from features.base import Chunk, FeaturesConfig, Inputs
from features.parts import part_path
from pipeline.engine import (
    DaskConfig,
    dask_client,
    n_workers,
    scratch,
    session_ranges,
    write_session_partitions,
)

log = logging.getLogger(__name__)


def _meta(schema: dict[str, pl.DataType]) -> pd.DataFrame:
    return pl.DataFrame(schema=schema).to_pandas()


def _partition_inputs(part: pd.DataFrame, items: pl.DataFrame) -> Inputs:
    history = pl.from_pandas(part,
                             schema_overrides={"session": pl.Int32, "position": pl.Int32, "item": pl.Int32})
    return Inputs(history=history, items=items, sessions=pl.DataFrame())


def _shuffle_sum(frame, keys: list[str], value: str, dtype: pl.DataType, share: str | None, npart: int):
    """Sum ``value`` per ``keys`` with ``keys[0]``'s rows on one partition; ``share`` = value / its sum over
    ``keys[0]`` (Float32), as the families compute it."""
    def reduce(part: pd.DataFrame) -> pd.DataFrame:
        out = pl.from_pandas(part).group_by(keys).agg(pl.col(value).sum().cast(dtype))
        if share:
            ratio = pl.col(value) / pl.col(value).sum().over(keys[0])
            out = out.with_columns(ratio.cast(pl.Float32).alias(share))
        return out.to_pandas()

    schema = {**{k: pl.Int32 for k in keys}, value: dtype, **({share: pl.Float32} if share else {})}
    if "locale" in keys:
        schema["locale"] = pl.String
    return frame.shuffle(on=keys[0], npartitions=npart).map_partitions(reduce, meta=_meta(schema))


def _collect(frame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.from_pandas(frame.compute()).cast(schema)


def fit_session_item(events, items: pl.DataFrame, cfg: FeaturesConfig, npart: int) -> session_item.State:
    empty = items.head(0)

    def partial(part: pd.DataFrame, which: str) -> pd.DataFrame:
        state = session_item.fit(_partition_inputs(part, empty), cfg)
        return getattr(state, which).select("src", "dst", "n").to_pandas()

    meta = _meta({"src": pl.Int32, "dst": pl.Int32, "n": pl.Int32})
    tables = {}
    for which in ("covisit", "transitions"):
        counts = events.map_partitions(partial, which, meta=meta)
        tables[which] = _collect(_shuffle_sum(counts, ["src", "dst"], "n", pl.Int32, "share", npart),
                                 {"src": pl.Int32, "dst": pl.Int32, "n": pl.Int32, "share": pl.Float32})
    attrs = session_item.fit(Inputs(history=pl.DataFrame(schema={"session": pl.Int32, "position": pl.Int32,
                                                                    "item": pl.Int32}),
                                    items=items, sessions=pl.DataFrame()), cfg).attrs
    return session_item.State(tables["covisit"], tables["transitions"], attrs)


def fit_cross_locale(events, items: pl.DataFrame, cfg: FeaturesConfig, npart: int) -> cross_locale.State:
    products = items.select("item", "product", "locale")
    part_items = items.select("item", "product", "locale", "in_catalog")

    def partial(part: pd.DataFrame, which: str) -> pd.DataFrame:
        inputs = _partition_inputs(part, part_items)
        if which == "counts":
            hist = inputs.history.join(products, on="item", how="left")
            return cross_locale.locale_counts(hist).with_columns(pl.col("n").cast(pl.Int64)).to_pandas()
        state = cross_locale.fit(inputs, cfg)
        if which == "per_locale":
            return state.per_locale.select("locale", "src", "dst", "n").to_pandas()
        return state.transitions.select("src", "dst", "si_xl_tr_last1").to_pandas()

    per_locale = events.map_partitions(partial, "per_locale", meta=_meta(
        {"locale": pl.String, "src": pl.Int32, "dst": pl.Int32, "n": pl.Int32}))
    per_locale = _collect(_shuffle_sum(per_locale, ["src", "dst", "locale"], "n", pl.Int32, None, npart),
                          {"src": pl.Int32, "dst": pl.Int32, "locale": pl.String, "n": pl.Int32})
    total = per_locale.group_by("src", "dst").agg(n_all=pl.col("n").sum())  # as cross_locale.fit
    transitions = events.map_partitions(partial, "transitions", meta=_meta(
        {"src": pl.Int32, "dst": pl.Int32, "si_xl_tr_last1": pl.Int32}))
    transitions = _collect(_shuffle_sum(transitions, ["src", "dst"], "si_xl_tr_last1", pl.Int32,
                                        "si_xl_tr_last1_share", npart),
                           {"src": pl.Int32, "dst": pl.Int32, "si_xl_tr_last1": pl.Int32,
                            "si_xl_tr_last1_share": pl.Float32})
    counts = events.map_partitions(partial, "counts", meta=_meta(
        {"product": pl.Int32, "locale": pl.String, "n": pl.Int64}))
    counts = (pl.from_pandas(counts.groupby(["product", "locale"])["n"].sum().reset_index().compute())
              .select(pl.col("product").cast(products["product"].dtype), pl.col("locale").cast(pl.String),
                      pl.col("n").cast(pl.UInt32)))
    return cross_locale.State(total, transitions, per_locale,
                              cross_locale.item_table(products, counts, items))


COUNTED = {"session_item": fit_session_item, "cross_locale": fit_cross_locale}
RESTRICT = {"session_item": session_item.restrict, "cross_locale": cross_locale.restrict}


def fit_state(inputs: Inputs, cfg: FeaturesConfig, n_parts: int, tmp: Path) -> dict[str, Any]:
    """family name -> fitted state, as features.assemble.fit_families, the counted families on the
    active distributed client."""
    import dask.dataframe as dd

    ranges = session_ranges(inputs.history["session"], n_parts)
    paths = write_session_partitions(inputs.history.select("session", "position", "item"), ranges,
                                     tmp / "history")
    # Held in the workers' memory for the count passes below (each worker: its partitions).
    events = dd.read_parquet([str(p) for p in paths], split_row_groups=False).persist()
    state = {}
    for name in registry.FAMILIES:
        if name in COUNTED:
            state[name] = COUNTED[name](events, inputs.items, cfg, len(paths))
        else:
            state[name] = registry.family(name).fit(inputs, cfg)
    return state


def fit_families(dcfg: DaskConfig, inputs: Inputs, cfg: FeaturesConfig) -> dict[str, Any]:
    """features.assemble.fit_families with the co-visitation counts on the cluster of ``dcfg``."""
    with dask_client(dcfg) as client, scratch(dcfg, "features") as tmp:
        return fit_state(inputs, cfg, n_workers(client) * dcfg.partitions_per_worker, tmp)


def _chunk_task(n: int, ids: pl.Series, shared: dict[str, Any], cut: dict[str, Any], union_path: str,
                chunk: Chunk, cfg: FeaturesConfig, out: str) -> tuple[int, list[str]]:
    cands, _ = chunk_of(pl.scan_parquet(union_path), chunk.queries, chunk.events, ids)
    frame = add_features(cands, chunk, {**shared, **cut}, cfg)
    write_parquet(frame, part_path(out, n))
    return frame.height, frame.columns


def assemble_on(client: Any, state: dict[str, Any], union_path: Path, history_path: Path,
                queries: pl.DataFrame,
                cfg: FeaturesConfig, out: Path) -> tuple[int, list[str]]:
    """Write ``out/part-<n>.parquet``, one task per chunk of query sessions; (rows, columns).

    The counted families' tables (every co-visited pair of the history) are not broadcast: the driver
    cuts them to each chunk's last items (the family's own ``restrict``, which its ``add`` applies
    anyway) and ships every task only its cut, so a worker holds one chunk's pairs, not the history's.
    The other families' states (item tables, encoders) are scattered to every worker once.
    """
    chunks = session_chunks(queries["session"], cfg.chunk_sessions)
    shared = client.scatter({k: v for k, v in state.items() if k not in RESTRICT}, broadcast=True)
    history = pl.scan_parquet(history_path)
    out.mkdir(parents=True, exist_ok=True)
    futures = []
    for n, ids in enumerate(chunks):
        in_chunk = pl.col("session").is_in(ids.implode())
        q = queries.filter(pl.col("session").is_between(ids[0], ids[-1])).filter(in_chunk)
        events = (history.filter(pl.col("session").is_between(ids[0], ids[-1])).collect()
                  .join(q.select("session"), on="session", how="semi").select("session", "position", "item"))
        chunk = Chunk(events=events, queries=q.select("session", "locale"))
        cut = {name: RESTRICT[name](state[name], chunk, cfg) for name in RESTRICT if name in state}
        futures.append(client.submit(_chunk_task, n, ids, shared, cut, str(union_path.resolve()), chunk, cfg,
                                     str(out.resolve()), pure=False))
    results = client.gather(futures)
    return sum(r for r, _ in results), (results[-1][1] if results else [])


def assemble(dcfg: DaskConfig, state: dict[str, Any], union_path: Path, history_path: Path,
             queries: pl.DataFrame,
             cfg: FeaturesConfig, out: Path) -> tuple[int, list[str]]:
    """The feature parts of ``queries`` on the cluster of ``dcfg`` (the stage's chunks, one task each)."""
    with dask_client(dcfg) as client:
        return assemble_on(client, state, union_path, history_path, queries, cfg, out)
