"""Stage ``predict`` on Dask: the workers rank, complete and write the submission rows; the driver streams
them into the submission files.

    written = predict(dask_cfg, parts, rank, Paths(...), raw_dir, out_dir)   # predict's files

One task per feature part (a chunk of query sessions, ``features.chunk_sessions``): it reads the part and
scores it with ``rank`` (shipped once), keeps the top ``K`` per session (``pipeline.ranking.ranked_top``),
fills each of its query sessions to ``K`` from locale popularity without the session's own items
(``pipeline.predictions.fill_with_popular``; the own items read from the history by the task's session
range, the popularity summed from per-range counts on the workers and sent to the tasks, never to the
driver), maps items to ids (``submission_frames``) and writes each dataset's rows of its range to the
scratch store. Task ``i`` covers the session ids after part ``i - 1``'s last up to part ``i``'s last (the
first from the queries' first id, the last to their last id), so a query session with no candidate is
still filled, and its range is a run of consecutive test-file rows of each dataset (sessions are numbered
in file order: pipeline/prepare.py).

The driver holds the last session id of each part, the catalogue's (id, locale) pairs (the
validator's; read from products_train.csv on a worker), one dataset's test locales, and one part's rows
at a time: ``core.submission.write_pieces`` validates each piece and writes row groups of
``ROW_GROUP_ROWS`` rows, the bytes ``submission.write`` writes from the whole frame on one machine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core import submission
from pipeline.engine import DaskConfig, dask_client, id_ranges, item_counts, n_workers, scratch, store
from pipeline.engine.ranker import _popularity

log = logging.getLogger(__name__)

SUBMISSION_DATASETS = r"^task[12]_"  # the datasets predict writes (task 3 writes titles)


@dataclass(frozen=True)
class Paths:
    """The inputs as every worker reads them (store.url): the test split's history and queries, the
    prepared items."""

    history: str
    queries: str
    items: str


def _ids(items: str) -> pl.DataFrame:
    return store.read(items, ["item", "id"])


def _rows(paths: Paths, part: str | None, lo: int, hi: int, rank: Callable[[pl.DataFrame], pl.DataFrame],
          popular: pl.DataFrame, ids: pl.DataFrame, out: str, n: int) -> dict[str, tuple[int, int, int]]:
    """The submission rows of the query sessions ``lo..hi`` into ``<out>/<dataset>/r<n>.parquet``;
    dataset -> (first test row, last test row, rows)."""
    from pipeline.predictions import fill_with_popular, submission_frames
    from pipeline.ranking import K, ranked_top

    queries = store.read_range(paths.queries, lo, hi).filter(
        pl.col("dataset").str.contains(SUBMISSION_DATASETS))
    if queries.is_empty():
        return {}
    own = store.read_range(paths.history, lo, hi, ["session", "item"]).join(
        queries.select("session"), on="session", how="semi")
    ranked = ranked_top([pl.read_parquet(part)] if part else [], rank, K)
    top = fill_with_popular(ranked, queries, own, popular, k=K)
    written = {}
    for dataset, frame in submission_frames(top, queries, ids).items():
        rows = queries.filter(pl.col("dataset") == dataset)["row"]
        store.write(frame, store.join(out, dataset, f"r{n:05d}.parquet"))
        written[dataset] = (int(rows.min()), int(rows.max()), frame.height)
    return written


def task_ranges(parts: list[Path], queries: str) -> list[tuple[str | None, int, int]]:
    """(part, lo, hi) per task: part ``i``'s sessions and the query sessions after part ``i - 1``'s; the
    driver keeps each part's last session id, never the ids."""
    [(first, last)] = id_ranges(queries, 1) or [(None, None)]
    if first is None:
        return []
    if not parts:
        return [(None, first, last)]
    ends = [pl.scan_parquet(p).select(pl.col("session").max()).collect().item() for p in parts]
    starts = [first, *(end + 1 for end in ends[:-1])]
    ends[-1] = max(ends[-1], last)
    return [(str(Path(p).resolve()), lo, hi) for p, lo, hi in zip(parts, starts, ends, strict=True)]


def _pieces(out: str, dataset: str, tasks: list[tuple[int, tuple[int, int, int]]]) -> Iterator[pl.DataFrame]:
    """One dataset's pieces in test-file order, each read when the writer asks for it."""
    expected = 0
    for n, (first, last, height) in tasks:
        if first != expected or last - first + 1 != height:
            raise ValueError(f"{dataset}: task {n} holds test rows {first}..{last} ({height} rows), expected "
                             f"consecutive rows from {expected}: are the sessions numbered in file order?")
        expected = last + 1
        yield store.read(store.join(out, dataset, f"r{n:05d}.parquet"))


def predict(dcfg: DaskConfig, parts: list[Path], rank: Callable[[pl.DataFrame], pl.DataFrame], paths: Paths,
            raw_dir: Path, out_dir: Path) -> list[Path]:
    """``pipeline.predict``'s ranker submissions from the feature ``parts`` on the cluster of ``dcfg``:
    one file per task 1/2 dataset of the queries, written under ``out_dir``; the paths written."""
    tasks = task_ranges(parts, paths.queries)
    written: list[Path] = []
    with dask_client(dcfg) as client, scratch(dcfg, "predict") as root:
        catalogue_f = client.submit(submission.load_catalogue, store.url(raw_dir), pure=False)
        ranges = id_ranges(paths.history, n_workers(client) * dcfg.partitions_per_worker)
        folder = store.join(root, "counts")
        counts = item_counts(client, paths.history, ranges, folder)
        popular = client.submit(_popularity, paths.items, folder, *counts, pure=False)
        ids = client.submit(_ids, paths.items, pure=False)
        [rank_f] = client.scatter([rank], broadcast=True)
        futures = [client.submit(_rows, paths, part, lo, hi, rank_f, popular, ids, root, n, pure=False)
                   for n, (part, lo, hi) in enumerate(tasks)]
        done: dict[str, list[tuple[int, tuple[int, int, int]]]] = {}
        for n, rows in enumerate(client.gather(futures)):
            for dataset, info in rows.items():
                done.setdefault(dataset, []).append((n, info))
        catalogue = catalogue_f.result()
        del counts, popular, ids, futures, catalogue_f  # the workers' copies go
        for dataset in sorted(done):
            task, phase = int(dataset[4]), int(dataset[-1])
            path = submission.submission_path(out_dir, task, phase)
            n_rows = submission.write_pieces(_pieces(root, dataset, done[dataset]), path, task,
                                             submission.load_test_locales(raw_dir, task, phase), catalogue)
            log.info("%s: %d rows from %d parts", path, n_rows, len(done[dataset]))
            written.append(path)
    # benchmarks/distributed.py reads this line
    log.info("dask figures %s", json.dumps({"chunks": len(tasks), "ranges": len(ranges)}))
    return written
