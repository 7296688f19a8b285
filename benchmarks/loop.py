"""Candidates -> features -> ranker in one process on a prepared and split workspace: the fast loop.

    python benchmarks/loop.py --workspace /tmp/real_run --gt ../shared/amazon_m2_real/gt \
        [--params params.yaml] [--set candidates.max_per_session=200 ...] [--datasets task2_phase1] \
        [--out result.json]

``--workspace`` holds ``data/prepared`` and ``data/split`` as stages prepare and split wrote them
(``dvc repro split`` there). The same code as stages candidates, features and train_ranker runs in
memory, with two shortcuts that make it minutes instead of an hour on real data: sources whose
checkpoints do not exist (the deep encoders before ``train_deep`` ran) and the ``deep`` feature
family are left out, and the test split is cut to the ``--datasets`` scored. Printed and written:
the ranker's and every source's MRR@100 on the valid eval fold (per task and locale, what
train_ranker reports) and on each test dataset whose ground truth is in ``--gt`` (what ``m2 score``
reports), and each source's and the union's recall on the valid queries.

Only the scoring step reads ``--gt``; the ranker never sees it. ``--set`` overrides params keys
(dotted, YAML values), as ``dvc exp run -S`` does.
"""

from __future__ import annotations

import argparse
import copy
import glob
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from candidates.base import query_sessions  # noqa: E402
from candidates.covisit import with_query_flag  # noqa: E402
from candidates.union import CandidatesConfig, build_sources, fit_sources, generate_union, with_defaults  # noqa: E402  # noqa: E402
from core import raw, sampling  # noqa: E402
from core.config import from_dict, read_params  # noqa: E402
from features.assemble import assemble_chunks, fit_families  # noqa: E402
from features.base import FeaturesConfig, Inputs  # noqa: E402
from features.registry import FAMILIES  # noqa: E402
from pipeline import score  # noqa: E402
from pipeline.predictions import submission_frames  # noqa: E402
from pipeline.ranking import complete, mrr_report, source_ranker  # noqa: E402
from pipeline.train_ranker import fit as fit_ranker  # noqa: E402
from rankers import lgbm  # noqa: E402

log = logging.getLogger("loop")

DEEP_TYPES = ("gru4rec", "sasrec")


def set_key(params: dict, dotted: str, value: Any) -> None:
    """params[a][b][c] = value for ``dotted`` 'a.b.c' (missing levels created)."""
    node = params
    *path, last = dotted.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def apply_sets(params: dict, sets: list[str]) -> dict:
    out = copy.deepcopy(params)
    for item in sets:
        key, _, value = item.partition("=")
        set_key(out, key, yaml.safe_load(value))
    return out


def cache_tag(workspace: Path, params: dict, specs: dict[str, dict], extra: str = "") -> str:
    """The cache key of a workspace's unions and features: the workspace itself (two worlds may share
    params), the seed, the candidates and source_defaults sections, the runnable sources, the deep
    checkpoints they and the deep features read (path, size and mtime: a retrained encoder is another
    entry) and ``extra``."""
    patterns = [spec.get("checkpoint", "") for spec in specs.values() if spec.get("type") in DEEP_TYPES]
    patterns += list(params.get("features", {}).get("deep_models", {}).values())
    checkpoints = []
    for pattern in patterns:
        for path in glob.glob(str(Path(workspace) / pattern)):
            stat = os.stat(path)
            checkpoints.append((path, stat.st_size, stat.st_mtime_ns))
    checkpoints.sort()
    key = [str(Path(workspace).resolve()), int(params["seed"]), params["candidates"],
           params["source_defaults"], sorted(specs), checkpoints, extra]
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def runnable_sources(specs: dict[str, dict], workspace: Path) -> dict[str, dict]:
    """The configured sources minus deep ones whose checkpoint glob matches nothing in ``workspace``."""
    out = {}
    for name, spec in specs.items():
        if spec.get("type") in DEEP_TYPES and not glob.glob(str(workspace / spec.get("checkpoint", ""))):
            log.info("source %s left out: no checkpoint %s", name, spec.get("checkpoint"))
            continue
        out[name] = spec
    return out


