"""The Dask path's memory per process against the data: driver and worker peak RSS of every stage.

    python benchmarks/distributed.py --scales 0.1 0.25 0.5   # appends to benchmarks/results/distributed.json
    python benchmarks/distributed.py --scales 1.0 --memory-limit 4GiB --partitions-per-worker 8

For each scale it generates a synthetic world (cached in ``--workdir``: generate, prepare, split with
params.yaml's seed and split), starts a real cluster (``dask scheduler`` and ``--workers`` x ``dask worker``
processes with ``--memory-limit`` each, pipeline/engine/cluster.py), writes a project whose params.yaml is
the repository's with ``engine: dask`` and ``dask.scheduler_address`` pointing at it, and runs the stage
mains as DVC runs them, each as its own process: candidates (valid, test), features (valid, test),
train_ranker, predict. Per stage it records:

- ``driver_peak_rss_mib``: the stage process's peak RSS (``wait4``): what the machine running ``dvc repro``
  needs;
- ``worker_peak_rss_mib``: each worker process's peak RSS, the workers restarted before the stage so the
  peak is the stage's own; ``worker_restarted`` if a worker process changed during the stage (the nanny
  killed it past its memory limit, so its peak was lost with it);
- ``worker_peak_tasks``: per worker, the last task kinds after which its peak grew, with the peak then
  (MiB): what sets the peak;
- ``wall_s``, and the split's history events (the interactions the exponents are fitted against);
- ``figures``: what the stage logs on the Dask path (shuffle rows and MiB written to the buckets, the
  rows of the per-chunk cuts, chunks and session ranges).

The sources are params.yaml's of the types in ``--source-types`` (default: the co-visitation family with
its grid, attribute, popularity: the cheap ones), ``features.deep_models`` off (no checkpoints here).
``exponents`` holds, per stage, the least-squares slope of log(peak) on log(events) over the scales recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# This file is called distributed.py: its folder must not shadow the ``distributed`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

CHEAP_SOURCES = ("covisit", "attribute", "popularity")
STAGES = ("candidates_valid", "candidates_test", "features_valid", "features_test", "train_ranker", "predict")


def world(scale: float, workdir: Path) -> Path:
    """Generate, prepare and split the synthetic world of ``scale`` (params.yaml's seed and split)."""
    from core import config
    from pipeline import prepare, split, synthetic

    root = workdir / f"scale_{scale:g}"
    if (root / "split" / "valid" / "targets.parquet").exists():
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
        if fold.targets is not None:
            fold.targets.write_parquet(root / "split" / name / "targets.parquet")
    print(f"world {scale:g}: {time.perf_counter() - t0:.0f}s", flush=True)
    return root


def project(root: Path, proj: Path, address: str, args: argparse.Namespace) -> None:
    """A project folder: params.yaml with engine dask on ``address`` and the benchmark's sources."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["engine"] = "dask"
    params["dask"].update(scheduler_address=address, partitions_per_worker=args.partitions_per_worker,
                          scratch_dir=str(args.workdir / "scratch"))
    sources = params["candidates"]["sources"]
    params["candidates"]["sources"] = {k: v for k, v in sources.items() if v["type"] in args.source_types}
    params["features"]["deep_models"] = {}
    proj.mkdir(parents=True, exist_ok=True)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def commands(root: Path, proj: Path) -> dict[str, list[str]]:
    py = [sys.executable, "-m"]
    data = ["--prepared", str(root / "prepared"), "--splitdir", str(root / "split")]
    out = {}
    for split in ("valid", "test"):
        out[f"candidates_{split}"] = [*py, "pipeline.candidate_gen", "--split", split, *data,
                                      "--out", str(proj / f"union-{split}.parquet")]
        out[f"features_{split}"] = [*py, "pipeline.features_stage", "--split", split, *data,
                                    "--union", str(proj / f"union-{split}.parquet"),
                                    "--out", str(proj / f"features-{split}")]
    out["train_ranker"] = [*py, "pipeline.train_ranker", "--features", str(proj / "features-valid"), *data,
                           "--model", str(proj / "model"), "--metrics", str(proj / "ranker.json"),
                           "--importance", str(proj / "importance.csv")]
    out["predict"] = [*py, "pipeline.predict", "--model", str(proj / "model"), "--features",
                      str(proj / "features-test"), *data, "--raw", str(root / "raw"),
                      "--out", str(proj / "submissions")]
    return out


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _pid() -> int:
    return os.getpid()


def _blame_plugin():
    """A ``distributed.WorkerPlugin`` (imported here: the module imports Dask only in ``main``)."""
    from distributed import WorkerPlugin

    class PeakBlame(WorkerPlugin):
        """A worker plugin: which task raised the worker's peak RSS. After each task it reads ``ru_maxrss``; a
        task after which the peak grew is recorded with the new peak (MiB), so the last entry names the task
        kind that set the stage's peak (``worker_peak_tasks``)."""

        name = "m2-peak-blame"

        def setup(self, worker) -> None:
            self.peak, self.steps = _peak(), []

        def transition(self, key, start, finish, **kwargs) -> None:
            if start != "executing":
                return
            peak = _peak()
            if peak > self.peak + 16 * 1024:  # grew by more than 16 MiB
                from distributed.utils import key_split

                self.steps.append((key_split(key), round(peak / 1024)))
            self.peak = max(self.peak, peak)

    return PeakBlame()


def _blame(dask_worker) -> list:
    plugin = dask_worker.plugins.get("m2-peak-blame")
    return plugin.steps[-3:] if plugin else []


def run_stage(client, name: str, cmd: list[str], proj: Path, log_dir: Path) -> dict:
    """One stage in its own process: its peak RSS (the driver) and the workers' (restarted before)."""
    client.restart(wait_for_workers=True)
    pids = client.run(_pid)
    t0 = time.perf_counter()
    with (log_dir / f"{name}.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=proj, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{name} failed:\n{(log_dir / f'{name}.log').read_text()[-4000:]}")
    after = client.run(_pid)
    figures = [json.loads(line.split("dask figures ", 1)[1])
               for line in (log_dir / f"{name}.log").read_text().splitlines() if "dask figures " in line]
    return {
        "stage": name,
        "wall_s": round(wall, 1),
        "driver_peak_rss_mib": round(usage.ru_maxrss / 1024),
        "worker_peak_rss_mib": sorted(round(v / 1024) for v in client.run(_peak).values()),
        "scheduler_peak_rss_mib": round(client.run_on_scheduler(_peak) / 1024),
        "worker_restarted": sorted(pids.values()) != sorted(after.values()),
        "worker_peak_tasks": [steps for _, steps in sorted(client.run(_blame).items())],
        **({"figures": figures[-1]} if figures else {}),
    }


def events_of(root: Path, split: str) -> int:
    import polars as pl

    return pl.scan_parquet(root / "split" / split / "history.parquet").select(pl.len()).collect().item()


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(ys) on log(xs)."""
    if len(xs) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return round(sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / den, 3) if den else None


def exponents(runs: list[dict], workers: int, memory_limit: str) -> dict:
    out = {}
    for stage in STAGES:
        rows = sorted((r for r in runs if r["stage"] == stage and r["workers"] == workers
                       and r["memory_limit"] == memory_limit), key=lambda r: r["events"])
        xs = [r["events"] for r in rows]
        out[stage] = {
            "scales": [r["scale"] for r in rows],
            "driver": slope(xs, [r["driver_peak_rss_mib"] for r in rows]),
            "worker": slope(xs, [max(r["worker_peak_rss_mib"]) for r in rows]),
        }
    return out


def main() -> None:
    from pipeline.engine import cluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions-per-worker", type=int, default=4)
    parser.add_argument("--memory-limit", default="4GiB")
    parser.add_argument("--source-types", nargs="+", default=list(CHEAP_SOURCES))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/m2_distributed"))
    parser.add_argument("--keep-project", action="store_true",
                        help="keep the scale's project folder: run later stages on earlier stages' outputs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "distributed.json")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from distributed import Client

    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    record.setdefault("stages", [])
    for scale in args.scales:
        # In a child process: a process that generated the world and then starts the cluster and the stages
        # passes its peak on (Linux carries the forking process's RSS into a child's ru_maxrss), so every
        # driver and the scheduler would read as large as the generator's peak.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            root = pool.submit(world, scale, args.workdir).result()
        proj = args.workdir / f"project_{scale:g}"
        if not args.keep_project:
            shutil.rmtree(proj, ignore_errors=True)
        log_dir = proj / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        address, procs = cluster.start(log_dir, args.workers, args.memory_limit)
        try:
            project(root, proj, address, args)
            cmds = commands(root, proj)
            with Client(address) as client:
                client.register_plugin(_blame_plugin())
                for stage in args.stages:
                    run = {"scale": scale, "workers": args.workers, "memory_limit": args.memory_limit,
                           "partitions_per_worker": args.partitions_per_worker,
                           "cores": len(os.sched_getaffinity(0)), "source_types": args.source_types,
                           "events": events_of(root, "test" if stage in ("candidates_test", "features_test",
                                                                         "predict") else "valid"),
                           **run_stage(client, stage, cmds[stage], proj, log_dir)}
                    print(json.dumps(run), flush=True)
                    key = (scale, stage, args.workers, args.memory_limit)
                    record["stages"] = [r for r in record["stages"] if (r["scale"], r["stage"], r["workers"],
                                                                         r["memory_limit"]) != key] + [run]
                    record["exponents"] = exponents(record["stages"], args.workers, args.memory_limit)
                    args.out.write_text(json.dumps(record, indent=2) + "\n")
        finally:
            cluster.stop(procs)


if __name__ == "__main__":
    main()
