"""Where one chunk of the test path spends its time: fit and generate per candidate source, then
add per feature family, on a workspace that has run the graph up to ``split`` (and ``train_deep``).

    python benchmarks/chunk_profile.py --workspace /tmp/m2_scale/scale_1.0 --split test \
        --sessions 20000 --out benchmarks/results/chunk_profile.json
    python benchmarks/chunk_profile.py --workspace ... --split valid     # + each source's recall

It reads that workspace's params.yaml (sources, k, feature knobs) and data, fits every configured
source on the split's history (timed), generates one chunk of ``--sessions`` query sessions (timed
per source), builds the union, fits the feature families and adds them to the chunk (timed per
family). Figures are wall seconds of this process (load average beside them) plus rows per source;
the test path's per-chunk cost times the number of chunks is the candidates + features stages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--only", nargs="*", default=[], help="profile only these sources (default: all)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--union", type=Path, default=None, help="a saved chunk union: time the features only"
    )
    parser.add_argument("--save", type=Path, default=None, help="write the chunk's union and features here")
    args = parser.parse_args(argv)
    args.out, args.save, args.union = (p.resolve() if p else None for p in (args.out, args.save, args.union))
    os.chdir(args.workspace)  # params.yaml and the checkpoint globs are relative to the workspace
    sys.path.insert(0, str(REPO))
    from candidates.base import query_sessions
    from candidates.union import CandidatesConfig, build_sources, load_source_defaults, union, with_defaults
    from core import config
    from core.io import peak_rss_mib
    from features import registry
    from features.assemble import chunk_of, fit_families, session_chunks
    from features.base import FeaturesConfig, Inputs

    cfg = config.load_section(CandidatesConfig, "candidates")
    specs = [
        s
        for s in build_sources(with_defaults(cfg.sources, load_source_defaults()), config.seed())
        if (not args.only or s.name in args.only) and not args.union
    ]
    split = Path("data/split") / args.split
    history = pl.read_parquet(split / "history.parquet")
    queries = pl.read_parquet(split / "queries.parquet")
    items = pl.read_parquet("data/prepared/items.parquet")
    ids = queries.get_column("session").unique().sort().head(args.sessions)
    queries = queries.filter(pl.col("session").is_in(ids.implode()))
    events = (
        pl.scan_parquet("data/prepared/events.parquet")
        .join(queries.lazy().select("session"), on="session")
        .collect()
    )
    sessions = query_sessions(queries, events)
    record: dict = {
        "workspace": str(args.workspace),
        "label": args.label,
        "split": args.split,
        "history_events": history.height,
        "query_sessions": queries.height,
        "load_start": os.getloadavg()[0],
        "fit_s": {},
        "generate_s": {},
        "rows": {},
        "features_s": {},
    }
    for spec in specs:
        t0 = time.perf_counter()
        spec.source.fit(history, items)
        if callable(getattr(spec.source, "index", None)):  # deep sources build their faiss index lazily
            spec.source.index()
        record["fit_s"][spec.name] = round(time.perf_counter() - t0, 2)
        print(f"fit {spec.name}: {record['fit_s'][spec.name]} s", flush=True)
    cands = {}
    for spec in specs:
        t0 = time.perf_counter()
        cands[spec.name] = spec.source.generate(sessions, spec.k)
        record["generate_s"][spec.name] = round(time.perf_counter() - t0, 2)
        record["rows"][spec.name] = cands[spec.name].height
        print(
            f"generate {spec.name}: {record['generate_s'][spec.name]} s, {cands[spec.name].height} rows",
            flush=True,
        )
    if args.split == "valid":  # each source's recall of the held-out targets (hit anywhere in its k)
        targets = pl.read_parquet(split / "targets.parquet").join(queries.select("session"), on="session")
        record["recall"] = {
            name: round(c.join(targets, on=["session", "item"]).height / targets.height, 4)
            for name, c in cands.items()
        }
        print("recall", record["recall"], flush=True)
    t0 = time.perf_counter()
    frame = pl.read_parquet(args.union) if args.union else union(cands, cfg.max_per_session)
    record["union_s"], record["union_rows"] = round(time.perf_counter() - t0, 2), frame.height
    if args.split == "valid":
        record["recall"]["union"] = round(
            frame.join(targets, on=["session", "item"]).height / targets.height, 4
        )
    fcfg = config.load_section(FeaturesConfig, "features")
    inputs = Inputs(
        history=history,
        items=items,
        sessions=pl.read_parquet(
            "data/prepared/sessions.parquet", columns=["session", "dataset", "locale", "length"]
        ),
    )
    t0 = time.perf_counter()
    state = fit_families(inputs, fcfg)
    record["features_fit_s"] = round(time.perf_counter() - t0, 2)
    hist_q = history.join(queries.select("session"), on="session", how="semi")
    cands_frame, chunk = chunk_of(
        frame.lazy(), queries, hist_q, session_chunks(queries["session"], len(ids))[0]
    )
    out = cands_frame.sort("session", "item")
    for name, family_state in state.items():
        t0 = time.perf_counter()
        out = registry.family(name).add(out, chunk, family_state, fcfg)
        record["features_s"][name] = round(time.perf_counter() - t0, 2)
        print(f"features {name}: {record['features_s'][name]} s", flush=True)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(args.save / "union.parquet")
        out.write_parquet(args.save / "features.parquet")
    record["load_end"] = os.getloadavg()[0]
    record["peak_rss_mib"] = round(peak_rss_mib())
    print(json.dumps(record, indent=1))
    if args.out:
        runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
        runs.append(record)
        args.out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
