"""Writing the world: one simulation for every session of every file, then the six competition
files, gt/ and gt/ceiling.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

from core.io import atomic_path, peak_rss_mib, write_json
from core.raw import LOCALES, gt_file, oracle_file, test_file
from pipeline.synthetic.catalogue import base36, build_world, make_titles, products_frame
from pipeline.synthetic.config import SyntheticConfig, scaled_counts
from pipeline.synthetic.oracle import ceiling, oracle_ranks, target_classes
from pipeline.synthetic.sessions import lengths, simulate

log = logging.getLogger(__name__)


def _prev_items_repr(ids: pl.Series, n_prev: np.ndarray) -> pl.Series:
    """numpy's str() of a 1-d array of 10-character ids: five per line, continuation lines start
    with a space, e.g. "['A' 'B' 'C' 'D' 'E'\\n 'F']"."""
    row = np.repeat(np.arange(len(n_prev)), n_prev)
    pos = np.arange(len(row)) - np.repeat(np.cumsum(n_prev) - n_prev, n_prev)
    last = pos == np.repeat(n_prev - 1, n_prev)
    frame = pl.DataFrame({"row": row, "pos": pos, "last": last, "id": ids})
    sep = (pl.when(pl.col("last")).then(pl.lit("]"))
           .when((pl.col("pos") + 1) % 5 == 0).then(pl.lit("\n ")).otherwise(pl.lit(" ")))
    token = pl.concat_str([pl.when(pl.col("pos") == 0).then(pl.lit("[")).otherwise(pl.lit("")),
                           pl.lit("'"), pl.col("id"), pl.lit("'"), sep])
    return (frame.with_columns(tok=token).group_by("row", maintain_order=True)
            .agg(pl.col("tok").str.join("")).get_column("tok"))


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp, quote_style="necessary", float_precision=None)


def generate(out_dir: Path, scale: float, seed: int, cfg: SyntheticConfig) -> dict:
    """Write the six real-format files, gt/ and gt/ceiling.json into ``out_dir``.

    Returns counts: products and train sessions per locale, interactions, rows per test file,
    and the time taken.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "gt").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = scaled_counts(scale)
    w = build_world(rng, scale, cfg)
    log.info("world: %d categories, %d brands, %d families, %d products, %d (ASIN, locale) entries; %.1fs, "
             "peak RSS %.0f MiB", w.n_cat, w.n_brand, w.n_fam, len(w.prod_id), len(w.ent_prod),
             time.perf_counter() - start, peak_rss_mib())
    products = products_frame(rng, w, cfg)
    _write_csv(products, out_dir / "products_train.csv")

    # One simulation for every session of every file, so all come from the same process.
    datasets = ["train"] + [f"task{t}_phase{p}" for t in (1, 2, 3) for p in (1, 2)]
    ds_of, loc_of = [], []
    for d, name in enumerate(datasets):
        for loc, c in counts[name].items():
            ds_of.append(np.full(c, d))
            loc_of.append(np.full(c, LOCALES.index(loc)))
    ds_of = np.concatenate(ds_of)
    loc_of = np.concatenate(loc_of).astype(np.int64)
    cap_by_loc = np.array([min(cfg.length_max,
                               max(cfg.length_cap_floor, counts["products"][loc] // cfg.length_cap_divisor))
                           for loc in LOCALES])
    length = lengths(rng, len(loc_of), cap_by_loc[loc_of], cfg)
    sim = simulate(rng, w, loc_of, length, cfg)
    log.info("simulated %d sessions, %d prev items; %.1fs, peak RSS %.0f MiB", len(loc_of), len(sim["flat"]),
             time.perf_counter() - start, peak_rss_mib())

    ids = pl.Series(w.prod_id, dtype=pl.String)
    inv = sim["inv"]
    result = {"scale": scale, "seed": seed, "products": {}, "train_sessions": {}, "test_rows": {}}
    ceilings = {}
    for d, name in enumerate(datasets):
        sess = np.flatnonzero(ds_of == d)
        # Train rows in random order; test rows grouped by locale like the real files.
        if name == "train":
            sess = rng.permutation(sess)
        else:
            sess = sess[np.lexsort((rng.random(len(sess)), loc_of[sess]))]
        sim_idx = inv[sess]
        n_prev = sim["n_prev"][sim_idx]
        flat_idx = (np.repeat(sim["offsets"][sim_idx], n_prev)
                    + (np.arange(n_prev.sum()) - np.repeat(np.cumsum(n_prev) - n_prev, n_prev)))
        prev = _prev_items_repr(ids.gather(w.ent_prod[sim["flat"][flat_idx]]), n_prev)
        locale = pl.Series(np.array(LOCALES)[loc_of[sess]], dtype=pl.String)
        target = sim["target"][sim_idx]
        if name == "train":
            frame = pl.DataFrame({"prev_items": prev, "next_item": ids.gather(w.ent_prod[target]),
                                  "locale": locale})
            _write_csv(frame, out_dir / "sessions_train.csv")
            result["interactions"] = int(n_prev.sum() + len(sess))
            continue
        task, phase = int(name[4]), int(name[-1])
        _write_csv(pl.DataFrame({"prev_items": prev, "locale": locale}), out_dir / test_file(task, phase))
        result["test_rows"][name] = len(sess)
        if task == 3:
            fam = w.ent_fam[target]
            new_family = rng.random(len(sess)) >= cfg.task3_new_variant
            model = w.fam_model[fam].copy()
            model[new_family] = (w.n_cat + w.fam_cat[fam[new_family], None] * cfg.model_pool
                                 + rng.integers(0, cfg.model_pool, (int(new_family.sum()), 2)))
            colour, size = rng.integers(0, cfg.n_colours, len(sess)), rng.integers(0, cfg.n_sizes, len(sess))
            code = w.fam_code[fam]
            if cfg.task3_new_code > 0:  # drawn only when asked, so the default world's stream is unchanged
                new_code = (rng.random(len(sess)) < cfg.task3_new_code) & (code != "")
                letters = base36(rng.integers(10 * 36, 36 * 36, len(sess)), 2)
                digits = rng.integers(1000, 9999, len(sess)).astype(str)  # catalogue codes have three
                drawn = np.char.add(np.char.add(letters, "-"), digits)
                code = np.where(new_code, drawn, code)
            title = make_titles(w, cfg, fam, loc_of[sess], colour, size, model, code)
            gt = pl.DataFrame({"next_item_title": title, "locale": locale})
        else:
            gt = pl.DataFrame({"next_item": ids.gather(w.ent_prod[target]), "locale": locale})
            ranks = oracle_ranks(w, sim, sim_idx)
            ceilings[name] = ceiling(ranks, loc_of[sess])
            cls, related_rank = target_classes(w, sim, sim_idx)
            _write_csv(pl.DataFrame({"target_class": cls, "related_rank": related_rank, "oracle_rank": ranks,
                                     "locale": locale}), out_dir / "gt" / oracle_file(task, phase))
        _write_csv(gt, out_dir / "gt" / gt_file(task, phase))
    write_json(ceilings, out_dir / "gt" / "ceiling.json")
    for loc in LOCALES:
        result["products"][loc] = int((w.ent_loc == LOCALES.index(loc)).sum())
        result["train_sessions"][loc] = counts["train"][loc]
    result["unique_products"] = len(w.prod_id)
    result["ceiling"] = {k: v["all"] for k, v in ceilings.items()}
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["peak_rss_mib"] = round(peak_rss_mib())
    log.info("generated %s in %.1fs, peak RSS %.0f MiB", out_dir, result["seconds"], result["peak_rss_mib"])
    return result
