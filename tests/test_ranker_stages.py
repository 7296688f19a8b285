"""features -> train_ranker -> predict, run as DVC runs them, on the tiny generated world.

The union is a stand-in built here from co-visitation (the candidates stage has its own tests):
two sources, so the source-ranked submissions are exercised too.
"""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import yaml

from core import submission
from features.base import covisit_pairs


def run(project, *args):
    result = subprocess.run([sys.executable, "-m", *args], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def stand_in_union(history: pl.DataFrame, queries: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Union-shaped candidates: co-visits of the last item (``cv``) and of any session item (``any``)."""
    pairs = covisit_pairs(history, 2).collect()
    events = history.join(queries.select("session"), on="session", how="semi")
    last = events.sort("session", "position").group_by("session").last().select("session", src="item")
    catalogue = items.filter("in_catalog").select("item", "locale")

    def source(src: pl.DataFrame, name: str) -> pl.DataFrame:
        return (src.join(pairs, on="src").group_by("session", pl.col("dst").alias("item"))
                .agg(score=pl.col("n").sum())
                .join(queries.select("session", "locale"), on="session")
                .join(catalogue, on=["item", "locale"])
                .join(events.select("session", "item"), on=["session", "item"], how="anti")
                .sort(["session", "score", "item"], descending=[False, True, False])
                .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session"))
                .filter(pl.col("rank") <= 60)
                .select("session", "item", pl.col("score").cast(pl.Float32).alias(f"cand_{name}_score"),
                        pl.col("rank").alias(f"cand_{name}_rank")))

    cv = source(last, "cv")
    anywhere = source(events.select("session", src="item").unique(), "any")
    return (cv.join(anywhere, on=["session", "item"], how="full", coalesce=True)
            .with_columns(n_sources=pl.sum_horizontal(pl.col("^cand_.*_score$").is_not_null()).cast(pl.Int8))
            .sort("session", "item"))


def test_ranker_stages_end_to_end(tiny_world, project_dir):
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    params["features"]["chunk_sessions"] = 150  # several parts: the chunked path
    params["features"]["deep_models"] = {}       # no checkpoints here; tests/test_deep.py covers family deep
    params["ranker"].update(num_boost_round=30, early_stopping_rounds=10, min_data_in_leaf=20, num_threads=1)
    (project_dir / "params.yaml").write_text(yaml.safe_dump(params))
    items = pl.read_parquet(tiny_world.prepared / "items.parquet")
    for split in ("valid", "test"):
        history = pl.read_parquet(tiny_world.split / split / "history.parquet")
        queries = pl.read_parquet(tiny_world.split / split / "queries.parquet")
        (project_dir / "union").mkdir(exist_ok=True)
        stand_in_union(history, queries, items).write_parquet(project_dir / "union" / f"{split}.parquet")
        run(project_dir, "pipeline.features_stage", "--split", split, "--prepared", str(tiny_world.prepared),
            "--splitdir", str(tiny_world.split), "--union", f"union/{split}.parquet", "--out",
            f"features/{split}")
    summary = json.loads((project_dir / "features" / "test" / "summary.json").read_text())
    parts = list((project_dir / "features" / "test").glob("part-*.parquet"))
    assert summary["parts"] > 1 and len(parts) == summary["parts"]

    run(project_dir, "pipeline.train_ranker", "--features", "features/valid", "--splitdir",
        str(tiny_world.split),
        "--prepared", str(tiny_world.prepared), "--model", "models/ranker", "--metrics", "ranker.json",
        "--importance", "importance.csv")
    metrics = json.loads((project_dir / "ranker.json").read_text())
    assert 0.0 < metrics["mrr@100"] <= 1.0 and {"task1", "task2"} <= set(metrics["eval"]["ranker"])
    assert {"source_cv", "source_any"} <= set(metrics["eval"])
    assert pl.read_csv(project_dir / "importance.csv").height == len(summary["features"])

    catalogue = submission.load_catalogue(tiny_world.raw)
    for method in ("ranker", "source_cv"):
        how = ["--model", "models/ranker"] if method == "ranker" else ["--source", "cv"]
        run(project_dir, "pipeline.predict", *how, "--features", "features/test", "--splitdir",
            str(tiny_world.split),
            "--prepared", str(tiny_world.prepared), "--raw", str(tiny_world.raw), "--out",
            f"submissions/{method}")
        for task in (1, 2):
            for phase in (1, 2):
                path = project_dir / "submissions" / method / f"task{task}_phase{phase}.parquet"
                frame = submission.read(path)
                submission.validate(frame, task, submission.load_test_locales(tiny_world.raw, task, phase),
                                    catalogue)

    # every source in one pass: the same files as one source at a time
    run(project_dir, "pipeline.predict", "--sources", "--features", "features/test", "--splitdir",
        str(tiny_world.split), "--prepared", str(tiny_world.prepared), "--raw", str(tiny_world.raw), "--out",
        "submissions/sources")
    written = {p.name for p in (project_dir / "submissions" / "sources").iterdir()}
    assert written >= {"source_cv", "source_any"}
    for task in (1, 2):
        for phase in (1, 2):
            name = f"task{task}_phase{phase}.parquet"
            assert submission.read(project_dir / "submissions" / "sources" / "source_cv" / name).equals(
                submission.read(project_dir / "submissions" / "source_cv" / name))
