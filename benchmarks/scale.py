"""The whole DVC graph at a given synthetic scale, measured stage by stage.

    python benchmarks/scale.py --scales 0.05 0.1 0.25 0.5 1.0    # appends to benchmarks/results/scale.json
    python benchmarks/scale.py --scales 0.02 --label default -S deep.threads=2
    python benchmarks/scale.py --scales 0.1 1.0 --retime generate  # one stage again, its outputs unchanged
    python benchmarks/scale.py --scales 0.5 1.0 --repeat predict   # one more measurement, same code and data

For each scale it copies the tracked tree into a scratch workspace (``--workdir``, default
/tmp/m2_scale), sets ``data.scale`` (and any ``-S key=value``), and runs ``dvc repro`` there with every
stage's command wrapped by this script's ``probe`` subcommand. The probe runs the stage, samples the
resident memory of its whole process tree every 0.2 s, and appends wall time, CPU time (user + sys
of every descendant) and peak RSS to a log. After the run, rows in/out are read from the parquet
metadata of each stage's deps and outs as dvc.lock resolved them, and the leaderboard from
metrics/leaderboard.json.

The record (``--out``) keeps one run per (scale, label): a rerun replaces it. ``exponents`` is each
stage's least-squares slope of log wall time against log interactions over the runs of scale >= 0.1
(label "scale" only), so 1.0 means time grows linearly with the data. A stage measured more than once
(``--repeat``) enters the fit with the median of its measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30
SAMPLE_S = 0.2


# -- probe: runs inside dvc, one stage -----------------------------------------------------------


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and every descendant (processes that vanish mid-read count 0)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def probe(stage: str, log: Path, cmd: list[str]) -> int:
    start, before = time.perf_counter(), os.times()
    child = subprocess.Popen(cmd)
    peak, load = [0], []
    done = threading.Event()

    def sample() -> None:
        proc = psutil.Process(child.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], tree_rss(proc))
            except psutil.Error:
                return
            load.append(os.getloadavg()[0])
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = child.wait()
    done.set()
    sampler.join()
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    record = {
        "stage": stage,
        "rc": rc,
        "wall_s": round(time.perf_counter() - start, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_gib": round(peak[0] / GIB, 3),
        # The machine's 1-minute load average over the stage: above the cores the stage uses, other
        # work shared the CPU and wall_s is longer than on an idle machine (cpu_s much less so).
        "mean_load": round(sum(load) / len(load), 2) if load else None,
    }
    with log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    return rc


# -- the workspace ------------------------------------------------------------------------------


def copy_tree(dest: Path, fresh: bool = True, ref: str = "") -> None:
    """The working tree's files that git does not ignore (or commit ``ref``'s tree), without data,
    submissions or dvc.lock.

    ``fresh=False`` (``--resume``) copies the code over an existing workspace and keeps its data,
    models, dvc.lock and probe log, so ``dvc repro`` reruns only the stages whose deps changed.
    """
    if dest.exists() and fresh:
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if ref:
        source = dest.parent / f".{dest.name}.src"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir()
        archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
        names = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
    else:
        source = REPO
        names = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    for name in names:
        src = source / name
        if src.is_file() and not name.startswith(("data/", "submissions/")) and name != "dvc.lock":
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / name)
    if ref:
        shutil.rmtree(source)
    if not (dest / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


def set_param(params: dict, dotted: str, value: str) -> None:
    node = params
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    # A new leaf is added, as `dvc exp run -S` does (e.g. a knob a source entry leaves at its
    # default); the stages' strict config loading still rejects a key no config knows.
    node[leaf] = yaml.safe_load(value)


def stage_name(name: str, stage: dict, params: dict) -> str:
    """The probe's name for a stage: ``name@item`` under foreach/matrix, as dvc names them."""
    if "foreach" in stage:
        over = stage["foreach"]
        if isinstance(over, str):  # ${section.key}: a list or a mapping of params.yaml
            over = params
            for part in stage["foreach"].strip("${}").split("."):
                over = over[part]
        return name + ("@${item}" if isinstance(over, list) else "@${key}")
    if "matrix" in stage:
        return name + "@" + "-".join("${item." + key + "}" for key in stage["matrix"])
    return name


def wrap_stages(dvc_yaml: Path, log: Path) -> None:
    """Prefix every stage command with the probe."""
    spec = yaml.safe_load(dvc_yaml.read_text())
    params = yaml.safe_load((dvc_yaml.parent / "params.yaml").read_text())
    me = Path(__file__).resolve()
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        body["cmd"] = (
            f"python {me} probe --stage {stage_name(name, stage, params)} --log {log} -- {body['cmd']}"
        )
    dvc_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))


