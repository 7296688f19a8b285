"""The predict stage's work on one feature part, piece by piece, in scale workspaces side by side.

    python benchmarks/predict_part.py --workspaces /tmp/m2_scale/scale_0.5 /tmp/m2_scale/scale_1

For each workspace it loads the trained ranker and times, on the same part index: reading the part,
casting the model's features to a float32 matrix, LightGBM's predict at the model's tree count,
and the per-session ranking (pipeline.ranking's own calls). Parts hold the same number of rows at
every scale, so equal seconds per row and tree mean the work grows linearly; the stage's own
seconds per part (its wall over its parts) are printed beside them. Writes
``benchmarks/results/predict_part.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scale import read_probe  # noqa: E402
from core.io import write_text  # noqa: E402
from features.parts import part_paths  # noqa: E402
from rankers import lgbm  # noqa: E402


def measure(workspace: Path, part: int) -> dict:
    (booster, _), = lgbm.load(workspace / "models" / "ranker").values()
    parts = part_paths(workspace / "data" / "features" / "test")
    features = booster.feature_name()
    out = {"parts": len(parts), "trees": booster.num_trees()}
    start = time.perf_counter()
    frame = pl.read_parquet(parts[part])
    out["read_s"] = time.perf_counter() - start
    start = time.perf_counter()
    matrix = frame.select(pl.col(features).cast(pl.Float32)).to_numpy()
    out["matrix_s"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = booster.predict(matrix)
    out["predict_s"] = time.perf_counter() - start
    start = time.perf_counter()
    lgbm.rank_by(frame.select("session", "item").with_columns(score=pl.Series(scores)), "score")
    out["rank_s"] = time.perf_counter() - start
    out["rows"] = frame.height
    out["ns_per_row_tree"] = out["predict_s"] / frame.height / out["trees"] * 1e9
    out["part_s"] = out["read_s"] + out["matrix_s"] + out["predict_s"] + out["rank_s"]
    predict = read_probe(workspace / "probe.jsonl").get("predict")  # the stage's last run there
    if predict:
        out["stage_s_per_part"] = predict["wall_s"] / len(parts)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=Path, nargs="+", required=True)
    parser.add_argument("--part", type=int, default=1, help="which part of each workspace")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "predict_part.json")
    args = parser.parse_args()
    record = {}
    for ws in args.workspaces:
        record[ws.name] = measure(ws, args.part)
        print(ws.name, json.dumps(record[ws.name]), flush=True)
    write_text(json.dumps(record, indent=2) + "\n", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
