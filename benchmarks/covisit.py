"""Benchmark: co-visitation counts with polars (candidates.covisit.pair_weights) vs plain pandas.

    python benchmarks/covisit.py --scale 1.0 [--events data/prepared/events.parquet] [--window 3]

Without ``--events`` the synthetic world is generated at ``--scale`` into a temporary directory
(``--workdir`` keeps it) and prepared into long-form events. Each implementation then runs in a
fresh process, so that its wall time and peak RSS are its own; both compute the same counts (the
symmetric, per-session-unique, distance-weighted window of the covisit source) and the benchmark
checks that they agree. Prints pairs/second (pairs emitted before aggregation), wall time, peak
RSS and the pandas/polars time ratio, in wall and in CPU seconds (with ``--repeat N``, the fastest
of N runs of each, which matters on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def covisit_config(cfg_kwargs: dict):
    """params.yaml ``source_defaults.covisit`` (of the repository) with ``cfg_kwargs`` replaced."""
    from candidates.covisit import CovisitConfig
    from candidates.union import load_source_defaults
    from core.config import from_dict

    defaults = load_source_defaults(Path(__file__).resolve().parents[1] / "params.yaml")["covisit"]
    return from_dict(CovisitConfig, {**defaults, **cfg_kwargs}, "covisit")


def run_polars(events_path: str, cfg_kwargs: dict) -> dict:
    import polars as pl

    from candidates.covisit import pair_weights

    events = pl.read_parquet(events_path, columns=["session", "position", "item"])
    start, cpu = time.perf_counter(), time.process_time()
    w = pair_weights(events, covisit_config(cfg_kwargs))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": _peak_rss_mib(), "pairs_out": w.height,
            "total_weight": float(w["w"].sum())}


def run_pandas(events_path: str, cfg_kwargs: dict) -> dict:
    """The straightforward pandas version: shifted copies per distance, then two group-bys."""
    import pandas as pd

    cfg = covisit_config(cfg_kwargs)
    df = pd.read_parquet(events_path, columns=["session", "position", "item"])
    start, cpu = time.perf_counter(), time.process_time()
    df = df.sort_values(["session", "position"])
    if cfg.collapse_repeats:
        df = df[(df["item"] != df["item"].shift()) | (df["session"] != df["session"].shift())]
    parts = []
    for d in range(1, cfg.window + 1):
        nxt = df.groupby("session")["item"].shift(-d)
        p = pd.DataFrame({"session": df["session"], "a": df["item"], "b": nxt, "d": d}).dropna()
        p = p[p["a"] != p["b"]].astype({"b": "int32"})
        if cfg.direction in ("both", "forward"):
            parts.append(p)
        if cfg.direction in ("both", "backward"):
            parts.append(p.rename(columns={"a": "b", "b": "a"}))
    pairs = pd.concat(parts, ignore_index=True)
    if cfg.unique_per_session:
        pairs = pairs.groupby(["session", "a", "b"], as_index=False)["d"].min()
    pairs["w"] = 1.0 / pairs["d"].astype("float64") ** cfg.distance_weight
    w = pairs.groupby(["a", "b"])["w"].sum()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": _peak_rss_mib(), "pairs_out": len(w),
            "total_weight": float(w.sum())}


def raw_pairs(events_path: str, cfg_kwargs: dict) -> int:
    """Pairs emitted before aggregation (the work both implementations do)."""
    import polars as pl

    cfg = covisit_config(cfg_kwargs)
    ev = pl.read_parquet(events_path, columns=["session", "position", "item"]).sort("session", "position")
    if cfg.collapse_repeats:
        ev = ev.filter((pl.col("item") != pl.col("item").shift(1))
                       | (pl.col("session") != pl.col("session").shift(1))
                       | pl.col("item").shift(1).is_null())
    per_direction = 1 + (cfg.direction == "both")
    n = 0
    for d in range(1, cfg.window + 1):
        n += ev.select(((pl.col("session") == pl.col("session").shift(-d))
                        & (pl.col("item") != pl.col("item").shift(-d))).sum()).item()
    return n * per_direction


def _child(fn, args, queue) -> None:
    queue.put(fn(*args))


def in_fresh_process(fn, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def make_events(scale: float, seed: int, workdir: Path) -> Path:
    """Generate the synthetic world at ``scale`` and prepare it; returns the events parquet path."""
    from core import config
    from pipeline import prepare, synthetic

    events = workdir / f"events_scale{scale}.parquet"
    if events.exists():
        return events
    raw_dir = workdir / f"raw_scale{scale}"
    t0 = time.perf_counter()
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    synthetic.generate(raw_dir, scale=scale, seed=seed,
                       cfg=config.load_section(synthetic.SyntheticConfig, "synthetic", params))
    products, train, tests, _ = prepare.read_raw(raw_dir, "raise")
    prepare.prepare(products, train, tests).events.write_parquet(events)
    print(f"generated + prepared scale {scale} in {time.perf_counter() - t0:.0f}s -> {events}")
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--events", type=Path, help="an existing events.parquet (skips generation)")
    parser.add_argument("--workdir", type=Path, help="keep generated data here (default: a temp dir)")
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--direction", default="both")
    parser.add_argument("--distance-weight", type=float, default=1.0)
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs per implementation; the fastest is kept")
    args = parser.parse_args()
    cfg = {"window": args.window, "direction": args.direction, "distance_weight": args.distance_weight}

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        events = args.events or make_events(args.scale, args.seed, workdir)
        import polars as pl

        n_events = pl.scan_parquet(events).select(pl.len()).collect().item()
        n_pairs = raw_pairs(str(events), cfg)
        print(f"events {n_events:,}  pairs emitted {n_pairs:,}  config {cfg}")
        impls = {"polars": run_polars} | ({} if args.skip_pandas else {"pandas": run_pandas})
        results = {name: min((in_fresh_process(fn, str(events), cfg) for _ in range(args.repeat)),
                             key=lambda r: r["wall_s"]) for name, fn in impls.items()}
    for name, r in results.items():
        print(f"{name:7s} wall {r['wall_s']:8.1f}s  cpu {r['cpu_s']:8.1f}s  "
              f"{n_pairs / r['wall_s'] / 1e6:7.2f}M pairs/s  "
              f"peak RSS {r['peak_rss_mib']:8.0f} MiB  distinct pairs {r['pairs_out']:,}")
    if "pandas" in results:
        p, q = results["polars"], results["pandas"]
        assert p["pairs_out"] == q["pairs_out"], "implementations disagree on the pairs"
        tolerance = 1e-6 * max(1.0, q["total_weight"])
        assert abs(p["total_weight"] - q["total_weight"]) <= tolerance, "weights differ"
        print(f"speed-up polars vs pandas: {q['wall_s'] / p['wall_s']:.1f}x wall, "
              f"{q['cpu_s'] / p['cpu_s']:.1f}x cpu")
    print(json.dumps({"events": n_events, "pairs": n_pairs, **results}))


if __name__ == "__main__":
    main()