class Split:
    """One split of the workspace: history, queries (cut to ``datasets`` for test), items, sessions."""

    def __init__(self, workspace: Path, name: str, datasets: tuple[str, ...] | None):
        prepared, split = workspace / "data" / "prepared", workspace / "data" / "split" / name
        self.name = name
        self.history = pl.read_parquet(split / "history.parquet")
        self.queries = pl.read_parquet(split / "queries.parquet")
        if datasets is not None:
            self.queries = self.queries.filter(pl.col("dataset").is_in(list(datasets)))
        self.targets = (
            pl.read_parquet(split / "targets.parquet") if (split / "targets.parquet").exists() else None
        )
        self.items = pl.read_parquet(prepared / "items.parquet")
        self.events = self.history.join(self.queries.select("session"), on="session", how="semi")
        self.sessions = pl.read_parquet(
            prepared / "sessions.parquet", columns=["session", "dataset", "locale", "length"]
        )
        self.prev_items = pl.read_parquet(prepared / "events.parquet", columns=["session"])


def thin_history(split: Split, fraction: float, seed: int) -> Split:
    """``split`` with a hash-drawn ``fraction`` of its other train sessions in the history: every query
    session's own events and every test prefix stay, the same sessions are dropped from both splits, and
    queries and targets are unchanged. The learning curve of the sources and ranker in history size."""
    train = split.sessions.filter(pl.col("dataset") == "train").select("session")
    drawn = train.filter(pl.Series(sampling.seeded_uniform(train["session"], None, seed) >= fraction)).join(
        split.queries.select("session"), on="session", how="anti"
    )
    split.history = split.history.join(drawn, on="session", how="anti")
    log.info("history thinned to %.2f: %d train sessions dropped, %d events kept", fraction,
             drawn.height, split.history.height)
    return split


def candidates(split: Split, cfg: CandidatesConfig, seed: int, cache: Path | None, tag: str) -> pl.DataFrame:
    """The union of stage candidates for ``split`` (cached by the params that make it)."""
    path = None
    if cache is not None:
        path = cache / f"union_{split.name}_{tag}.parquet"
        if path.exists():
            log.info("%s union from cache %s", split.name, path)
            return pl.read_parquet(path)
    specs = build_sources(cfg.sources, seed)  # completed with source_defaults by the callers
    # Query events come from the prepared events, as stage candidates reads them (the history holds the same).
    sessions = query_sessions(split.queries, split.events)
    fit_sources(specs, with_query_flag(split.history, split.prev_items), split.items)
    union = pl.concat(list(generate_union(specs, sessions, cfg.chunk_size, cfg.max_per_session)))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        union.write_parquet(path)
    return union


def features(
    split: Split,
    union: pl.DataFrame,
    cfg: FeaturesConfig,
    families: tuple[str, ...],
    cache: Path | None = None,
    tag: str = "",
) -> pl.DataFrame:
    """Every family's columns on ``union`` (cached by the candidates tag, features params and families)."""
    path = None
    if cache is not None:
        key = hashlib.sha1(json.dumps([tag, repr(cfg), families]).encode()).hexdigest()[:12]
        path = cache / f"features_{split.name}_{key}.parquet"
        if path.exists():
            log.info("%s features from cache %s", split.name, path)
            return pl.read_parquet(path)
    frame = _features(split, union, cfg, families)
    if path is not None:
        frame.write_parquet(path)
    return frame


def _features(
    split: Split, union: pl.DataFrame, cfg: FeaturesConfig, families: tuple[str, ...]
) -> pl.DataFrame:
    state = fit_families(
        Inputs(history=split.history, items=split.items, sessions=split.sessions), cfg, families
    )
    return pl.concat(list(assemble_chunks(union.lazy(), split.queries, split.events, state, cfg)))


def recall(union: pl.DataFrame, split: Split) -> dict[str, dict[str, float]]:
    """Recall of the union and of each source (within its k) on the split's queries: all, task2 locales."""
    ranks = [c for c in union.columns if c.startswith("cand_") and c.endswith("_rank")]
    targets = split.targets.join(split.queries.select("session", "locale"), on="session")
    hit = targets.join(
        union.select("session", "item", *ranks).with_columns(_in=pl.lit(True)),
        on=["session", "item"],
        how="left",
    )
    out = {}
    for name, part in (
        ("all", hit),
        ("task2", hit.filter(pl.col("locale").is_in(list(raw.TASK_LOCALES[2])))),
    ):
        row = {"union": float(part["_in"].fill_null(False).mean())}
        row.update(
            {
                c.removeprefix("cand_").removesuffix("_rank"): float(part[c].is_not_null().mean())
                for c in ranks
            }
        )
        out[name] = row
    return out


