"""Stage ``predict``: top 100 per test row from the ranker (or from one candidate source's own score).

    python -m pipeline.predict --features data/features/test --model models/ranker --splitdir data/split \
        --prepared data/prepared --raw data/raw --out submissions/ranker
    python -m pipeline.predict --source covisit --features data/features/test --splitdir data/split \
        --prepared data/prepared --raw data/raw --out submissions/source_covisit

Reads the feature parts one at a time (each a chunk of sessions), keeps the top 100 per session,
fills sessions with fewer than 100 candidates from their locale's popularity (own items excluded),
and writes ``<out>/task{1,2}_phase{P}.parquet`` in test-file order through the submission validator.
With ``engine: dask`` (``--model``) the workers do this part by part and the files are assembled from
their pieces (pipeline/engine/predict.py): the same bytes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl
from tqdm import tqdm

from candidates.columns import score_col, source_names
from core import submission
from core.io import setup_logging, timed
from core.raw import exit_on_data_error
from features.parts import part_paths
from pipeline import engine
from pipeline.predictions import submission_frames
from pipeline.ranking import complete, completion, model_ranker, ranked_top, source_ranker

log = logging.getLogger(__name__)

def write_submissions(top: pl.DataFrame, queries: pl.DataFrame, items: pl.DataFrame, raw_dir: Path,
                      out: Path, catalogue: pl.DataFrame) -> list[Path]:
    """Validate and write one file per task 1/2 dataset of ``queries`` (``catalogue``:
    submission.load_catalogue of ``raw_dir``, read once by the caller)."""
    written = []
    for dataset, frame in sorted(submission_frames(top, queries, items).items()):
        task, phase = int(dataset[4]), int(dataset[-1])
        path = submission.submission_path(out, task, phase)
        submission.write(frame, path, task, submission.load_test_locales(raw_dir, task, phase), catalogue)
        log.info("%s: %d rows", path, frame.height)
        written.append(path)
    return written


def source_tops(parts: list[Path], names: list[str]) -> dict[str, pl.DataFrame]:
    """name -> session, item, rank: each source's top ``K`` by its own score, in one pass over the parts."""
    ranks = {name: source_ranker(name) for name in names}
    columns = ["session", "item", *map(score_col, names)]
    tops: dict[str, list[pl.DataFrame]] = {name: [] for name in names}
    for path in tqdm(parts, desc=f"predict {len(names)} sources", unit="part"):
        frame = pl.read_parquet(path, columns=columns)
        for name, rank in ranks.items():
            tops[name].append(ranked_top([frame], rank))
    return {name: pl.concat(frames) if frames else ranked_top([], ranks[name])
            for name, frames in tops.items()}


@exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--model", type=Path, help="ranker model directory")
    how.add_argument("--source", help="rank by this candidate source's own score")
    how.add_argument("--sources", action="store_true",
                     help="rank by each source's own score: <out>/source_<name>/ per source of the parts")
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--splitdir", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    parts = part_paths(args.features)
    if args.model and engine.engine() == "dask":  # the workers read the test sessions; nothing here grows
        from pipeline.engine import predict as dask_predict
        from pipeline.engine.store import url

        with timed(f"predict ranker {args.model} on dask"):
            paths = dask_predict.Paths(history=url(args.splitdir / "test" / "history.parquet"),
                                       queries=url(args.splitdir / "test" / "queries.parquet"),
                                       items=url(args.prepared / "items.parquet"))
            dask_predict.predict(engine.dask_config(), parts, model_ranker(args.model), paths, args.raw,
                                 args.out)
        return
    catalogue = submission.load_catalogue(args.raw)
    items = pl.read_parquet(args.prepared / "items.parquet")
    history = pl.read_parquet(args.splitdir / "test" / "history.parquet")
    queries = pl.read_parquet(args.splitdir / "test" / "queries.parquet").filter(
        pl.col("dataset").str.contains(r"^task[12]_"))
    if args.sources:
        names = source_names(pl.read_parquet_schema(parts[0]).names()) if parts else []
        with timed(f"predict {len(names)} sources"):
            fill = completion(queries, history, items)
            for name, top in source_tops(parts, names).items():
                write_submissions(fill(top), queries, items, args.raw, args.out / f"source_{name}", catalogue)
        return
    rank = model_ranker(args.model) if args.model else source_ranker(args.source)
    what = f"ranker {args.model}" if args.model else f"source {args.source}"
    with timed(f"predict {what}"):
        if args.source and parts and score_col(args.source) not in pl.read_parquet_schema(parts[0]):
            raise SystemExit(f"{args.features}: no column {score_col(args.source)}; is {args.source!r} "
                             "a source of the union these features were built from?")
        columns = None if args.model else ["session", "item", score_col(args.source)]
        frames = (pl.read_parquet(p, columns=columns)
                  for p in tqdm(parts, desc=f"predict {what}", unit="part"))
        top = complete(ranked_top(frames, rank), queries, history, items)
        write_submissions(top, queries, items, args.raw, args.out, catalogue)


if __name__ == "__main__":
    main()
