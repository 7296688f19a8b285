"""Wall time and peak memory of the ``stats`` and ``prepare`` stages on one raw directory.

    python benchmarks/stats_prepare.py --raw /tmp/stats_work/raw10 --scale 1.0 --stage stats prepare \
        --code new=. [--code base=/tmp/stats_work/base] [--max-rss-gib 7]

Each (stage, code) runs as its own subprocess, ``python -m pipeline.<stage>`` with PYTHONPATH at the
code root (``label=path``: a checkout of the tree to measure, e.g. a ``git archive`` of the commit before
a change), in this repository's root so params.yaml is this one. The figures: wall time, CPU time and
peak RSS of that child from ``os.wait4`` (ru_maxrss), the peak RSS of its process tree sampled every
0.2 s (psutil), the 1-minute load average at start and end (wall times depend on it; peak RSS does not),
and the sha256 of every output file, so two code versions' outputs can be compared byte for byte.
``--max-rss-gib`` kills a child whose sampled RSS passes it (the run is recorded as ``killed``).

The record (``--out``, default benchmarks/results/stats_prepare.json) keeps one run per
(stage, code label, scale): a rerun replaces it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage_cmd(stage: str, raw: Path, out: Path) -> tuple[list[str], list[Path]]:
    """The stage's dvc.yaml command with its outputs under ``out``, and the output files to hash."""
    if stage == "stats":
        return (
            [
                sys.executable,
                "-m",
                "pipeline.stats",
                "--raw",
                str(raw),
                "--out",
                str(out / "data_stats.json"),
            ],
            [out / "data_stats.json"],
        )
    if stage == "prepare":
        prepared = out / "prepared"
        files = [prepared / f"{n}.parquet" for n in ("items", "sessions", "events", "targets")]
        return (
            [
                sys.executable,
                "-m",
                "pipeline.prepare",
                "--raw",
                str(raw),
                "--out",
                str(prepared),
                "--report",
                str(out / "prepare.json"),
            ],
            files + [out / "prepare.json"],
        )
    raise ValueError(stage)


def measure(cmd: list[str], code_root: Path, max_rss_gib: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root.resolve())}
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    child = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    peak, killed, done = [0], [False], threading.Event()

    def sample() -> None:
        proc = psutil.Process(child.pid)
        while not done.is_set():
            total = 0
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    total += p.memory_info().rss
            except psutil.Error:
                pass
            peak[0] = max(peak[0], total)
            if total > max_rss_gib * GIB and not killed[0]:
                killed[0] = True
                os.killpg(child.pid, signal.SIGKILL)
            done.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stderr = child.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    thread.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": child.returncode,
        "killed": killed[0],
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 3),
        "sampled_peak_rss_gib": round(peak[0] / GIB, 3),
        "load1_start": round(load_start, 2),
        "load1_end": round(os.getloadavg()[0], 2),
        "stderr_tail": stderr[-600:] if child.returncode else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", type=Path, required=True, help="raw directory (generated with m2 generate)")
    parser.add_argument(
        "--scale", type=float, required=True, help="the data.scale it was generated at (the key)"
    )
    parser.add_argument("--stage", nargs="+", choices=["stats", "prepare"], default=["stats", "prepare"])
    parser.add_argument(
        "--code", nargs="+", default=["new=."], help="label=code root (PYTHONPATH), in run order"
    )
    parser.add_argument("--max-rss-gib", type=float, default=7.0, help="kill a run whose RSS passes this")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/stats_prepare_bench"))
    parser.add_argument("--note", default="", help="stored with each run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "stats_prepare.json")
    args = parser.parse_args()
    record = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    for stage in args.stage:
        for spec in args.code:
            label, _, root = spec.partition("=")
            out = args.scratch / f"{stage}_{label}_{args.scale:g}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            cmd, files = stage_cmd(stage, args.raw.resolve(), out)
            run = {
                "stage": stage,
                "code": label,
                "scale": args.scale,
                "raw": str(args.raw),
                "cores": os.cpu_count(),
                **measure(cmd, Path(root or "."), args.max_rss_gib),
                "note": args.note,
            }
            run["outputs"] = {f.name: sha256(f) for f in files if f.exists()}
            print(
                f"{stage:<8} {label:<6} scale {args.scale:g}: rc {run['rc']}{' KILLED' if run['killed'] else ''} "  # noqa: E501
                f"wall {run['wall_s']:.1f}s cpu {run['cpu_s']:.1f}s peak RSS {run['peak_rss_gib']:.2f} GiB "
                f"(sampled {run['sampled_peak_rss_gib']:.2f}) load {run['load1_start']:.2f}->{run['load1_end']:.2f}",  # noqa: E501
                flush=True,
            )
            for name, digest in run["outputs"].items():
                print(f"    {name} {digest}")
            if run["rc"]:
                print(run["stderr_tail"], file=sys.stderr)
            record["runs"] = [
                r for r in record["runs"] if (r["stage"], r["code"], r["scale"]) != (stage, label, args.scale)
            ] + [run]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