def parquet_rows(path: Path) -> int:
    if path.is_file():
        return pq.ParquetFile(path).metadata.num_rows if path.suffix == ".parquet" else 0
    if path.is_dir():
        return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(path.rglob("*.parquet")))
    return 0


def stage_rows(workspace: Path) -> dict[str, dict[str, int]]:
    """Stage -> rows_in / rows_out: parquet rows under its deps and outs, as dvc.lock lists them."""
    if not (workspace / "dvc.lock").exists():
        return {}
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    rows = {}
    for name, stage in lock.items():
        rows[name] = {
            "rows_in": sum(parquet_rows(workspace / d["path"]) for d in stage.get("deps", [])),
            "rows_out": sum(parquet_rows(workspace / o["path"]) for o in stage.get("outs", [])),
        }
    return rows


def interactions(workspace: Path) -> int:
    """Train + test prev_items events of the prepared data (the x of the exponent fit)."""
    return parquet_rows(workspace / "data" / "prepared" / "events.parquet")


def set_params(workspace: Path, scale: float, overrides: list[str]) -> None:
    """The workspace's params.yaml with ``data.scale`` and each ``key=value`` of ``overrides`` set."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    set_param(params, "data.scale", str(scale))
    for item in overrides:
        key, _, value = item.partition("=")
        set_param(params, key, value)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def repro(workspace: Path, targets: list[str], log_name: str = "repro.log") -> int:
    """``dvc repro [targets]`` in the workspace with its own code on the path; output in ``log_name``."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": str(workspace),
    }
    with (workspace / log_name).open("w") as out:
        return subprocess.run(
            ["dvc", "repro", *targets], cwd=workspace, env=env, stdout=out, stderr=subprocess.STDOUT
        ).returncode


def read_probe(log: Path) -> dict[str, dict]:
    """Stage -> its probe record; a stage run twice (a resume) keeps its last run."""
    stages = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        rec = json.loads(line)
        stages[rec.pop("stage")] = rec
    return stages


def code_of(ref: str = "") -> str:
    """The code a run measured: commit ``ref``, or HEAD (plus ``+ working tree`` when tracked files
    differ from it)."""
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", ref or "HEAD"], capture_output=True, text=True).stdout.strip()
    if ref:
        return commit
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return f"{commit} + working tree" if dirty else commit


def run_scale(
    scale: float, label: str, overrides: list[str], workdir: Path, resume: bool = False, ref: str = "",
    keep_code: str = "",
) -> dict:
    """``keep_code`` (a params-only resume): the workspace's code and wrapped dvc.yaml stay as they are,
    only ``overrides`` change, and the record's ``code`` is ``keep_code`` (the run's own)."""
    workspace = workdir / f"{label}_{scale:g}"
    if not keep_code:
        copy_tree(workspace, fresh=not resume, ref=ref)
    set_params(workspace, scale, overrides)
    log = workspace / "probe.jsonl"
    if not keep_code:
        wrap_stages(workspace / "dvc.yaml", log)
    print(f"scale {scale:g} ({label}): dvc repro in {workspace}", flush=True)
    start = time.perf_counter()
    rc = repro(workspace, [])
    total = time.perf_counter() - start
    stages = read_probe(log)
    complete = rc == 0
    if not complete:
        print(f"error: dvc repro failed at scale {scale:g} (rc {rc}); see {workspace / 'repro.log'}",
              flush=True)
    for name, rows in stage_rows(workspace).items():
        stages.setdefault(name, {}).update(rows)
    board_path = workspace / "metrics" / "leaderboard.json"
    board = json.loads(board_path.read_text()) if complete and board_path.exists() else {}
    leaderboard = {}
    for dataset, methods in board.items():
        sub = methods.get("submission", {}).get("all", {}) if isinstance(methods, dict) else {}
        if "mrr@100" in sub:
            leaderboard[dataset] = {"mrr": sub["mrr@100"], "ceiling_share": sub.get("share_of_ceiling")}
        elif "bleu" in sub:
            leaderboard[dataset] = {"bleu": sub["bleu"]}
    # The sum of the stages' final runs: a resumed run's total counts each stage once.
    total_wall = sum(s.get("wall_s", 0.0) for s in stages.values())
    run = {
        "scale": scale,
        "label": label,
        "overrides": overrides,
        "cores": len(os.sched_getaffinity(0)),
        "code": keep_code or code_of(ref),
        "interactions": interactions(workspace),
        "total_wall_s": round(total_wall, 1),
        "last_repro_wall_s": round(total, 1),
        "resumed": resume,
        "complete": complete,
        "peak_rss_gib": max((s.get("peak_rss_gib", 0.0) for s in stages.values()), default=0.0),
        "stages": dict(sorted(stages.items())),
        "leaderboard": leaderboard,
    }
    print(json.dumps({k: run[k] for k in ("scale", "label", "total_wall_s", "peak_rss_gib")}), flush=True)
    return run


