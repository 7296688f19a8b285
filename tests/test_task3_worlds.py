"""Task 3 on a second generated world the chooser was not tuned on: the published file keeps up with the
last title.

The world: titles "Brand Model words noun colour size CODE" (no commas, the model code last, every family
with one), longer pseudo-words, 30 colours, and every Task 3 target a new product line: its brand and noun
are its family's, its model words and its model code no catalogue title holds (params.yaml ``synthetic``
knobs ``title_layout``, ``task3_new_variant``, ``task3_new_code``). The chooser and the choose stage's
per-locale pick run as the stages run them, on the tiny scale; the published file is scored on the
generated ground truth of both test phases together. A phase holds 282 sessions at this scale, and the
published file's gain over the last title spreads by about 0.3 BLEU (x 100) between bootstrap resamples of
them, three times the tolerance: the two phases pooled measure the method rather than the draw. (Per phase
the default published -0.12 on phase 2 here and +0.06 on phase 1.)

The same world at the default scale, per phase, where the issue's target (>= last title - 0.1 per phase)
is checked: ``python benchmarks/task3_worlds.py --world world2`` (docs/task3_worlds.md).
"""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from benchmarks.task3_worlds import WORLDS, chooser_run
from candidates.union import with_defaults
from core import raw
from core.metrics import bleu
from pipeline import choose, prepare, split, synthetic
from tests._params import section, source_defaults, synthetic_config
from tests.conftest import SEED, TINY_SCALE
from titles import chooser as tc

TOLERANCE = 0.001  # 0.1 BLEU on the sacrebleu scale


@pytest.fixture(scope="module")
def world2(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("world2")
    cfg = dataclasses.replace(synthetic_config(), **WORLDS["world2"])
    synthetic.generate(root / "raw", scale=TINY_SCALE, seed=SEED, cfg=cfg)
    products, train, tests, _ = prepare.read_raw(root / "raw", "raise")
    prepared = prepare.prepare(products, train, tests)
    folds = split.make_folds(prepared.sessions, prepared.events, prepared.targets,
                             section(split.SplitConfig, "split", max_valid_sessions=0), SEED)
    return {"raw": root / "raw", "prepared": prepared, "folds": folds}


def test_world2_titles_follow_the_layout(world2):
    titles = world2["prepared"].items.filter(pl.col("title").str.contains(", "))
    assert titles.height == 0, titles["title"].head(3).to_list()  # no commas: the amazon layout is off
    gt = raw.read_ground_truth(world2["raw"] / "gt" / raw.gt_file(3, 1), 3)
    codes = gt["next_item_title"].str.extract(r"([0-9A-Z]{2}-\d+)$")
    catalogue = world2["prepared"].items["title"].str.extract(r"([0-9A-Z]{2}-\d+)$")
    # every new product has a model code no catalogue title holds
    assert codes.null_count() < gt.height
    assert not codes.drop_nulls().is_in(catalogue.drop_nulls().implode()).any()


def test_published_task3_does_not_lose_to_the_last_title(world2):
    cfg = section(tc.ChooserConfig, "task3.chooser", n_estimators=60)
    cfg = dataclasses.replace(cfg, sources=with_defaults(cfg.sources, source_defaults()))
    metrics, choice, tested = chooser_run(world2["prepared"], world2["folds"], cfg,
                                          section(choose.ChooseConfig, "choose"), SEED)
    ours_all, last_all, refs_all = [], [], []
    for phase, frames in tested.items():
        gt = raw.read_ground_truth(world2["raw"] / "gt" / raw.gt_file(3, phase), 3)
        refs_all += gt["next_item_title"].to_list()
        ours_all += frames["published"]["next_item_title"].to_list()
        last_all += frames[choose.LAST_TITLE]["next_item_title"].to_list()
    ours_bleu, last_bleu = bleu(ours_all, refs_all), bleu(last_all, refs_all)
    assert ours_bleu >= last_bleu - TOLERANCE, (ours_bleu, last_bleu, choice, metrics["margins"])
