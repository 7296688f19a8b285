"""Stage ``prepare``: parse and validate the raw CSVs into typed parquet (schemas in core.schemas).

    python -m pipeline.prepare --raw data/raw --out data/prepared --report metrics/prepare.json

Ids seen in sessions but missing from their locale's catalogue get an item index with
``in_catalog = False`` (they still carry transitions but can never be predicted); they are counted
in the report, as are empty sessions and every skipped record.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core import raw
from core.config import load_section
from core.dataconfig import TEST_DATASETS, DataConfig
from core.io import setup_logging, timed, write_json, write_parquet

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    items: pl.DataFrame
    sessions: pl.DataFrame
    events: pl.DataFrame
    targets: pl.DataFrame
    report: dict


def build_items(products: pl.DataFrame, seen: pl.DataFrame) -> pl.DataFrame:
    """Catalogue items (file order) then (id, locale) pairs seen only in sessions (sorted).

    ``seen``: id, locale of every id used by a session. Returns the items schema.
    """
    catalogue = products.with_columns(in_catalog=pl.lit(True))
    extra = (
        seen.unique()
        .join(products.select("id", "locale"), on=["id", "locale"], how="anti")
        .sort("locale", "id")
        .with_columns(in_catalog=pl.lit(False))
    )
    items = pl.concat([catalogue, extra], how="diagonal_relaxed").with_row_index("item")
    asins = items.select(pl.col("id").unique().sort()).with_row_index("product")
    return (
        items.join(asins, on="id", how="left", maintain_order="left")
        .with_columns(pl.col("item").cast(pl.Int32), pl.col("product").cast(pl.Int32))
        .select(
            "item",
            "id",
            "locale",
            "product",
            "in_catalog",
            *[c for c in raw.PRODUCT_COLUMNS if c not in ("id", "locale")],
        )
    )


def prepare(products: pl.DataFrame, train: pl.DataFrame, tests: dict[str, pl.DataFrame]) -> Prepared:
    """Turn parsed raw frames into the prepared tables.

    Args:
        products: read_products output. train: read_sessions(with_target=True) output.
        tests: dataset name ("task1_phase1", ...) -> read_sessions(with_target=False) output.
    """
    frames = [train.drop("next_item").with_columns(dataset=pl.lit("train"))]
    frames += [frame.with_columns(dataset=pl.lit(name)) for name, frame in tests.items()]
    sessions = (
        pl.concat(frames, how="vertical_relaxed")
        .with_row_index("session")
        .with_columns(
            pl.col("session").cast(pl.Int32),
            pl.col("row").cast(pl.Int32),
            length=pl.col("prev_items").list.len().cast(pl.Int32),
        )
    )
    long = (
        sessions.select("session", "locale", pl.col("prev_items").alias("id"))
        .with_columns(position=pl.int_ranges(pl.col("id").list.len(), dtype=pl.Int32))
        .explode("id", "position", empty_as_null=True)
        .drop_nulls("id")
    )
    target_ids = train.select(pl.col("next_item").alias("id"), "locale").with_columns(
        session=sessions.filter(pl.col("dataset") == "train")["session"]
    )
    items = build_items(products, pl.concat([long.select("id", "locale"), target_ids.select("id", "locale")]))
    key = items.select("id", "locale", "item", "in_catalog")
    events = long.join(key, on=["id", "locale"], how="left", maintain_order="left").select(
        "session", "position", "item", "in_catalog"
    )
    targets = target_ids.join(key, on=["id", "locale"], how="left", maintain_order="left")

    report = {
        "items": items.height,
        "catalogue_items": int(items["in_catalog"].sum()),
        "products_shared_across_locales": int(
            items.filter(pl.col("in_catalog")).group_by("id").len().filter(pl.col("len") > 1).height
        ),
        "datasets": {},
    }
    for name, group in sessions.group_by("dataset", maintain_order=True):
        ids = group["session"]
        ev = events.filter(pl.col("session").is_in(ids.implode()))
        entry = {
            "sessions": group.height,
            "events": ev.height,
            "empty_sessions": int((group["length"] == 0).sum()),
            "prev_items_missing_from_catalogue": int((~ev["in_catalog"]).sum()),
        }
        if name[0] == "train":
            entry["next_items_missing_from_catalogue"] = int((~targets["in_catalog"]).sum())
        report["datasets"][name[0]] = entry
    for name, entry in report["datasets"].items():
        for what, count in entry.items():
            if "missing" in what or "empty" in what:
                if count:
                    log.warning("%s: %d %s (kept, reported)", name, count, what.replace("_", " "))
    return Prepared(
        items=items,
        sessions=sessions.select("session", "dataset", "row", "locale", "length"),
        events=events.drop("in_catalog"),
        targets=targets.select("session", "item"),
        report=report,
    )


def read_raw(
    raw_dir: Path, on_error: str, test_files: tuple[str, ...] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, pl.DataFrame], dict]:
    """Read the raw files. ``test_files`` (data.test_files) names the test datasets that must exist:
    a listed file that is absent raises RawDataError naming it, an unlisted one is left out (logged).
    None: every test file present is read, the absent ones are reported, not invented."""
    products, products_report = raw.read_products(raw_dir / "products_train.csv", on_error)
    for column in ("title", "price", "brand", "color"):
        if products.height and products_report.notes[f"empty_{column}"] == products.height:
            log.warning(
                "products_train.csv: no product has a %s (%d empty): the sources and features that "
                "need it give missing values",
                column,
                products.height,
            )
    train, train_report = raw.read_sessions(
        raw_dir / "sessions_train.csv", with_target=True, on_error=on_error
    )
    reports = {"products_train.csv": products_report.as_dict(), "sessions_train.csv": train_report.as_dict()}
    tests = {}
    for name in TEST_DATASETS:
        path = raw_dir / raw.test_file(int(name[4]), int(name[-1]))
        if test_files is not None and name not in test_files:
            if path.exists():
                log.warning("%s: not in data.test_files, left out", path)
            reports[path.name] = "not in data.test_files"
            continue
        if not path.exists():
            if test_files is not None:
                raise raw.RawDataError(
                    path,
                    None,
                    None,
                    f"file not found (data.test_files lists {name}; "
                    f"drop it from data.test_files if this test file does not exist)",
                )
            log.warning("%s: not found, dataset %s left out", path, name)
            reports[path.name] = "missing"
            continue
        tests[name], report = raw.read_sessions(path, with_target=False)
        reports[path.name] = report.as_dict()
    return products, train, tests, reports


@raw.exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    cfg = load_section(DataConfig, "data")
    with timed("prepare"):
        products, train, tests, file_reports = read_raw(args.raw, cfg.on_error, cfg.test_files)
        prepared = prepare(products, train, tests)
        for name in ("items", "sessions", "events", "targets"):
            write_parquet(getattr(prepared, name), args.out / f"{name}.parquet")
    write_json({"files": file_reports, **prepared.report}, args.report)
    log.info(
        "prepared %d sessions, %d events, %d items",
        prepared.sessions.height,
        prepared.events.height,
        prepared.items.height,
    )


if __name__ == "__main__":
    main()
