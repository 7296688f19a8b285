"""Task 3 on generated worlds, scored on the test files' ground truth: does the published file beat the last
title?

    python benchmarks/task3_worlds.py --world default --world world2 [--scale 0.02] \
        [--work /tmp/task3_worlds] [-S task3.chooser.KEY=VALUE ...] [-W synthetic.KEY=VALUE ...] \
        [--out benchmarks/results/task3_worlds.json]

Each world is params.yaml's ``synthetic`` section with the knobs of WORLDS[name] replaced, generated at
``--scale`` (params.yaml's data.scale by default) with params.yaml's seed, then run through the stage
cores as ``dvc repro`` runs them: prepare, split (params.yaml ``split``), the chooser of stage ``task3``
(params.yaml ``task3.chooser``, ``-S`` overrides), and stage ``choose``'s per-locale pick among the
chooser's two files and the last title (the mT5 generator is left out: it is trained for minutes and
``choose`` drops it on every locale of both worlds at scale 0.02). Each test phase is scored with
sacrebleu on the generated ground truth.

Appends one run per world to the ``--out`` record ({"runs": [...]}, rendered by benchmarks/render.py into
docs/task3_worlds.md): ``valid`` (metrics/task3_valid.json's figures), ``choice`` (the per-locale pick),
``test`` (per phase, sacrebleu BLEU 0-100 of last_title, task3_chooser_plain, task3_chooser and
published, the chooser's departure rate, ``published_gain_sd``: the paired-bootstrap standard deviation
of the published file's gain over the last title) and ``gap`` (per method: the valid gain over the last title
minus the test gain, all locales, sacrebleu scale). Raw data and prepared frames are cached under
``--work/<world>_<scale>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from candidates.union import load_source_defaults, with_defaults  # noqa: E402
from core import config, raw  # noqa: E402
from core.io import setup_logging, write_json  # noqa: E402
from core.metrics import bleu  # noqa: E402
from pipeline import choose, prepare, split, synthetic, task3  # noqa: E402
from pipeline.synthetic import SyntheticConfig  # noqa: E402
from titles import chooser as tc  # noqa: E402
from titles import folds as title_folds  # noqa: E402
from titles.last_title import last_titles  # noqa: E402
from titles.text import STAT_COLUMNS, bleu_stats, corpus_bleu, item_titles, tokens  # noqa: E402

log = logging.getLogger("task3_worlds")

# The second world (tests/test_task3_worlds.py WORLD2): "Brand Model words noun colour size CODE" titles,
# longer pseudo-words, 30 colours; every Task 3 target a new family with a new model code.
WORLDS = {
    "default": {},
    "world2": {"title_layout": "brand_words_colour_model", "model_code_share": 1.0, "word_long_share": 0.7,
               "word_long_share_jp": 0.8, "n_colours": 30, "task3_new_variant": 0.0, "task3_new_code": 1.0},
}
FOLDS = ("items", "sessions", "events", "targets")


def world_data(name: str, knobs: dict, scale: float, seed: int,
               work: Path) -> tuple[Path, prepare.Prepared, dict]:
    """The world's raw dir, prepared frames and split folds (cached under ``work``)."""
    merged = {**WORLDS[name], **knobs}
    root = work / f"{name}_{scale}_{hashlib.md5(json.dumps(merged, sort_keys=True).encode()).hexdigest()[:8]}"
    raw_dir = root / "raw"
    if not (root / "done").exists():
        cfg = dataclasses.replace(config.load_section(SyntheticConfig, "synthetic"), **merged)
        synthetic.generate(raw_dir, scale=scale, seed=seed, cfg=cfg)
        products, train, tests, _ = prepare.read_raw(raw_dir, "raise")
        prepared = prepare.prepare(products, train, tests)
        for part in FOLDS:
            getattr(prepared, part).write_parquet(root / f"{part}.parquet")
        (root / "done").write_text("ok")
    prepared = prepare.Prepared(*(pl.read_parquet(root / f"{part}.parquet") for part in FOLDS), report={})
    folds = split.make_folds(prepared.sessions, prepared.events, prepared.targets,
                             config.load_section(split.SplitConfig, "split"), seed)
    return raw_dir, prepared, folds


def chooser_run(prepared: prepare.Prepared, folds: dict, cfg: tc.ChooserConfig,
                choose_cfg: choose.ChooseConfig,
                seed: int) -> tuple[dict, dict[str, str], dict[int, dict[str, pl.DataFrame]]]:
    """Stages task3 and choose on one world: the chooser learned on the valid fold, its validation metrics,
    the per-locale pick, and per test phase each method's titles (locale, next_item_title in the phase's
    session order): the last title, the chooser, the chooser + edits, and ``published`` (the pick)."""
    items, events = prepared.items, prepared.events
    titles = item_titles(items)
    refs = title_folds.valid_references(folds["valid"].queries, folds["valid"].targets, titles)
    valid = task3.Fold(refs.select("session", "locale"), folds["valid"].history)
    labelled, tuned, metrics = task3.run_valid(valid, refs, events, items, titles, cfg, seed)
    model = tc.fit(labelled, cfg, seed)
    per_locale = choose.task3_choice(choose.chooser_figures(metrics), choose_cfg.task3_min_gain,
                                     choose_cfg.task3_min_z)
    picked = {loc: v["method"] for loc, v in per_locale.items()}
    tested = {}
    for phase in raw.PHASES:
        fold = task3.Fold(title_folds.test_sessions(prepared.sessions, phase), folds["test"].history)
        ours = task3.predict_test(fold, model, tuned, events, items, titles, cfg, seed)
        frames = {choose.LAST_TITLE: last_titles(fold.sessions, events, items),
                  "task3_chooser_plain": ours["plain"], "task3_chooser": ours["edited"]}
        frames = {m: fold.sessions.select("session", "locale").join(f, on="session", maintain_order="left")
                  .select("locale", "next_item_title") for m, f in frames.items()}
        frames["published"] = choose.combine_by_locale(frames, picked, choose.LAST_TITLE)
        tested[phase] = frames
    return metrics, picked, tested


