"""Stage ``stats``: the data report of a raw directory (generated or real), beside the real figures.

    python -m pipeline.stats --raw data/raw --out metrics/data_stats.json
    m2 stats data/raw

Per locale: sessions, products, interactions, session length with target (mean, p50/p90/p99),
share of sessions with a repeated item and with a consecutive duplicate, the top-1% items' share of
interactions; the product overlap |A and B| / |A| between locales. For every task-1/2 test file with
ground truth: share of targets never seen in train, share following the session's last item
somewhere in train, share sharing the first five id characters with the last item, targets
missing from their locale's catalogue, and MRR@100 / Recall@100 of two probes (per-locale
popularity; a plain symmetric window-3 co-visitation fitted on train sessions and all test
prev_items) plus the oracle ceiling when gt/ceiling.json exists.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import polars as pl

from pipeline import raw
from pipeline.io import setup_logging, timed, write_json
from pipeline.synthetic import PRODUCTS, TRAIN_SESSIONS

log = logging.getLogger(__name__)

K = 100
WINDOW = 3
COVIS_WEIGHTS = (1.0, 0.5, 0.25)   # the session's last, second-last, third-last item
# Real figures (DESIGN.md "What real sessions look like") and the targets of issue 13.
REAL = {
    "repeat_share": ("0.31-0.35", (0.28, 0.38)),
    "consecutive_duplicate_share": ("0.17", (0.12, 0.22)),
    "length_p50": ("4", (4, 4)),
    "length_p90": ("7", (6, 8)),
    "length_p99": ("13", (11, 16)),
    "mean_length": ("3.5-4.5 (paper)", (3.5, 4.5)),
    "covis_over_popularity_mrr_task1": ("~100x", (20, float("inf"))),
    "covis_over_popularity_mrr_task2": ("~100x", (20, float("inf"))),
    "covis_recall_task2": ("0.65", (0.45, 0.80)),
    "ceiling_over_covis_mrr": ("unknown (winners ~1.2x covis)", (1.3, float("inf"))),
    "small_overlap_with_de": ("~0.4", (0.3, 0.5)),
    "target_prefix5_share": ("0.14", (0.08, 0.25)),
}


def _sequences(train: pl.DataFrame, tests: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Long form of every session: seq:Int64, locale, pos:Int64, id; train sessions with their target last."""
    parts = [train.select(pl.concat_list("prev_items", pl.col("next_item")).alias("items"), "locale")]
    parts += [t.select(pl.col("prev_items").alias("items"), "locale") for t in tests.values()]
    return (pl.concat(parts).with_row_index("seq").with_columns(pl.col("seq").cast(pl.Int64))
            .explode("items", empty_as_null=True).rename({"items": "id"}).drop_nulls("id")
            .with_columns(pos=pl.int_range(pl.len()).over("seq")))


