"""Stage ``generate``: the raw competition files in data/raw, synthetic or real.

    python -m pipeline.generate --out data/raw

With ``data.source: synthetic`` it generates the synthetic Amazon-M2 at ``data.scale`` (knobs in the
``synthetic`` section); with ``data.source: files`` it hard-links (or copies) the real competition
files from ``data.raw_dir`` (and its gt/ when present). Either way the output directory is built
beside ``--out`` and renamed into place, so an interrupted run never leaves a half-written data/raw.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from core import config
from core.dataconfig import DataConfig
from core.io import setup_logging, timed, write_json
from core.raw import PHASES, TASKS, RawDataError, exit_on_data_error, gt_file, test_file
from pipeline.synthetic import SyntheticConfig, generate

log = logging.getLogger(__name__)

REQUIRED = ("products_train.csv", "sessions_train.csv")
OPTIONAL = tuple(test_file(t, p) for t in TASKS for p in PHASES)
GT = tuple(gt_file(t, p) for t in TASKS for p in PHASES) + ("ceiling.json",)


class MissingFilesError(RawDataError):
    """data.source=files but a required competition file (or a listed test file) is not in data.raw_dir."""


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # other file system, or links not allowed
        shutil.copy2(src, dst)


def check_files(raw_dir: Path, test_files: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The test files to take from ``raw_dir``; a MissingFilesError naming the first required or listed
    file that is not there (and the file it was probably saved as, when one is close to the name)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise MissingFilesError(raw_dir, None, None, "folder not found: data.raw_dir must hold the KDD Cup "
                                f"2023 files {list(REQUIRED)} and sessions_test_task*_phase*.csv")
    missing = [name for name in REQUIRED if not (raw_dir / name).is_file()]
    if missing:
        raise MissingFilesError(raw_dir / missing[0], None, None,
                                f"file not found: data.source=files needs {list(REQUIRED)} in {raw_dir} "
                                f"(lacks {missing}){_near_name(raw_dir, missing[0])}; put the KDD Cup 2023 "
                                "files there or set data.raw_dir")
    wanted = OPTIONAL if test_files is None else tuple(f"sessions_test_{name}.csv" for name in test_files)
    absent = [name for name in wanted if test_files is not None and not (raw_dir / name).is_file()]
    if absent:
        raise MissingFilesError(raw_dir / absent[0], None, None,
                                f"file not found{_near_name(raw_dir, absent[0])} (data.test_files lists it; "
                                "drop it from data.test_files if this test file does not exist)")
    return wanted


def _near_name(raw_dir: Path, name: str) -> str:
    """``; found X: rename it to NAME`` for the unexpected file of raw_dir closest to ``name``, else ''."""
    known = set(REQUIRED + OPTIONAL)
    others = [p.name for p in raw_dir.iterdir() if p.is_file() and p.name not in known]
    close = difflib.get_close_matches(name, others, n=1, cutoff=0.75)
    return f"; found {close[0]}: rename it to {name}" if close else ""


def link_files(raw_dir: Path, out: Path, test_files: tuple[str, ...] | None = None) -> dict:
    """Hard-link (or copy) the competition files of ``raw_dir`` into ``out``; returns what was taken.

    ``test_files`` (data.test_files): the test datasets that must be there (an absent one is an
    error naming it; unlisted ones are not taken); None takes every test file present."""
    raw_dir = Path(raw_dir)
    wanted = check_files(raw_dir, test_files)
    taken = {"files": [], "gt": [], "missing_optional": []}
    out.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED + OPTIONAL:
        if name in OPTIONAL and name not in wanted:
            if (raw_dir / name).is_file():
                log.warning("%s: not in data.test_files, not taken", raw_dir / name)
            continue
        if (raw_dir / name).is_file():
            _link_or_copy(raw_dir / name, out / name)
            taken["files"].append(name)
        else:
            taken["missing_optional"].append(name)
    for name in GT:
        if (raw_dir / "gt" / name).is_file():
            (out / "gt").mkdir(exist_ok=True)
            _link_or_copy(raw_dir / "gt" / name, out / "gt" / name)
            taken["gt"].append(name)
    if taken["missing_optional"]:
        log.warning("data.source=files: no %s in %s", taken["missing_optional"], raw_dir)
    return taken


def build(out: Path, data: DataConfig, synthetic: SyntheticConfig, seed: int) -> dict:
    """Fill ``out`` atomically: build in a temporary directory beside it, then swap it in."""
    out = Path(out)
    if data.source == "files" and Path(data.raw_dir).resolve() == out.resolve():
        raise ValueError(f"data.source=files: data.raw_dir ({data.raw_dir}) must differ from --out ({out})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if data.source == "synthetic":
            result = generate(tmp, data.scale, seed, synthetic)
        else:
            result = link_files(Path(data.raw_dir), tmp, data.test_files)
        # Timings stay in the log: the directory must be identical for the same params and seed.
        write_json({"source": data.source,
                    **{k: v for k, v in result.items() if k not in ("seconds", "peak_rss_mib")}},
                   tmp / "generate.json")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return result


@exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory to fill (data/raw)")
    args = parser.parse_args()
    setup_logging()
    data = config.load_section(DataConfig, "data")
    synthetic = config.load_section(SyntheticConfig, "synthetic")
    with timed(f"generate ({data.source})"):
        result = build(args.out, data, synthetic, config.seed())
    log.info("%s", {k: v for k, v in result.items() if k != "ceiling"})


if __name__ == "__main__":
    main()
