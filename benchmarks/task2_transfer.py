"""Task 2 transfer, measured: candidates -> features -> ranker in variants, on both worlds.

    python benchmarks/task2_transfer.py --synthetic WS_SYN --real WS_REAL \
        --real-gt ../shared/amazon_m2_real/gt \
        [--variants local_only pooled published] [--out benchmarks/results/task2_transfer.json]

WS_SYN and WS_REAL are workspaces where ``dvc repro split`` ran (the default synthetic world, and
``data.source=files`` on the real files); the synthetic ground truth is WS_SYN/data/raw/gt. Each variant
runs benchmarks/loop.py's in-memory candidates -> features -> ranker and is scored on task2_phase1:

- ``local_only``: ES/FR/IT only. History, valid queries and ranker restricted to ES/FR/IT sessions; the
  item-keyed sources of params.yaml (no ``key: product`` source, no deep encoders); no cross-locale
  features (family ``cross_locale`` off).
- ``pooled``: the same sources fitted on every locale's history, plus the co-visitation keyed on the
  product shared across locales (``key: product``), and the cross-locale features.
- ``pretrain_finetune``: ``published`` + the deep encoders of ``deep.models`` pretrained on every locale
  and fine-tuned on ES/FR/IT (``finetune_epochs``, ``--finetune-epochs``), as candidate sources and as the
  ``deep`` feature family. The encoders are trained here, in the workspace's
  ``models/deep_finetune/valid/`` on the valid split's history (as stage ``train_deep``); where the
  workspace holds ``train_deep``'s own checkpoints (``models/deep/valid/``), fine-tuning resumes them
  instead of pretraining again.
- ``published``: what params.yaml ships, every source whose model exists in the workspace (the deep
  encoders need ``train_deep`` checkpoints in ``models/deep/valid/``; without them the deep sources and
  the deep feature family are left out, and the JSON says which).

Writes {"synthetic": {VARIANT: {"ES": mrr, "FR": mrr, "IT": mrr, "all": mrr}}, "real": {...},
"details": {...}} (MRR@100 on task2_phase1, as ``m2 score`` computes it).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
import sys
from pathlib import Path

import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import loop  # noqa: E402
from core.config import read_params  # noqa: E402
from core.raw import TASK_LOCALES  # noqa: E402

log = logging.getLogger("task2_transfer")

VARIANTS = ("local_only", "pooled", "pretrain_finetune", "published")
FINETUNED = Path("models/deep_finetune/valid")  # in the workspace: the fine-tuned encoders
PUBLISHED = Path("models/deep/valid")  # stage train_deep's checkpoints, resumed when present
# Sources of the pooled variants: the history-only families (the published set adds every other one).
POOLED_TYPES = ("covisit", "attribute", "popularity")


def variant_params(
    params: dict, variant: str, skip_types: tuple[str, ...] = ()
) -> tuple[dict, tuple[str, ...] | None]:
    """(params, feature families) of ``variant``; families None = every family but deep."""
    p = copy.deepcopy(params)
    sources = {n: s for n, s in p["candidates"]["sources"].items() if s.get("type") not in skip_types}
    p["candidates"]["sources"] = sources
    if variant in ("published", "pretrain_finetune"):
        return p, None
    keep = {n: s for n, s in sources.items() if s.get("type") in POOLED_TYPES}
    if variant == "local_only":
        keep = {n: s for n, s in keep.items() if s.get("key", "item") != "product"}
        p["candidates"]["sources"] = keep
        return p, tuple(f for f in loop.FAMILIES if f not in ("deep", "cross_locale"))
    if variant == "pooled":
        p["candidates"]["sources"] = keep
        return p, None
    raise ValueError(f"unknown variant {variant!r}")


def finetuned_encoders(workspace: Path, params: dict, epochs: int) -> dict[str, Path]:
    """model name -> checkpoint of each ``deep.train`` encoder pretrained on every locale and fine-tuned
    on the Task 2 locales for ``epochs`` more epochs, trained (or resumed) in ``workspace``."""
    from pipeline.train_deep import train_one

    tuned = copy.deepcopy(params)
    for knobs in tuned["deep"]["models"].values():
        knobs.update(finetune_locales=list(TASK_LOCALES[2]), finetune_epochs=epochs)
    params_path = workspace / "params_finetune.yaml"
    params_path.write_text(yaml.safe_dump(tuned, sort_keys=False))
    out = {}
    for name in tuned["deep"]["train"]:
        path = workspace / FINETUNED / f"{name}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        pretrained = workspace / PUBLISHED / f"{name}.pt"
        if not path.exists() and pretrained.exists():
            shutil.copy(pretrained, path)  # same knobs, seed and history: train resumes it
        metrics = train_one(
            name,
            workspace / "data/split/valid/history.parquet",
            workspace / "data/prepared/items.parquet",
            path,
            None,
            params_path,
            progress=False,
        )
        log.info("%s: %d epochs (%s), %.0f s", name, metrics["epochs"], metrics["stopped_by"],
                 metrics["train_seconds"])
        out[name] = path
    return out


def with_encoders(params: dict, encoders: dict[str, Path]) -> dict:
    """``params`` whose deep sources and deep features read ``encoders`` (by model name = source type)."""
    p = copy.deepcopy(params)
    for spec in p["candidates"]["sources"].values():
        if spec.get("type") in loop.DEEP_TYPES and spec["type"] in encoders:
            spec["checkpoint"] = str(encoders[spec["type"]])
    # deep features only from encoders that exist (without any, the family is left out)
    p["features"]["deep_models"] = {
        kind: str(encoders[kind]) for kind in p["features"]["deep_models"] if kind in encoders
    }
    return p


def restrict(split: loop.Split, locales: tuple[str, ...]) -> loop.Split:
    """``split`` with its history, queries and targets cut to sessions of ``locales``."""
    keep = split.sessions.filter(pl.col("locale").is_in(list(locales))).select("session")
    split.history = split.history.join(keep, on="session", how="semi")
    split.queries = split.queries.join(keep, on="session", how="semi")
    split.events = split.events.join(keep, on="session", how="semi")
    if split.targets is not None:
        split.targets = split.targets.join(keep, on="session", how="semi")
    return split


def run_variant(
    workspace: Path,
    gt: Path,
    params: dict,
    variant: str,
    cache: Path | None,
    skip_types: tuple[str, ...] = (),
    finetune_epochs: int = 2,
) -> dict:
    p, families = variant_params(params, variant, skip_types)
    if variant == "pretrain_finetune":
        p = with_encoders(p, finetuned_encoders(workspace, params, finetune_epochs))
    elif variant == "published":  # train_deep's encoders where the workspace has them
        p = with_encoders(p, {
            name: workspace / PUBLISHED / f"{name}.pt"
            for name in p["deep"]["models"] if (workspace / PUBLISHED / f"{name}.pt").exists()
        })
    if variant in ("published", "pretrain_finetune") and p["features"]["deep_models"]:
        families = tuple(loop.FAMILIES)  # the deep family too: every candidate scored by each encoder
    hook = (lambda s: restrict(s, TASK_LOCALES[2])) if variant == "local_only" else None
    result = loop.run(
        workspace, p, gt, ("task2_phase1",), cache, families, split_hook=hook, tag_extra=variant
    )
    scores = result["test"]["task2_phase1"]["ranker"]
    return {
        "mrr": {k: round(scores[k]["mrr@100"], 4) for k in ("ES", "FR", "IT", "all") if k in scores},
        "valid_task2": round(result["valid"]["ranker"]["task2"]["mrr@100"], 4),
        "sources": result["sources"],
        "families": list(families) if families else "all but deep",
        "recall_task2": round(result["recall"]["task2"]["union"], 4),
        "seconds": result["seconds"],
        "valid_all": round(result["valid"]["ranker"]["all"]["mrr@100"], 4),
        "sources_task2_phase1": {
            m: round(v["all"]["mrr@100"], 4)
            for m, v in result["test"]["task2_phase1"].items()
            if m != "ranker"
        },
        "sources_valid_task2": {
            m: round(v["task2"]["mrr@100"], 4)
            for m, v in result["valid"].items()
            if m != "ranker" and "task2" in v
        },
        "best_iteration": result["best_iteration"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--synthetic", type=Path, help="workspace of the default synthetic world")
    parser.add_argument("--real", type=Path, help="workspace of the real files")
    parser.add_argument("--real-gt", type=Path, default=Path("../shared/amazon_m2_real/gt"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--set", action="append", default=[], dest="sets", help="params override for the real world"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--finetune-epochs", type=int, default=2, help="pretrain_finetune: ES/FR/IT epochs")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--skip-types", nargs="*", default=[], help="source types left out of every variant")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/task2_transfer.json"))
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    params = read_params(args.params)
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    worlds = {
        "real": (args.real, args.real_gt, loop.apply_sets(params, args.sets)),
        "synthetic": (args.synthetic, args.synthetic / "data/raw/gt" if args.synthetic else None, params),
    }
    for world, (workspace, gt, world_params) in worlds.items():
        if workspace is None:
            continue
        for variant in VARIANTS:
            if variant not in args.variants:
                continue
            log.info("%s / %s", world, variant)
            res = run_variant(
                workspace, gt, world_params, variant, args.cache, tuple(args.skip_types), args.finetune_epochs
            )
            out.setdefault(world, {})[variant] = res["mrr"]
            out.setdefault("details", {}).setdefault(world, {})[variant] = {
                k: v for k, v in res.items() if k != "mrr"
            }
            print(world, variant, json.dumps(res["mrr"]), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=1, sort_keys=True))
    out["real_sets"] = args.sets
    out["skip_types"] = args.skip_types
    out["finetune_epochs"] = args.finetune_epochs
    args.out.write_text(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