def retime(run: dict, stages: list[str], workdir: Path, ref: str = "") -> dict:
    """``run`` with ``stages`` measured again by the current code (or ``ref``'s) at its scale and
    overrides, in a fresh workspace where ``dvc repro STAGE`` runs them and their upstream stages.

    For code changes that leave a stage's outputs byte-identical (the caller checks that), so the
    rest of the run stays valid: only those stages' wall, CPU and RSS are replaced, the run's
    ``retimed`` names the code that measured each, and ``total_wall_s`` and the peak follow."""
    workspace = workdir / f"{run['label']}_{run['scale']:g}_retime"
    copy_tree(workspace, fresh=True, ref=ref)
    set_params(workspace, run["scale"], run["overrides"])
    log = workspace / "probe.jsonl"
    wrap_stages(workspace / "dvc.yaml", log)
    print(f"scale {run['scale']:g} ({run['label']}): retiming {stages} in {workspace}", flush=True)
    rc = repro(workspace, stages)
    if rc:
        raise subprocess.CalledProcessError(rc, ["dvc", "repro", *stages])
    records = read_probe(log)
    measured = {name: records[name] for name in stages}
    shutil.rmtree(workspace)
    print(json.dumps(measured), flush=True)
    return merge_retimed(run, measured, code_of(ref))


def merge_retimed(run: dict, measured: dict[str, dict], code: str) -> dict:
    """A copy of ``run`` whose ``measured`` stages carry the new wall, CPU and RSS (rows kept),
    named in ``retimed`` with ``code``; the total and the peak recomputed."""
    run = json.loads(json.dumps(run))
    for name, rec in measured.items():
        run["stages"].setdefault(name, {}).update(rec)
        run.setdefault("retimed", {})[name] = code
    run["total_wall_s"] = round(sum(s.get("wall_s", 0.0) for s in run["stages"].values()), 1)
    run["peak_rss_gib"] = max(s.get("peak_rss_gib", 0.0) for s in run["stages"].values())
    return run


def repeat(run: dict, stages: list[str], workdir: Path) -> dict:
    """``run`` with ``stages`` measured once more in its kept workspace, by the code and on the data
    there (the run's own): ``dvc repro --force --single-item``, through the probe its dvc.yaml already
    has. Each measurement is appended to the run's ``repeats``; the first one in ``stages`` stays."""
    workspace = workdir / f"{run['label']}_{run['scale']:g}"
    log = workspace / "probe.jsonl"
    if not log.exists():
        raise FileNotFoundError(f"{workspace}: no kept workspace of this run (it needs --keep)")
    print(f"scale {run['scale']:g} ({run['label']}): repeating {stages} in {workspace}", flush=True)
    run = json.loads(json.dumps(run))
    for stage in stages:
        before = len(log.read_text().splitlines())
        args = ["--force", "--single-item", stage]
        rc = repro(workspace, args, f"repeat_{stage}.log")
        if rc:
            raise subprocess.CalledProcessError(rc, ["dvc", "repro", *args])
        new = [json.loads(line) for line in log.read_text().splitlines()[before:]]
        for rec in new:  # a foreach stage repeats every item
            name = rec.pop("stage")
            run.setdefault("repeats", {}).setdefault(name, []).append(
                {**{k: rec[k] for k in ("wall_s", "cpu_s", "peak_rss_gib", "mean_load")},
                 "at": time.strftime("%Y-%m-%d %H:%M", time.gmtime())})
    print(json.dumps(run.get("repeats", {})), flush=True)
    return run


def stage_wall(run: dict, name: str) -> float:
    """A stage's wall seconds in ``run``: the median of its first measurement and its repeats."""
    walls = [run["stages"][name]["wall_s"], *(r["wall_s"] for r in run.get("repeats", {}).get(name, []))]
    return statistics.median(walls)


def base_stage(name: str) -> str:
    return name.split("@")[0]