def train(frame: pl.DataFrame, split: Split, cfg: lgbm.RankerConfig, seed: int) -> tuple[dict, pl.DataFrame]:
    """(lgbm.load-shaped models, eval-fold queries): what stage train_ranker fits."""
    folds = lgbm.assign_folds(split.queries["session"], cfg.eval_fraction, seed)
    labelled = lgbm.label(frame, split.targets).join(folds, on="session", how="left")
    train_ids = sampling.sample_sessions(
        folds.filter(~pl.col("is_eval")).join(split.targets, on="session", how="semi")["session"],
        cfg.max_train_sessions,
        seed,
    )
    train_rows = lgbm.training_rows(
        labelled.filter(pl.col("session").is_in(train_ids.implode())), cfg.neg_sample_rate, seed
    )
    stop_rows = lgbm.training_rows(labelled.filter(pl.col("is_eval")), 1.0, seed)
    boosters = fit_ranker(train_rows, stop_rows, cfg, seed)
    groups = lgbm.model_groups(cfg)
    models = {name: (b, groups[name]) for name, b in boosters.items()}
    eval_queries = split.queries.join(folds.filter(pl.col("is_eval")), on="session", how="semi")
    return models, eval_queries


def rankings(frame: pl.DataFrame, models: dict, names: list[str]) -> dict[str, pl.DataFrame]:
    """method -> session, item, rank (top 100) for the ranker and every source by its own score."""
    out = {
        "ranker": lgbm.score_models(models, frame)
        .filter(pl.col("rank") <= 100)
        .select("session", "item", "rank")
    }
    for name in names:
        out[f"source_{name}"] = (
            source_ranker(name)(frame.select("session", "item", f"cand_{name}_score"))
            .filter(pl.col("rank") <= 100)
            .select("session", "item", "rank")
        )
    return out


