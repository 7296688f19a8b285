"""A Dask cluster started as separate processes with the ``dask`` CLI, as on several machines.

    address, procs = start(workdir, n_workers=2, memory_limit="4GiB")   # dask.scheduler_address = address
    ...
    stop(procs)

What a user runs by hand (README "Scale-out"), one scheduler and one worker per machine::

    DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING=False dask scheduler --port 8786 --scheduler-file sched.json
    dask worker tcp://<scheduler>:8786 --nthreads 1 --memory-limit 4GiB     # on every worker machine

Here every process runs on this machine (``--host 127.0.0.1``): tests/test_dask.py and
benchmarks/distributed.py use it. Work stealing is off so a task runs where its data is (the ranker's
placement, pipeline/engine/ranker.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start(workdir: Path, n_workers: int, memory_limit: str, threads: int = 1,
          timeout_s: float = 120) -> tuple[str, list[subprocess.Popen]]:
    """``dask scheduler`` and ``n_workers`` x ``dask worker`` on loopback, logs in ``workdir``;
    (scheduler address, the processes started)."""
    from distributed import Client

    workdir.mkdir(parents=True, exist_ok=True)
    dask_cli = str(Path(sys.executable).parent / "dask")
    sched_file = workdir / "scheduler.json"
    sched_file.unlink(missing_ok=True)
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": "False",
           "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}

    def spawn(name: str, *argv: str) -> subprocess.Popen:
        with (workdir / f"{name}.log").open("w") as log:
            return subprocess.Popen([dask_cli, *argv], env=env, cwd=REPO, stdout=log,
                                    stderr=subprocess.STDOUT)

    procs = [spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(sched_file))]
    try:
        deadline = time.monotonic() + timeout_s
        while not sched_file.exists():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError(f"dask scheduler did not start: {(workdir / 'scheduler.log').read_text()}")
            time.sleep(0.2)
        time.sleep(0.3)  # the file is written whole before the scheduler listens; be safe
        address = json.loads(sched_file.read_text())["address"]
        for n in range(n_workers):
            procs.append(spawn(f"worker{n}", "worker", address, "--host", "127.0.0.1", "--nthreads",
                               str(threads), "--memory-limit", memory_limit, "--no-dashboard",
                               "--name", f"worker{n}"))
        with Client(address, timeout=timeout_s) as client:
            client.wait_for_workers(n_workers, timeout=timeout_s)
    except BaseException:
        stop(procs)
        raise
    return address, procs


def stop(procs: list[subprocess.Popen]) -> None:
    """Terminate the processes :func:`start` started (workers first), by their handles only."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