def exponents(runs: list[dict], min_scale: float = 0.1) -> dict[str, float]:
    """Per stage (foreach/matrix items summed), the slope of log wall against log interactions
    (:func:`stage_wall`: the median where a stage was measured more than once)."""
    pts: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        if run["label"] != "scale" or run["scale"] < min_scale:
            continue
        walls: dict[str, float] = {}
        for name, rec in run["stages"].items():
            if "wall_s" in rec:
                walls[base_stage(name)] = walls.get(base_stage(name), 0.0) + stage_wall(run, name)
        for name, wall in walls.items():
            pts.setdefault(name, []).append((math.log(run["interactions"]), math.log(max(wall, 1e-3))))
    out = {}
    for name, xy in sorted(pts.items()):
        if len(xy) < 2:
            continue
        mx = sum(x for x, _ in xy) / len(xy)
        my = sum(y for _, y in xy) / len(xy)
        sxx = sum((x - mx) ** 2 for x, _ in xy)
        out[name] = round(sum((x - mx) * (y - my) for x, y in xy) / sxx, 3) if sxx else float("nan")
    return out


def write_record(path: Path, runs: list[dict]) -> None:
    runs = sorted(runs, key=lambda r: (r["label"], r["scale"]))
    record = {"runs": runs, "exponents": exponents(runs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "probe":
        parser = argparse.ArgumentParser(prog="scale.py probe")
        parser.add_argument("--stage", required=True)
        parser.add_argument("--log", type=Path, required=True)
        parser.add_argument("cmd", nargs=argparse.REMAINDER)
        args = parser.parse_args(argv[1:])
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        raise SystemExit(probe(args.stage, args.log, cmd))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", required=True)
    parser.add_argument("--label", default="scale", help="run family; exponents use 'scale' runs only")
    parser.add_argument("-S", dest="overrides", action="append", default=[], help="params key=value")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/m2_scale"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    parser.add_argument("--keep", action="store_true", help="keep each workspace (default: delete its data)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in its workspace (the code is copied again)",
    )
    parser.add_argument("--ref", default="", help="run this commit's tree instead of the working tree")
    parser.add_argument(
        "--params-only",
        action="store_true",
        help="with --resume: keep the workspace's code (the recorded run's), change only the -S params",
    )
    parser.add_argument(
        "--retime",
        nargs="+",
        default=[],
        metavar="STAGE",
        help="measure these stages of each recorded (scale, label) run again with the current code, "
        "for a change that leaves their outputs byte-identical; the rest of the run is kept",
    )
    parser.add_argument(
        "--repeat",
        nargs="+",
        default=[],
        metavar="STAGE",
        help="measure these stages of each recorded (scale, label) run once more in its kept workspace, "
        "same code and data; the exponents use the median of a stage's measurements",
    )
    args = parser.parse_args(argv)
    if args.params_only and not args.resume:
        parser.error("--params-only continues a run: add --resume")
    if args.retime and args.repeat:
        parser.error("--retime and --repeat: one at a time")
    if args.retime or args.repeat:
        runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
        for scale in args.scales:
            match = [i for i, r in enumerate(runs) if (r["scale"], r["label"]) == (scale, args.label)]
            if not match:
                parser.error(f"--retime/--repeat: no recorded run ({scale:g}, {args.label}) in {args.out}")
            runs[match[0]] = (retime(runs[match[0]], args.retime, args.workdir, args.ref) if args.retime
                              else repeat(runs[match[0]], args.repeat, args.workdir))
            write_record(args.out, runs)
            print(f"wrote {args.out}", flush=True)
        return
    for scale in args.scales:
        keep_code = ""
        if args.params_only:
            recorded = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
            before = [r for r in recorded if (r["scale"], r["label"]) == (scale, args.label)]
            if not before:
                parser.error(f"--params-only: no recorded run ({scale:g}, {args.label}) in {args.out}")
            keep_code = f"{before[0]['code']}; params-only resume: {' '.join(args.overrides)}"
        run = run_scale(scale, args.label, args.overrides, args.workdir, args.resume, args.ref, keep_code)
        runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
        runs = [r for r in runs if (r["scale"], r["label"]) != (scale, args.label)] + [run]
        write_record(args.out, runs)
        print(f"wrote {args.out}", flush=True)
        if not run["complete"]:
            raise SystemExit(1)  # the partial record is written: --resume continues it
        if not args.keep:
            shutil.rmtree(args.workdir / f"{args.label}_{scale:g}" / "data", ignore_errors=True)


if __name__ == "__main__":
    main()
