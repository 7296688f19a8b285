"""Stage ``recall``: how often the target is among the candidates, per source and for the union.

    python -m pipeline.recall --union data/candidates/valid/union.parquet \
        --splitdir data/split/valid --metrics metrics/recall.json --plot plots/recall.csv

On the valid split (targets known), for every source named by the union's ``cand_<name>_rank``
columns (so nothing here lists sources), overall and per locale:
  - ``recall@K`` for K in 20, 50, 100, 200: the target has rank <= K in that source (a source
    capped at k < K reports recall@k there);
  - ``marginal``: union recall minus the recall of the union without that source, i.e. the share of
    targets that only that source found;
  - the union's ``recall`` (target anywhere in the union), its ``recall@K`` (target within the
    top K of at least one source) and ``candidates_per_session``.
The plot file is long-form ``source, k, recall`` (overall), drawn one line per source.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl

from candidates.columns import rank_col, source_names
from core import schemas
from core.errors import exit_on_error
from core.io import setup_logging, write_json, write_text

log = logging.getLogger(__name__)

KS = (20, 50, 100, 200)


def target_hits(union: pl.DataFrame, targets: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """One row per evaluated session: session, locale, in_union:Boolean, n_sources, cand_<name>_rank."""
    names = source_names(union.columns)
    ranks = [rank_col(n) for n in names]
    return (targets.join(queries.select("session", "locale"), on="session")
            .join(union.select("session", "item", "n_sources", *ranks), on=["session", "item"], how="left")
            .with_columns(in_union=pl.col("n_sources").is_not_null()))


def _summary(hits: pl.DataFrame, names: list[str], per_session: pl.DataFrame, ks: tuple[int, ...]) -> dict:
    ranks = {n: pl.col(rank_col(n)) for n in names}
    exprs = [pl.len().alias("n"), pl.col("in_union").mean().alias("union/recall")]
    for k in ks:
        exprs.append(pl.any_horizontal([(r <= k).fill_null(False) for r in ranks.values()] or [pl.lit(False)])
                     .mean().alias(f"union/recall@{k}"))
    for n, r in ranks.items():
        exprs += [(r <= k).fill_null(False).mean().alias(f"{n}/recall@{k}") for k in ks]
        # Found by this source and by no other: what the union loses without it.
        alone = (r.is_not_null() & (pl.col("n_sources") == 1)).fill_null(False)
        exprs.append(alone.mean().alias(f"{n}/marginal"))
    row = hits.select(exprs).row(0, named=True)
    out: dict = {"n": row.pop("n"), "union": {}, "sources": {n: {} for n in names}}
    out["union"]["candidates_per_session"] = float(per_session.get_column("len").mean() or 0.0)
    for key, value in row.items():
        who, metric = key.split("/")
        target = out["union"] if who == "union" else out["sources"][who]
        target[metric] = round(float(value or 0.0), 6)
    return out


def recall_report(union: pl.DataFrame, targets: pl.DataFrame, queries: pl.DataFrame,
                  ks: tuple[int, ...] = KS) -> tuple[dict, pl.DataFrame]:
    """The metrics dict (overall and by_locale) and the plot frame source:String, k:Int32, recall:Float64."""
    names = source_names(union.columns)
    hits = target_hits(union, targets, queries)
    sizes = (queries.select("session", "locale").join(targets.select("session"), on="session")
             .join(union.group_by("session").len(), on="session", how="left").fill_null(0))
    report = {"overall": _summary(hits, names, sizes, ks), "by_locale": {}}
    # The deepest rank each source proposed: its recall@K stops changing there (the report's curves end).
    for n in names:
        report["overall"]["sources"][n]["max_rank"] = int(union.get_column(rank_col(n)).max() or 0)
    for (locale,), group in hits.sort("locale").group_by("locale", maintain_order=True):
        report["by_locale"][locale] = _summary(group, names, sizes.filter(pl.col("locale") == locale), ks)
    overall = report["overall"]
    plot = pl.DataFrame(
        [(name, k, overall["sources"][name][f"recall@{k}"]) for name in names for k in ks]
        + [("union", k, overall["union"][f"recall@{k}"]) for k in ks],
        schema={"source": pl.String, "k": pl.Int32, "recall": pl.Float64}, orient="row")
    return report, plot


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--union", type=Path, required=True)
    parser.add_argument("--splitdir", type=Path, required=True, help="data/split/valid")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plot", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    union = pl.read_parquet(args.union)
    targets = schemas.check(pl.read_parquet(args.splitdir / "targets.parquet"), schemas.TARGETS, "targets")
    queries = schemas.check(pl.read_parquet(args.splitdir / "queries.parquet"), schemas.QUERIES, "queries")
    report, plot = recall_report(union, targets, queries)
    o = report["overall"]
    log.info("union recall %.4f (%.1f candidates/session) on %d sessions", o["union"]["recall"],
             o["union"]["candidates_per_session"], o["n"])
    for name, m in o["sources"].items():
        log.info("%-20s recall@100 %.4f  marginal %.4f", name, m["recall@100"], m["marginal"])
    write_json(report, args.metrics)
    write_text(plot.write_csv(), args.plot)


if __name__ == "__main__":
    main()