def session_stats(train: pl.DataFrame, products: pl.DataFrame) -> dict:
    """Per-locale (and "all") session and catalogue statistics of the train file."""
    seqs = train.select(pl.concat_list("prev_items", pl.col("next_item")).alias("items"), "locale")
    per = seqs.with_columns(
        length=pl.col("items").list.len(),
        repeat=pl.col("items").list.n_unique() < pl.col("items").list.len(),
        dup=pl.col("items").list.eval(pl.element() == pl.element().shift(1)).list.any(),
    )
    events = seqs.explode("items", empty_as_null=True).rename({"items": "id"})

    def block(frame: pl.DataFrame, ev: pl.DataFrame) -> dict:
        counts = ev.group_by("id").len().sort("len", descending=True)["len"]
        top = max(1, -(-counts.len() // 100))
        length = frame["length"]
        return {
            "sessions": frame.height, "interactions": int(length.sum()),
            "mean_length": float(length.mean()), "length_p50": float(length.quantile(0.5, "nearest")),
            "length_p90": float(length.quantile(0.9, "nearest")), "length_p99": float(length.quantile(0.99, "nearest")),
            "length_max": int(length.max()), "repeat_share": float(frame["repeat"].mean()),
            "consecutive_duplicate_share": float(frame["dup"].mean()),
            "top1pct_items_share": float(counts.head(top).sum() / max(1, counts.sum())),
        }

    out = {"all": {**block(per, events), "products": products.height}}
    for loc in raw.LOCALES:
        f = per.filter(pl.col("locale") == loc)
        if f.height:
            out[loc] = {**block(f, events.filter(pl.col("locale") == loc)),
                        "products": int((products["locale"] == loc).sum())}
    return out


def overlap(products: pl.DataFrame) -> dict:
    """|A and B| / |A| over product ids, for every pair of locales present."""
    ids = {loc: set(products.filter(pl.col("locale") == loc)["id"].to_list()) for loc in raw.LOCALES}
    ids = {k: v for k, v in ids.items() if v}
    return {a: {b: round(len(ids[a] & ids[b]) / len(ids[a]), 4) for b in ids if b != a} for a in ids}


def _ranks(sessions: pl.DataFrame, scored: pl.DataFrame) -> pl.Series:
    """Rank of each session's target among its scored candidates (null when absent).

    ``sessions``: sid, target; ``scored``: sid, id, score (own items and off-catalogue already removed).
    """
    ranked = (scored.sort(["sid", "score", "id"], descending=[False, True, False])
              .with_columns(rank=pl.int_range(1, pl.len() + 1).over("sid")))
    return sessions.join(ranked, left_on=["sid", "target"], right_on=["sid", "id"], how="left").sort("sid")["rank"]


def _metrics(rank: pl.Series, locale: pl.Series) -> dict:
    frame = pl.DataFrame({"rank": rank, "locale": locale}).with_columns(
        rr=pl.when(pl.col("rank") <= K).then(1.0 / pl.col("rank")).otherwise(0.0).fill_null(0.0),
        hit=(pl.col("rank") <= K).fill_null(False))
    out = {"all": {"mrr@100": float(frame["rr"].mean()), "recall@100": float(frame["hit"].mean())}}
    for row in frame.group_by("locale").agg(pl.col("rr").mean(), pl.col("hit").mean()).sort("locale").iter_rows(named=True):
        out[row["locale"]] = {"mrr@100": row["rr"], "recall@100": row["hit"]}
    return out


def probe_popularity(test: pl.DataFrame, gt: pl.DataFrame, events: pl.DataFrame, catalogue: pl.DataFrame) -> dict:
    """Per-locale popularity (train interactions), the session's own items excluded."""
    pop = (events.filter(pl.col("train")).group_by("locale", "id").len()
           .join(catalogue, on=["locale", "id"], how="semi"))
    sessions = test.select(pl.int_range(pl.len()).alias("sid"), "locale", "prev_items").with_columns(target=gt["next_item"])
    own = sessions.select("sid", "locale", pl.col("prev_items").alias("id")).explode("id", empty_as_null=True).unique()
    # Enough of the list to fill 100 after removing the session's own items.
    top = pop.sort(["len", "id"], descending=[True, False]).group_by("locale", maintain_order=True).head(K + 50)
    scored = (sessions.select("sid", "locale").join(top, on="locale")
              .join(own, on=["sid", "locale", "id"], how="anti").select("sid", "id", pl.col("len").alias("score")))
    return _metrics(_ranks(sessions.select("sid", "target"), scored), sessions["locale"])


def covisitation(events: pl.DataFrame) -> pl.DataFrame:
    """Symmetric window-3 co-visitation counts: a, b (int codes), n."""
    pairs = []
    for d in range(1, WINDOW + 1):
        nxt = events.select("seq", "code", b=pl.col("code").shift(-d), same=pl.col("seq").shift(-d) == pl.col("seq"))
        nxt = nxt.filter(pl.col("same") & (pl.col("code") != pl.col("b"))).select(pl.col("code").alias("a"), "b")
        pairs += [nxt, nxt.select(pl.col("b").alias("a"), pl.col("a").alias("b"))]
    return pl.concat(pairs).group_by("a", "b").agg(n=pl.len().cast(pl.Float64))


def probe_covisitation(test: pl.DataFrame, gt: pl.DataFrame, covis: pl.DataFrame, codes: pl.DataFrame,
                       catalogue: pl.DataFrame) -> dict:
    """Score = sum over the last three items of weight x co-visitation count; own items excluded."""
    sessions = test.select(pl.int_range(pl.len()).alias("sid"), "locale", "prev_items").with_columns(target=gt["next_item"])
    own = sessions.select("sid", pl.col("prev_items").alias("id")).explode("id", empty_as_null=True).drop_nulls().unique()
    recent = sessions.select("sid", pl.col("prev_items").list.reverse().list.head(WINDOW).alias("id")).explode("id", empty_as_null=True).drop_nulls()
    recent = recent.with_columns(w=pl.int_range(pl.len()).over("sid").replace_strict(
        list(range(WINDOW)), list(COVIS_WEIGHTS), return_dtype=pl.Float64))
    scored = (recent.join(codes, on="id").select("sid", "w", pl.col("code").alias("a"))
              .join(covis, on="a").group_by("sid", "b").agg(score=(pl.col("w") * pl.col("n")).sum())
              .join(codes, left_on="b", right_on="code").select("sid", "id", "score")
              .join(own, on=["sid", "id"], how="anti")
              .join(sessions.select("sid", "locale"), on="sid")
              .join(catalogue, on=["locale", "id"], how="semi").select("sid", "id", "score"))
    return _metrics(_ranks(sessions.select("sid", "target"), scored), sessions["locale"])


def compute_stats(raw_dir: str | Path) -> dict:
    """The whole report of ``raw_dir`` as a JSON-ready dict (see the module docstring)."""
    raw_dir = Path(raw_dir)
    products, _ = raw.read_products(raw_dir / "products_train.csv", on_error="skip")
    train, _ = raw.read_sessions(raw_dir / "sessions_train.csv", with_target=True, on_error="skip")
    tests, gts = {}, {}
    for task in raw.TASKS:
        for phase in raw.PHASES:
            name = f"task{task}_phase{phase}"
            if (raw_dir / raw.test_file(task, phase)).exists():
                tests[name] = raw.read_sessions(raw_dir / raw.test_file(task, phase), with_target=False)[0]
                gt_path = raw_dir / "gt" / raw.gt_file(task, phase)
                if task != 3 and gt_path.exists():
                    gts[name] = raw.read_ground_truth(gt_path, task)
    ceiling_path = raw_dir / "gt" / "ceiling.json"
    ceiling = json.loads(ceiling_path.read_text()) if ceiling_path.exists() else {}
    catalogue = products.select("locale", "id")

    stats = {"raw_dir": str(raw_dir), "locales": session_stats(train, products), "overlap": overlap(products),
             "test_files": {},
             "train_targets_missing_from_catalogue": train.join(
                 catalogue, left_on=["locale", "next_item"], right_on=["locale", "id"], how="anti").height}
    if stats["train_targets_missing_from_catalogue"]:
        log.warning("%d train next items are not in their locale's catalogue", stats["train_targets_missing_from_catalogue"])
    events = _sequences(train, tests).with_columns(train=pl.col("seq") < train.height)
    codes = events.select("id").unique().sort("id").with_row_index("code").with_columns(pl.col("code").cast(pl.Int64))
    events = events.join(codes, on="id").sort("seq", "pos")
    covis = covisitation(events)
    train_ids = events.filter(pl.col("train")).select("id").unique()
    follows = (events.filter(pl.col("train")).select(last=pl.col("id"), target=pl.col("id").shift(-1),
                                                     same=pl.col("seq").shift(-1) == pl.col("seq"))
               .filter(pl.col("same")).select("last", "target").unique())
    for name, gt in gts.items():
        test = tests[name]
        if gt.height != test.height:
            log.warning("%s: %d gt rows for %d test rows; skipped", name, gt.height, test.height)
            continue
        frame = test.select("locale", last=pl.col("prev_items").list.last()).with_columns(target=gt["next_item"])
        entry = {
            "sessions": test.height,
            "target_unseen_in_train": float(frame.join(train_ids, left_on="target", right_on="id", how="anti").height
                                            / max(1, frame.height)),
            "target_follows_last_in_train": float(frame.join(follows, on=["last", "target"], how="semi").height
                                                  / max(1, frame.height)),
            "target_prefix5_share": float((frame["last"].str.slice(0, 5) == frame["target"].str.slice(0, 5)).mean()),
            "target_missing_from_catalogue": frame.join(catalogue, left_on=["locale", "target"],
                                                        right_on=["locale", "id"], how="anti").height,
            "popularity": probe_popularity(test, gt, events, catalogue),
            "covisitation": probe_covisitation(test, gt, covis, codes, catalogue),
        }
        if name in ceiling:
            entry["ceiling"] = {k: {m: v[m] for m in ("mrr@100", "recall@100")} for k, v in ceiling[name].items()}
        if entry["target_missing_from_catalogue"]:
            log.warning("%s: %d targets are not in their locale's catalogue", name, entry["target_missing_from_catalogue"])
        stats["test_files"][name] = entry
    stats["checks"] = _checks(stats)
    return stats


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _checks(stats: dict) -> dict:
    """The issue-13 headline figures with their real value, target range and whether they are met."""
    loc = stats["locales"]["all"]
    measured = {k: loc[k] for k in ("repeat_share", "consecutive_duplicate_share", "length_p50", "length_p90",
                                     "length_p99", "mean_length")}
    small = [stats["overlap"][s]["DE"] for s in ("ES", "FR", "IT") if s in stats["overlap"] and "DE" in stats["overlap"][s]]
    if small:
        measured["small_overlap_with_de"] = sum(small) / len(small)
    files = stats["test_files"]
    for task in (1, 2):
        names = [n for n in files if n.startswith(f"task{task}_")]
        if not names:
            continue
        cov = sum(files[n]["covisitation"]["all"]["mrr@100"] for n in names) / len(names)
        pop = sum(files[n]["popularity"]["all"]["mrr@100"] for n in names) / len(names)
        measured[f"covis_over_popularity_mrr_task{task}"] = _ratio(cov, pop)
        if task == 2:
            measured["covis_recall_task2"] = sum(files[n]["covisitation"]["all"]["recall@100"] for n in names) / len(names)
    with_ceiling = [n for n in files if "ceiling" in files[n]]
    if with_ceiling:
        measured["ceiling_over_covis_mrr"] = _ratio(
            sum(files[n]["ceiling"]["all"]["mrr@100"] for n in with_ceiling),
            sum(files[n]["covisitation"]["all"]["mrr@100"] for n in with_ceiling))
    if files:
        measured["target_prefix5_share"] = sum(f["target_prefix5_share"] * f["sessions"] for f in files.values()) / sum(
            f["sessions"] for f in files.values())
    out = {}
    for key, value in measured.items():
        real, (lo, hi) = REAL[key]
        out[key] = {"value": value, "real": real, "target": [lo, hi if hi != float("inf") else None],
                    "ok": value is not None and lo <= value <= hi}
    return out


def format_stats(stats: dict) -> str:
    """A readable report: per-locale figures beside Table 2, the issue-13 checks, the test files."""
    lines = [f"Data report of {stats['raw_dir']}", ""]
    loc = stats["locales"]
    total_s, total_p = sum(TRAIN_SESSIONS.values()), sum(PRODUCTS.values())
    n_s = sum(loc[x]["sessions"] for x in raw.LOCALES if x in loc)
    n_p = sum(loc[x]["products"] for x in raw.LOCALES if x in loc)
    lines.append("Per locale (share of all = this data / paper Table 2; length with target):")
    lines.append(f"{'locale':<6} {'sessions':>9} {'share':>13} {'products':>9} {'share':>13} {'interact':>9} "
                 f"{'mean':>5} {'p50':>4} {'p90':>4} {'p99':>4} {'max':>5} {'repeat':>6} {'dup':>5} {'top1%':>6}")
    for key in (*raw.LOCALES, "all"):
        if key not in loc:
            continue
        r = loc[key]
        ps = f"{r['sessions'] / max(1, n_s):.3f}/{TRAIN_SESSIONS[key] / total_s:.3f}" if key != "all" else "1/1"
        pp = f"{r['products'] / max(1, n_p):.3f}/{PRODUCTS[key] / total_p:.3f}" if key != "all" else "1/1"
        lines.append(f"{key:<6} {r['sessions']:>9} {ps:>13} {r['products']:>9} {pp:>13} {r['interactions']:>9} "
                     f"{r['mean_length']:>5.2f} {r['length_p50']:>4.0f} {r['length_p90']:>4.0f} {r['length_p99']:>4.0f} "
                     f"{r['length_max']:>5} {r['repeat_share']:>6.3f} {r['consecutive_duplicate_share']:>5.3f} "
                     f"{r['top1pct_items_share']:>6.3f}")
    lines.append(f"train next items missing from their locale's catalogue: {stats['train_targets_missing_from_catalogue']}")
    lines.append(f"paper Table 2: {total_s:,} sessions, 15.3M interactions, 1,410,675 products; "
                 f"this data is {n_s / total_s:.4f}x the sessions")
    lines += ["", "Issue-13 checks:", f"{'statistic':<34} {'measured':>9} {'real':>30} {'target':>14}  ok"]
    for key, c in stats["checks"].items():
        lo, hi = c["target"]
        target = f"{lo:g}-{hi:g}" if hi is not None else f">= {lo:g}"
        value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
        lines.append(f"{key:<34} {value:>9} {c['real']:>30} {target:>14}  {'yes' if c['ok'] else 'NO'}")
    if stats["test_files"]:
        lines += ["", "Test files with ground truth (MRR@100 / Recall@100):",
                  f"{'file':<13} {'n':>6} {'unseen':>6} {'follow':>6} {'pref5':>6} {'miss':>4} "
                  f"{'popularity':>15} {'co-visitation':>15} {'ceiling':>15}"]
        for name, f in stats["test_files"].items():
            def pair(d: dict | None) -> str:
                return f"{d['all']['mrr@100']:.4f}/{d['all']['recall@100']:.3f}" if d else "n/a"
            lines.append(f"{name:<13} {f['sessions']:>6} {f['target_unseen_in_train']:>6.3f} "
                         f"{f['target_follows_last_in_train']:>6.3f} {f['target_prefix5_share']:>6.3f} "
                         f"{f['target_missing_from_catalogue']:>4} {pair(f['popularity']):>15} "
                         f"{pair(f['covisitation']):>15} {pair(f.get('ceiling')):>15}")
        lines.append("real (ES/FR/IT test): popularity 0.003 MRR, co-visitation 0.37 MRR / 0.65 recall; "
                     "follow = target follows the last item somewhere in train")
    lines += ["", "Product overlap |row and col| / |row|:", "      " + " ".join(f"{b:>6}" for b in stats["overlap"])]
    for a, row in stats["overlap"].items():
        lines.append(f"{a:<6}" + " ".join(f"{row[b]:>6.3f}" if b in row else f"{'-':>6}" for b in stats["overlap"]))
    lines.append("real: ES/FR/IT overlap DE about 0.4, UK overlaps DE, JP little")
    return "\n".join(lines)


@raw.exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, required=True, help="raw directory (data/raw)")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON (metrics/data_stats.json)")
    args = parser.parse_args()
    setup_logging()
    with timed("stats"):
        stats = compute_stats(args.raw)
    write_json(stats, args.out)
    print(format_stats(stats))


if __name__ == "__main__":
    main()
