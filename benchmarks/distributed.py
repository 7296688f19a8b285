"""Co-visitation and feature assembly on Dask (engine: dask) beside the polars path: wall time and
peak memory.

    python benchmarks/distributed.py --scales 0.05 0.25 1.0   # appends to benchmarks/results/distributed.json
    python benchmarks/distributed.py --scales 0.25 --what covisit --workers 2 --memory-limit 4GiB

For each scale it generates a synthetic world (cached in ``--workdir``), prepares and splits it with
params.yaml's ``split``, and measures, each in a fresh child process (so the peak RSS is the job's own):

- ``covisit``: fitting every ``type: covisit`` source of params.yaml ``candidates.sources`` on the valid
  split's history: polars (candidates.covisit.Covisit.fit) and Dask (pipeline.engine.covisit.fit on a
  LocalCluster of ``--workers`` workers, ``--partitions-per-worker`` session partitions each). The Dask
  figures add the shuffle volume: the map output rows (one per distinct (a, b, d) per session partition,
  3 x int64 = 24 bytes each) that the group-by moves between workers.
- ``features``: the features stage's work on the valid split (the families' fit, then every chunk's
  joins; deep_models off: no checkpoints here) over a union of the cheap sources (the covisit family,
  prefix, popularity; built once with polars and cached): polars (features.assemble) and Dask
  (pipeline.engine.features).

Peak memory: polars: the process's peak RSS; Dask: each worker process's peak RSS (``client.run``) and
the driver's (it holds the history, writes the partitions, and receives the neighbour tables).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
# This file is called distributed.py: its folder must not shadow the ``distributed`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

CHEAP_SOURCES = ("covisit", "attribute", "popularity")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def world(scale: float, workdir: Path) -> Path:
    """Generate, prepare and split the synthetic world of ``scale`` (params.yaml's seed and split)."""
    from core import config
    from pipeline import prepare, split, synthetic

    root = workdir / f"scale_{scale:g}"
    if (root / "split" / "valid" / "history.parquet").exists():
        return root
    t0 = time.perf_counter()
    synthetic.generate(root / "raw", scale=scale, seed=config.seed(REPO / "params.yaml"),
                       cfg=config.load_section(synthetic.SyntheticConfig, "synthetic", REPO / "params.yaml"))
    products, train, tests, _ = prepare.read_raw(root / "raw", "raise")
    prepared = prepare.prepare(products, train, tests)
    (root / "prepared").mkdir(parents=True, exist_ok=True)
    for name in ("items", "sessions", "events", "targets"):
        getattr(prepared, name).write_parquet(root / "prepared" / f"{name}.parquet")
    cfg = config.load_section(split.SplitConfig, "split", REPO / "params.yaml")
    folds = split.make_folds(prepared.sessions, prepared.events, prepared.targets, cfg,
                             config.seed(REPO / "params.yaml"))
    for name, fold in folds.items():
        (root / "split" / name).mkdir(parents=True, exist_ok=True)
        fold.history.write_parquet(root / "split" / name / "history.parquet")
        fold.queries.write_parquet(root / "split" / name / "queries.parquet")
    print(f"world {scale:g}: {time.perf_counter() - t0:.0f}s", flush=True)
    return root


def _sources(types: tuple[str, ...]):
    from candidates.union import CandidatesConfig, build_sources, load_source_defaults, with_defaults
    from core import config

    cfg = config.load_section(CandidatesConfig, "candidates", REPO / "params.yaml")
    picked = {k: v for k, v in cfg.sources.items() if v["type"] in types}
    specs = with_defaults(picked, load_source_defaults(REPO / "params.yaml"))
    return build_sources(specs, config.seed(REPO / "params.yaml")), cfg


def union(root: Path) -> Path:
    """The valid split's union of the cheap sources (polars), cached."""
    from candidates.base import query_sessions
    from candidates.union import fit_sources, generate_union

    path = root / "union-valid.parquet"
    if path.exists():
        return path
    specs, cfg = _sources(CHEAP_SOURCES)
    history = pl.read_parquet(root / "split" / "valid" / "history.parquet")
    queries = pl.read_parquet(root / "split" / "valid" / "queries.parquet")
    events = (pl.read_parquet(root / "prepared" / "events.parquet")
              .join(queries.select("session"), on="session"))
    fit_sources(specs, history, pl.read_parquet(root / "prepared" / "items.parquet"))
    pl.concat(generate_union(specs, query_sessions(queries, events), cfg.chunk_size, cfg.max_per_session)
              ).write_parquet(path)
    return path


def _worker_peaks(client) -> list[float]:
    return sorted(round(v / 1024) for v in client.run(
        lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())


def measure(what: str, engine: str, root: Path, args: argparse.Namespace) -> dict:
    """One measurement, in this (child) process."""
    from pipeline.engine import DaskConfig, dask_client, scratch

    history = pl.read_parquet(root / "split" / "valid" / "history.parquet")
    items = pl.read_parquet(root / "prepared" / "items.parquet")
    dcfg = DaskConfig(scheduler_address="", workers=args.workers, threads_per_worker=1,
                      memory_limit=args.memory_limit, partitions_per_worker=args.partitions_per_worker,
                      scratch_dir=str(args.workdir / "scratch"))
    out: dict = {"what": what, "engine": engine, "events": history.height,
                 "sessions": history["session"].n_unique()}
    if what == "covisit":
        specs, _ = _sources(("covisit",))
        out["sources"] = [s.name for s in specs]
        if engine == "polars":
            t0 = time.perf_counter()
            for s in specs:
                s.source.fit(history, items)
            out["wall_s"] = round(time.perf_counter() - t0, 1)
        else:
            from pipeline.engine import covisit as dask_covisit

            with dask_client(dcfg) as client, scratch(dcfg, "bench") as tmp:
                t0 = time.perf_counter()
                stats: list[dict] = []
                dask_covisit.fit([s.source for s in specs], history, items, client,
                                 args.workers * args.partitions_per_worker, tmp, stats)
                out["wall_s"] = round(time.perf_counter() - t0, 1)
                out["shuffle_rows"] = {s.name: st["shuffle_rows"] for s, st in zip(specs, stats, strict=True)}
                out["shuffle_mib"] = {s.name: round(st["shuffle_bytes"] / 2**20, 1)
                                      for s, st in zip(specs, stats, strict=True)}
                out["worker_peak_rss_mib"] = _worker_peaks(client)
        out["neighbour_rows"] = {s.name: s.source.nbrs.height for s in specs}
    else:
        from core import config
        from features.assemble import assemble_chunks, fit_families
        from features.base import FeaturesConfig, Inputs

        cfg = config.load_section(FeaturesConfig, "features", REPO / "params.yaml")
        cfg = FeaturesConfig(**{**cfg.__dict__, "deep_models": {},
                                "chunk_sessions": args.chunk_sessions or cfg.chunk_sessions})
        out["chunk_sessions"] = cfg.chunk_sessions
        queries = pl.read_parquet(root / "split" / "valid" / "queries.parquet")
        inputs = Inputs(history=history, items=items,
                        sessions=pl.read_parquet(root / "prepared" / "sessions.parquet",
                                                 columns=["session", "dataset", "locale", "length"]))
        union_path = root / "union-valid.parquet"
        out["union_rows"] = pl.scan_parquet(union_path).select(pl.len()).collect().item()
        features_dir = args.workdir / "scratch" / f"features-{engine}"
        t0 = time.perf_counter()
        if engine == "polars":
            events = history.join(queries.select("session"), on="session", how="semi")
            state = fit_families(inputs, cfg)
            out["fit_s"] = round(time.perf_counter() - t0, 1)
            rows = sum(f.height
                       for f in assemble_chunks(pl.scan_parquet(union_path), queries, events, state, cfg))
        else:
            from pipeline.engine import features as dask_features

            with dask_client(dcfg) as client, scratch(dcfg, "bench") as tmp:
                state = dask_features.fit_state(inputs, cfg, args.workers * args.partitions_per_worker, tmp)
                out["fit_s"] = round(time.perf_counter() - t0, 1)
                rows, _ = dask_features.assemble_on(client, state, union_path,
                                                    root / "split" / "valid" / "history.parquet", queries,
                                                    cfg, features_dir)
                out["worker_peak_rss_mib"] = _worker_peaks(client)
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        out["feature_rows"] = rows
    out["driver_peak_rss_mib"] = round(peak_rss_mib())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--what", nargs="+", default=["covisit", "features"], choices=["covisit", "features"])
    parser.add_argument("--engines", nargs="+", default=["polars", "dask"], choices=["polars", "dask"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions-per-worker", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GiB")
    parser.add_argument("--chunk-sessions", type=int, default=None,
                        help="features.chunk_sessions for both engines (default: params.yaml's)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/m2_distributed"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "distributed.json")
    parser.add_argument("--child", nargs=3, metavar=("WHAT", "ENGINE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.child:
        what, engine, root = args.child
        print("RESULT " + json.dumps(measure(what, engine, Path(root), args)), flush=True)
        return
    record = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    for scale in args.scales:
        root = world(scale, args.workdir)
        if "features" in args.what:
            union(root)
        for what in args.what:
            for engine in args.engines:
                cmd = [sys.executable, __file__, "--child", what, engine, str(root), "--workers",
                       str(args.workers),
                       "--partitions-per-worker", str(args.partitions_per_worker), "--memory-limit",
                       args.memory_limit,
                       "--workdir", str(args.workdir)]
                if args.chunk_sessions:
                    cmd += ["--chunk-sessions", str(args.chunk_sessions)]
                child_log = args.workdir / f"child-{what}-{engine}-{scale:g}.log"
                with child_log.open("w") as err:  # the child's progress and Dask's warnings, as they come
                    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not lines:
                    raise SystemExit(f"{what}/{engine} at {scale:g} failed:\n{child_log.read_text()[-3000:]}")
                run = {"scale": scale, "workers": args.workers,
                       "partitions_per_worker": args.partitions_per_worker,
                       "memory_limit": args.memory_limit, "cores": len(os.sched_getaffinity(0)),
                       **json.loads(lines[-1][len("RESULT "):])}
                print(json.dumps(run), flush=True)
                record["runs"] = [r for r in record["runs"]
                                  if (r["scale"], r["what"], r["engine"], r["workers"])
                                  != (scale, what, engine, args.workers)] + [run]
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
