"""Stage ``baseline``: the per-locale popularity submission (tasks 1/2) and last-item title (task 3).

    python -m pipeline.baseline --prepared data/prepared --splitdir data/split --raw data/raw \
        --out submissions

Writes submissions/popularity/task{1,2}_phase{P}.parquet and
submissions/last_title/task3_phase{P}.parquet for every test file present.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl

from core import submission
from core.io import setup_logging, timed
from core.raw import exit_on_data_error
from pipeline.predictions import fill_with_popular, locale_popularity, submission_frames
from titles.last_title import last_titles

log = logging.getLogger(__name__)


def popularity_top(history: pl.DataFrame, items: pl.DataFrame, queries: pl.DataFrame,
                   events: pl.DataFrame) -> pl.DataFrame:
    """session, item, rank: the 100 most viewed items of the session's locale, own items excluded."""
    empty = pl.DataFrame(schema={"session": pl.Int32, "item": pl.Int32, "rank": pl.Int32})
    own = events.join(queries.select("session"), on="session").select("session", "item")
    return fill_with_popular(empty, queries, own, locale_popularity(history, items))


@exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--splitdir", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    items = pl.read_parquet(args.prepared / "items.parquet")
    sessions = pl.read_parquet(args.prepared / "sessions.parquet")
    events = pl.read_parquet(args.prepared / "events.parquet")
    history = pl.read_parquet(args.splitdir / "test" / "history.parquet")
    catalogue = submission.load_catalogue(args.raw)
    with timed("popularity baseline"):
        queries = sessions.filter(pl.col("dataset").str.contains(r"^task[12]_"))
        frames = submission_frames(popularity_top(history, items, queries, events), queries, items)
        for dataset, frame in sorted(frames.items()):
            task, phase = int(dataset[4]), int(dataset[-1])
            submission.write(frame, args.out / "popularity" / f"{dataset}.parquet", task,
                             submission.load_test_locales(args.raw, task, phase), catalogue)
            log.info("popularity %s: %d rows", dataset, frame.height)
    with timed("last-title baseline"):
        titles = last_titles(sessions, events, items)
        task3 = sessions.filter(pl.col("dataset").str.starts_with("task3_"))
        for (dataset,), group in task3.group_by("dataset"):
            phase = int(dataset[-1])
            frame = group.sort("row").join(titles, on="session", how="left", maintain_order="left")
            submission.write(frame.select("locale", "next_item_title"),
                             args.out / "last_title" / f"{dataset}.parquet", 3,
                             submission.load_test_locales(args.raw, 3, phase), None)
            log.info("last_title %s: %d rows", dataset, frame.height)


if __name__ == "__main__":
    main()