def run_world(name: str, knobs: dict, scale: float, seed: int, work: Path, cfg: tc.ChooserConfig) -> dict:
    start = time.perf_counter()
    raw_dir, prepared, folds = world_data(name, knobs, scale, seed, work)
    choose_cfg = config.load_section(choose.ChooseConfig, "choose")
    metrics, picked, tested = chooser_run(prepared, folds, cfg, choose_cfg, seed)
    out: dict = {"valid": {k: v for k, v in metrics.items() if k != "per_locale"},
                 "valid_per_locale": metrics["per_locale"], "choose": dataclasses.asdict(choose_cfg),
                 "choice": picked, "test": {}}
    for phase, frames in tested.items():
        gt = raw.read_ground_truth(raw_dir / "gt" / raw.gt_file(3, phase), 3)
        refs_t = gt["next_item_title"].to_list()
        scores = {m: 100 * bleu(f["next_item_title"].to_list(), refs_t) for m, f in frames.items()}
        scores["published_gain_sd"] = gain_sd(frames["published"]["next_item_title"],
                                              frames[choose.LAST_TITLE]["next_item_title"],
                                              gt["next_item_title"], seed)
        scores["chooser_departs"] = float((frames["task3_chooser_plain"]["next_item_title"]
                                           != frames[choose.LAST_TITLE]["next_item_title"]).mean())
        scores["mean_tokens"] = {m: float(f["next_item_title"].str.split(" ").list.len().mean())
                                 for m, f in frames.items()} | {
            "target": float(gt["next_item_title"].str.split(" ").list.len().mean())}
        out["test"][f"phase{phase}"] = scores
    valid_gain = {"task3_chooser_plain": metrics["chooser"], "task3_chooser": metrics["chooser_edited"]}
    out["gap"] = {m: {f"phase{p}": 100 * (v - metrics["last_title"])
                      - (out["test"][f"phase{p}"][m] - out["test"][f"phase{p}"][choose.LAST_TITLE])
                      for p in raw.PHASES} for m, v in valid_gain.items()}
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def gain_sd(hyp: pl.Series, base: pl.Series, refs: pl.Series, seed: int, draws: int = 200) -> float:
    """The spread of ``hyp``'s BLEU gain over ``base`` (x 100) across the test sessions: the standard
    deviation of the gain over ``draws`` paired bootstrap resamples of the sessions (13a-token statistics,
    as sacrebleu)."""
    ref = tokens(refs)
    stats = [bleu_stats(tokens(h), ref).select(STAT_COLUMNS).to_numpy() for h in (hyp, base)]
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(draws):
        idx = rng.integers(0, len(ref), len(ref))
        sums = [pl.DataFrame([s[idx].sum(axis=0)], schema=STAT_COLUMNS, orient="row") for s in stats]
        gains.append(100 * (corpus_bleu(sums[0]) - corpus_bleu(sums[1])))
    return float(np.std(gains))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", action="append", choices=sorted(WORLDS), required=True)
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/task3_worlds"))
    parser.add_argument("-S", dest="overrides", action="append", default=[],
                        help="task3.chooser.KEY=VALUE (YAML value)")
    parser.add_argument("-W", dest="world_knobs", action="append", default=[],
                        help="synthetic.KEY=VALUE on top of every world's knobs (YAML value)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    setup_logging()
    seed = config.seed()
    scale = args.scale if args.scale is not None else config.section("data.scale")
    cfg = config.load_section(tc.ChooserConfig, "task3.chooser")
    knobs = {}
    for entry in args.overrides:
        key, value = entry.split("=", 1)
        knobs[key.removeprefix("task3.chooser.")] = yaml.safe_load(value)
    cfg = dataclasses.replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()})
    cfg = dataclasses.replace(cfg, sources=with_defaults(cfg.sources, load_source_defaults()))
    world_knobs = {}
    for entry in args.world_knobs:
        key, value = entry.split("=", 1)
        world_knobs[key.removeprefix("synthetic.")] = yaml.safe_load(value)
    runs = [{"world": name, "knobs": {**WORLDS[name], **world_knobs}, "scale": scale, "seed": seed,
             "valid_mask": cfg.valid_mask, "new_line_share": cfg.new_line_share, "train_mask": cfg.train_mask,
             "overrides": knobs, "commit": git_commit(),
             **run_world(name, world_knobs, scale, seed, args.work, cfg)} for name in args.world]
    print(json.dumps(runs, indent=1))
    if args.out:
        record(runs, args.out)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def record(runs: list[dict], path: Path) -> None:
    """Add ``runs`` to the record at ``path`` ({"runs": [...]}), replacing a run of the same world, knobs,
    scale, chooser settings (overrides and the train_mask they resolved to) and ``choose.task3_min_z``."""
    def key(run: dict) -> str:
        return json.dumps([run["world"], run["knobs"], run["scale"], run["valid_mask"], run["overrides"],
                           run.get("choose", {}).get("task3_min_z", 0.0),
                           run.get("train_mask") or run["valid_mask"]], sort_keys=True)

    old = json.loads(path.read_text())["runs"] if path.exists() else []
    new = {key(r) for r in runs}
    write_json({"runs": [r for r in old if key(r) not in new] + runs}, path)


if __name__ == "__main__":
    main()
