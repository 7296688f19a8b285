"""Stage ``stats``: the data report of a raw directory (generated or real), beside the real figures.

    python -m pipeline.stats --raw data/raw --out metrics/data_stats.json
    m2 stats data/raw

Per locale: sessions, products, interactions, session length with target (mean, p50/p90/p99),
share of sessions with a repeated item and with a consecutive duplicate, the top-1% items' share of
interactions; the product overlap |A and B| / |A| between locales; train next items missing from
their locale's catalogue. It reads no ground truth (only the score stage reads gt/): how hard the
test targets are is the score stage's ground-truth probes (pipeline/probes.py, metrics/gt_probes.json).

Locale by locale: one locale's train sessions are exploded and counted at a time (sessions never cross
locales); the "all" figures come from the per-session flags in file order and per-locale id counts summed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl

from core import raw
from core.io import peak_rss_mib, setup_logging, timed, write_json
from core.metrics import within_targets
from core.paper import PRODUCTS, TRAIN_SESSIONS

log = logging.getLogger(__name__)

# Real figures (DESIGN.md "What real sessions look like") and the targets of issue 13.
REAL = {
    "repeat_share": ("0.31-0.35", (0.28, 0.38)),
    "consecutive_duplicate_share": ("0.17", (0.12, 0.22)),
    "length_p50": ("4", (4, 4)),
    "length_p90": ("7", (6, 8)),
    "length_p99": ("13", (11, 16)),
    "mean_length": ("3.5-4.5 (paper)", (3.5, 4.5)),
    "small_overlap_with_de": ("~0.4", (0.3, 0.5)),
}  # the figures that need ground truth: pipeline.probes.REAL


def _session_flags(train_sessions: pl.DataFrame) -> pl.DataFrame:
    """seq, length, repeat, dup of train sessions (items with the target)."""
    return train_sessions.select(
        "seq",
        length=pl.col("items").list.len(),
        repeat=pl.col("items").list.n_unique() < pl.col("items").list.len(),
        dup=pl.col("items").list.eval(pl.element() == pl.element().shift(1)).list.any(),
    )


def _block(per: pl.DataFrame, counts: pl.Series) -> dict:
    """Session statistics of ``per`` (seq, length, repeat, dup); ``counts``: interactions per distinct id."""
    counts = counts.sort(descending=True)
    top = max(1, -(-counts.len() // 100))
    length = per["length"]
    return {
        "sessions": per.height,
        "interactions": int(length.sum()),
        "mean_length": float(length.mean()),
        "length_p50": float(length.quantile(0.5, "nearest")),
        "length_p90": float(length.quantile(0.9, "nearest")),
        "length_p99": float(length.quantile(0.99, "nearest")),
        "length_max": int(length.max()),
        "repeat_share": float(per["repeat"].mean()),
        "consecutive_duplicate_share": float(per["dup"].mean()),
        "top1pct_items_share": float(counts.head(top).sum() / max(1, counts.sum())),
    }


def overlap(catalogue: pl.DataFrame) -> dict:
    """|A and B| / |A| over product ids, for every pair of locales present (``catalogue``: locale, id)."""
    ids = {loc: set(catalogue.filter(pl.col("locale") == loc)["id"].to_list()) for loc in raw.LOCALES}
    ids = {k: v for k, v in ids.items() if v}
    return {a: {b: round(len(ids[a] & ids[b]) / len(ids[a]), 4) for b in ids if b != a} for a in ids}


def read_catalogue(path: Path) -> pl.DataFrame:
    """locale, id of every product kept (malformed records skipped, as every reader of the stage does)."""
    products, _ = raw.read_products(path, on_error="skip")
    return products.select("locale", "id")


def compute_stats(raw_dir: str | Path) -> dict:
    """The whole report of ``raw_dir`` as a JSON-ready dict (see the module docstring)."""
    raw_dir = Path(raw_dir)
    catalogue = read_catalogue(raw_dir / "products_train.csv")
    train, _ = raw.read_sessions(raw_dir / "sessions_train.csv", with_target=True, on_error="skip")
    log.info(
        "read %d products, %d train sessions; peak RSS %.0f MiB",
        catalogue.height,
        train.height,
        peak_rss_mib(),
    )
    stats = {
        "raw_dir": str(raw_dir),
        "locales": {},
        "overlap": overlap(catalogue),
        "train_targets_missing_from_catalogue": train.join(
            catalogue, left_on=["locale", "next_item"], right_on=["locale", "id"], how="anti"
        ).height,
    }
    if stats["train_targets_missing_from_catalogue"]:
        log.warning(
            "%d train next items are not in their locale's catalogue",
            stats["train_targets_missing_from_catalogue"],
        )
    flags, counts = [], []
    indexed = train.lazy().with_row_index("seq")
    for loc in raw.LOCALES:
        sessions = (
            indexed.filter(pl.col("locale") == loc)
            .select(pl.col("seq").cast(pl.Int64), items=pl.concat_list("prev_items", pl.col("next_item")))
            .collect()
        )
        if not sessions.height:
            continue
        per = _session_flags(sessions)
        count = sessions.select(pl.col("items").explode(empty_as_null=True).alias("id")).group_by("id").len()
        stats["locales"][loc] = {
            **_block(per, count["len"]),
            "products": int((catalogue["locale"] == loc).sum()),
        }
        flags.append(per)
        counts.append(count)
        log.info("%s: %d sessions; peak RSS %.0f MiB", loc, sessions.height, peak_rss_mib())
        del sessions
    per = (
        pl.concat(flags).sort("seq")
        if flags
        else _session_flags(pl.DataFrame(schema={"seq": pl.Int64, "items": pl.List(pl.String)}))
    )
    count = (
        pl.concat(counts).group_by("id").agg(pl.col("len").sum())["len"]
        if counts
        else pl.Series("len", [], pl.UInt32)
    )
    stats["locales"] = {"all": {**_block(per, count), "products": catalogue.height}, **stats["locales"]}
    stats["checks"] = _checks(stats)
    return stats


def _checks(stats: dict) -> dict:
    """The issue-13 figures of the data (no ground truth): real value, target range and whether met."""
    loc = stats["locales"]["all"]
    measured = {
        k: loc[k]
        for k in (
            "repeat_share",
            "consecutive_duplicate_share",
            "length_p50",
            "length_p90",
            "length_p99",
            "mean_length",
        )
    }
    small = [
        stats["overlap"][s]["DE"]
        for s in ("ES", "FR", "IT")
        if s in stats["overlap"] and "DE" in stats["overlap"][s]
    ]
    if small:
        measured["small_overlap_with_de"] = sum(small) / len(small)
    return within_targets(measured, REAL)


def format_stats(stats: dict) -> str:
    """A readable report: per-locale figures beside Table 2, the issue-13 checks, the overlap."""
    lines = [f"Data report of {stats['raw_dir']}", ""]
    loc = stats["locales"]
    total_s, total_p = sum(TRAIN_SESSIONS.values()), sum(PRODUCTS.values())
    n_s = sum(loc[x]["sessions"] for x in raw.LOCALES if x in loc)
    n_p = sum(loc[x]["products"] for x in raw.LOCALES if x in loc)
    lines.append("Per locale (share of all = this data / paper Table 2; length with target):")
    lines.append(
        f"{'locale':<6} {'sessions':>9} {'share':>13} {'products':>9} {'share':>13} {'interact':>9} "
        f"{'mean':>5} {'p50':>4} {'p90':>4} {'p99':>4} {'max':>5} {'repeat':>6} {'dup':>5} {'top1%':>6}"
    )
    for key in (*raw.LOCALES, "all"):
        if key not in loc:
            continue
        r = loc[key]
        ps = (
            f"{r['sessions'] / max(1, n_s):.3f}/{TRAIN_SESSIONS[key] / total_s:.3f}"
            if key != "all"
            else "1/1"
        )
        pp = f"{r['products'] / max(1, n_p):.3f}/{PRODUCTS[key] / total_p:.3f}" if key != "all" else "1/1"
        lines.append(
            f"{key:<6} {r['sessions']:>9} {ps:>13} {r['products']:>9} {pp:>13} {r['interactions']:>9} "
            f"{r['mean_length']:>5.2f} {r['length_p50']:>4.0f} {r['length_p90']:>4.0f} {r['length_p99']:>4.0f} "  # noqa: E501
            f"{r['length_max']:>5} {r['repeat_share']:>6.3f} {r['consecutive_duplicate_share']:>5.3f} "
            f"{r['top1pct_items_share']:>6.3f}"
        )
    lines.append(
        f"train next items missing from their locale's catalogue: {stats['train_targets_missing_from_catalogue']}"  # noqa: E501
    )
    lines.append(
        f"paper Table 2: {total_s:,} sessions, 15.3M interactions, 1,410,675 products; "
        f"this data is {n_s / total_s:.4f}x the sessions"
    )
    lines += ["", "Issue-13 checks:", f"{'statistic':<34} {'measured':>9} {'real':>30} {'target':>14}  ok"]
    for key, c in stats["checks"].items():
        lo, hi = c["target"]
        target = f"{lo:g}-{hi:g}" if hi is not None else f">= {lo:g}"
        value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
        lines.append(f"{key:<34} {value:>9} {c['real']:>30} {target:>14}  {'yes' if c['ok'] else 'NO'}")
    lines += [
        "",
        "Product overlap |row and col| / |row|:",
        "      " + " ".join(f"{b:>6}" for b in stats["overlap"]),
    ]
    for a, row in stats["overlap"].items():
        lines.append(
            f"{a:<6}" + " ".join(f"{row[b]:>6.3f}" if b in row else f"{'-':>6}" for b in stats["overlap"])
        )
    lines.append("real: ES/FR/IT overlap DE about 0.4, UK overlaps DE, JP little")
    return "\n".join(lines)


@raw.exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
