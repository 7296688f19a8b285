"""Stage ``publish``: copy the chosen method's files to the six submission paths.

    python -m pipeline.publish --submissions submissions --raw data/raw [--dataset task1_phase1 ...]

params ``publish.task{1,2,3}`` name the directory under submissions/ whose
task{T}_phase{P}.parquet becomes submissions/task{T}_phase{P}.parquet. Each file is validated
again before it is written (atomically). ``--dataset`` (dvc.yaml: one stage per entry of
data.test_files) publishes those datasets, whose test file must exist; without it, every dataset
whose test file is in --raw.

A published file of a dataset that ``data.test_files`` no longer lists is removed (logged): no stage
owns it any more, so DVC would leave it behind and the score stage would score it as current.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core import raw, submission
from core.config import load_section
from core.dataconfig import DataConfig
from core.io import setup_logging

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishConfig:
    task1: str
    task2: str
    task3: str


def remove_unlisted(submissions: Path, listed: Iterable[str]) -> list[Path]:
    """Delete ``submissions/task{T}_phase{P}.parquet`` of every dataset not in ``listed``; returns what went.

    Only the published files at the top of ``submissions``: each method's own directory is a whole
    DVC output of the stage that writes it, rewritten by that stage.
    """
    removed = []
    for name in raw.TEST_DATASETS:
        path = submission.submission_path(submissions, int(name[4]), int(name[-1]))
        if name not in listed and path.exists():
            path.unlink()
            log.warning("removed %s: %s is not in data.test_files (a stale submission)", path, name)
            removed.append(path)
    return removed


@raw.exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submissions", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument(
        "--dataset",
        action="append",
        choices=[f"task{t}_phase{p}" for t in raw.TASKS for p in raw.PHASES],
        help="publish only this dataset (repeatable); its test file must exist",
    )
    args = parser.parse_args()
    setup_logging()
    cfg = load_section(PublishConfig, "publish")
    remove_unlisted(args.submissions, load_section(DataConfig, "data").test_files)
    catalogue = submission.load_catalogue(args.raw)
    for task in raw.TASKS:
        method = getattr(cfg, f"task{task}")
        for phase in raw.PHASES:
            if args.dataset is not None and f"task{task}_phase{phase}" not in args.dataset:
                continue
            if args.dataset is None and not (args.raw / raw.test_file(task, phase)).exists():
                continue
            source = submission.submission_path(args.submissions / method, task, phase)
            if not source.exists():
                raise FileNotFoundError(
                    f"{source}: publish.task{task}={method!r} has no file for phase {phase}"
                )
            frame = submission.read(source)
            submission.write(
                frame,
                submission.submission_path(args.submissions, task, phase),
                task,
                submission.load_test_locales(args.raw, task, phase),
                catalogue if task != 3 else None,
            )
            log.info("published %s -> task%d_phase%d (%d rows)", source, task, phase, frame.height)


if __name__ == "__main__":
    main()