def sources_only(
    workspace: Path, params: dict, gt_dir: Path | None, datasets: tuple[str, ...], cache: Path | None = None
) -> dict:
    """Each source alone (ranked by its own score, popularity-filled): valid queries and test datasets."""
    t0 = time.perf_counter()
    seed = int(params["seed"])
    specs = runnable_sources(params["candidates"]["sources"], workspace)
    ccfg = from_dict(CandidatesConfig, {**params["candidates"], "sources": with_defaults(
        specs, params["source_defaults"])}, "candidates")
    tag = cache_tag(workspace, params, specs)
    valid = Split(workspace, "valid", None)
    vunion = candidates(valid, ccfg, seed, cache, tag)
    result: dict[str, Any] = {
        "sources": list(specs),
        "recall": recall(vunion, valid),
        "valid": {},
        "test": {},
    }
    for name in specs:
        top = source_ranker(name)(vunion.select("session", "item", f"cand_{name}_score")).filter(
            pl.col("rank") <= 100
        )
        result["valid"][f"source_{name}"] = mrr_report(
            complete(top, valid.queries, valid.history, valid.items), valid.queries, valid.targets
        )
    test = Split(workspace, "test", datasets)
    tunion = candidates(test, ccfg, seed, cache, tag)
    for name in specs:
        top = source_ranker(name)(tunion.select("session", "item", f"cand_{name}_score")).filter(
            pl.col("rank") <= 100
        )
        subs = submission_frames(
            complete(top, test.queries, test.history, test.items), test.queries, test.items
        )
        for dataset, frame in subs.items():
            task, phase = int(dataset[4]), int(dataset[-1])
            gt_path = gt_dir / raw.gt_file(task, phase) if gt_dir else None
            if gt_path is not None and gt_path.exists():
                result["test"].setdefault(dataset, {})[f"source_{name}"] = score.score_frame(
                    frame, raw.read_ground_truth(gt_path, task), task, f"{name}/{dataset}"
                )
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def run(
    workspace: Path,
    params: dict,
    gt_dir: Path | None,
    datasets: tuple[str, ...] = ("task2_phase1",),
    cache: Path | None = None,
    families: tuple[str, ...] | None = None,
    split_hook: Callable[[Split], Split] | None = None,
    tag_extra: str = "",
) -> dict:
    """Every figure of one configuration: {"valid": {method: mrr_report}, "test": {dataset: {method: score}},
    "recall": ..., "seconds": ...}."""
    t0 = time.perf_counter()
    seed = int(params["seed"])
    specs = runnable_sources(params["candidates"]["sources"], workspace)
    ccfg = from_dict(CandidatesConfig, {**params["candidates"], "sources": with_defaults(
        specs, params["source_defaults"])}, "candidates")
    fcfg = from_dict(FeaturesConfig, params["features"], "features")
    rcfg = from_dict(lgbm.RankerConfig, params["ranker"], "ranker")
    families = families or tuple(f for f in FAMILIES if f != "deep")
    tag = cache_tag(workspace, params, specs, tag_extra)
    result: dict[str, Any] = {"sources": list(specs)}
    hook = split_hook or (lambda s: s)

    valid = hook(Split(workspace, "valid", None))
    vunion = candidates(valid, ccfg, seed, cache, tag)
    result["recall"] = recall(vunion, valid)
    result["candidates_per_session"] = vunion.height / max(vunion["session"].n_unique(), 1)
    vframe = features(valid, vunion, fcfg, families, cache, tag)
    del vunion
    models, eval_queries = train(vframe, valid, rcfg, seed)
    result["best_iteration"] = {n: b.best_iteration for n, (b, _) in models.items()}
    eval_frame = vframe.join(eval_queries.select("session"), on="session", how="semi")
    del vframe
    result["valid"] = {
        m: mrr_report(complete(top, eval_queries, valid.history, valid.items), eval_queries, valid.targets)
        for m, top in rankings(eval_frame, models, list(specs)).items()
    }
    del eval_frame

    test = hook(Split(workspace, "test", datasets))
    tframe = features(test, candidates(test, ccfg, seed, cache, tag), fcfg, families, cache, tag)
    result["test"] = {}
    for method, top in rankings(tframe, models, list(specs)).items():
        subs = submission_frames(
            complete(top, test.queries, test.history, test.items), test.queries, test.items
        )
        for dataset, frame in subs.items():
            task, phase = int(dataset[4]), int(dataset[-1])
            gt_path = gt_dir / raw.gt_file(task, phase) if gt_dir else None
            if gt_path is None or not gt_path.exists():
                continue
            result["test"].setdefault(dataset, {})[method] = score.score_frame(
                frame, raw.read_ground_truth(gt_path, task), task, f"{method}/{dataset}"
            )
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def summary(result: dict) -> dict[str, float]:
    """The headline figures: valid (task-2 locales and all) and test MRR@100 of the ranker and the best
    sources."""
    out = {}
    if "ranker" in result["valid"]:
        out = {
            "valid_task2": result["valid"]["ranker"]["task2"]["mrr@100"],
            "valid_all": result["valid"]["ranker"]["all"]["mrr@100"],
        }
    for dataset, methods in result["test"].items():
        if "ranker" in methods:
            out[dataset] = methods["ranker"]["all"]["mrr@100"]
        for m, v in methods.items():
            if m.startswith("source_covisit") or "ranker" not in methods:
                out[f"{dataset}:{m}"] = v["all"]["mrr@100"]
                if m in result["valid"]:
                    out[f"valid_task2:{m}"] = result["valid"][m]["task2"]["mrr@100"]
    out["recall_task2"] = result["recall"]["task2"]["union"]
    return {k: round(v, 4) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--gt", type=Path, default=None)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--datasets", nargs="+", default=["task2_phase1"])
    parser.add_argument(
        "--cache", type=Path, default=None, help="directory caching the unions by their params"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--sources-only", action="store_true", help="each source alone: no features, no ranker"
    )
    parser.add_argument(
        "--history-fraction", type=float, default=1.0,
        help="keep this hash-drawn share of the history's other train sessions (queries unchanged)",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    params = apply_sets(read_params(args.params), args.sets)
    if args.history_fraction < 1.0:
        if args.sources_only:
            parser.error("--history-fraction runs the ranker: drop --sources-only")
        fraction, seed = args.history_fraction, int(params["seed"])
        result = run(args.workspace, params, args.gt, tuple(args.datasets), args.cache,
                     split_hook=lambda s: thin_history(s, fraction, seed), tag_extra=f"history{fraction:g}")
    else:
        how = sources_only if args.sources_only else run
        result = how(args.workspace, params, args.gt, tuple(args.datasets), args.cache)
    result["history_fraction"] = args.history_fraction
    result["sets"] = args.sets
    print(json.dumps(summary(result)), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
