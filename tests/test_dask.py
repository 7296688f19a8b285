"""engine: dask gives the polars path's answers (pytest -m dask; needs the distributed extra)."""

from __future__ import annotations

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

from candidates.covisit import CovisitConfig, neighbours  # noqa: E402
from pipeline.engine import DaskConfig, dask_client, scratch  # noqa: E402
from pipeline.engine import covisit as dask_covisit  # noqa: E402
from tests import _params  # noqa: E402
from tests._params import section  # noqa: E402


def covisit_cfg(**knobs) -> CovisitConfig:
    """params.yaml ``source_defaults.covisit`` with ``knobs`` replaced."""
    return _params.source_config("covisit", **knobs)


pytestmark = pytest.mark.dask

N_WORKERS = 2


@pytest.fixture(scope="module")
def cluster_address(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on loopback: dask.scheduler_address's path."""
    from pipeline.engine import cluster

    address, procs = cluster.start(tmp_path_factory.mktemp("cluster"), N_WORKERS, "1GiB")
    try:
        yield address
    finally:
        cluster.stop(procs)


@pytest.fixture(scope="module")
def dcfg(cluster_address) -> DaskConfig:
    return DaskConfig(scheduler_address=cluster_address, workers=N_WORKERS, threads_per_worker=1,
                      memory_limit="1GiB", partitions_per_worker=2, scratch_dir="")


@pytest.fixture(scope="module")
def client(dcfg):
    with dask_client(dcfg) as c:
        assert len(c.scheduler_info()["workers"]) == N_WORKERS
        yield c


def _covisit_paths(world) -> dask_covisit.Paths:
    return dask_covisit.Paths(history=str(world.split / "valid" / "history.parquet"),
                              items=str(world.prepared / "items.parquet"),
                              events=str(world.prepared / "events.parquet"),
                              queries=str(world.split / "valid" / "queries.parquet"))


@pytest.mark.parametrize("cfg", [
    covisit_cfg(window=1, direction="forward", normalize="conditional", top_n=50),
    covisit_cfg(window=8, direction="forward", distance_weight=1.0, normalize="conditional", top_n=50),
    covisit_cfg(window=3, direction="both", normalize="cosine", top_n=20),
    covisit_cfg(window=2, direction="backward", normalize="lift", unique_per_session=False, top_n=10),
    covisit_cfg(window=3, direction="both", normalize="conditional", key="product", top_n=20),
    covisit_cfg(window=2, direction="both", normalize="conditional", hops=2, hop_below=30, top_n=30),
], ids=["fwd", "dist", "cosine", "lift", "product", "hops"])
def test_covisit_neighbours_equal(tiny_world, client, dcfg, cfg):
    from candidates.covisit import Covisit

    history = pl.read_parquet(tiny_world.split / "valid" / "history.parquet")
    keyed = Covisit(cfg)
    keyed._items = tiny_world.read("items")
    expected = neighbours(keyed._to_key(history), cfg)
    with scratch(dcfg, "test-covisit") as root:
        got = dask_covisit.neighbours(client, _covisit_paths(tiny_world), cfg, 4, root)
    assert expected.height > 1000
    assert_frame_equal(got, expected)


@pytest.mark.parametrize("scheme", ["path", "file"])
def test_scratch_urls_local_cluster(tiny_world, tmp_path, scheme):
    """dask.scratch_dir as a local path and as a ``file://`` URL (any fsspec URL every worker reads), on
    the LocalCluster path (scheduler_address "")."""
    base = tmp_path / "scratch"
    local = DaskConfig(scheduler_address="", workers=N_WORKERS, threads_per_worker=1, memory_limit="1GiB",
                       partitions_per_worker=1, scratch_dir=str(base) if scheme == "path" else base.as_uri())
    cfg = covisit_cfg(window=1, direction="forward", normalize="conditional", top_n=50)
    history = pl.read_parquet(tiny_world.split / "valid" / "history.parquet")
    with dask_client(local) as c, scratch(local, "test-url") as root:
        assert root.startswith(local.scratch_dir)
        got = dask_covisit.neighbours(c, _covisit_paths(tiny_world), cfg, 3, root)
        assert list(base.glob("m2-test-url-*/nbrs-s/b*.parquet"))
    assert not list(base.glob("m2-test-url-*"))  # removed afterwards
    assert_frame_equal(got, neighbours(history, cfg))


SOURCES = {
    "covisit_fwd": {"type": "covisit", "k": 25, "window": 1, "direction": "forward", "top_n": 50},
    "covisit_dist": {"type": "covisit", "k": 45, "window": 8, "direction": "forward", "distance_weight": 1.0,
                     "top_n": 50},
    "covisit_product": {"type": "covisit", "k": 45, "window": 3, "direction": "both", "key": "product",
                        "top_n": 50},
    "prefix": {"type": "attribute", "k": 15, "key": "prefix", "prefix_chars": 5, "items_per_key": 100},
    "popularity": {"type": "popularity", "k": 5},
}
CHUNK = 400


def _split_inputs(world, split: str):
    from candidates.base import query_sessions

    d = world.split / split
    history, queries = pl.read_parquet(d / "history.parquet"), pl.read_parquet(d / "queries.parquet")
    items = world.read("items")
    events = world.read("events").join(queries.select("session"), on="session")
    return history, queries, items, query_sessions(queries, events)


@pytest.fixture(scope="module")
def unions(tiny_world, client, dcfg):
    """valid split: (polars union, dask union), tiny_world's params-like sources, chunks of CHUNK sessions."""
    from candidates.union import fit_sources, generate_union
    from pipeline.engine.union import union_parts

    history, _, items, sessions = _split_inputs(tiny_world, "valid")
    specs = _params.sources(SOURCES, 7)
    fit_sources(specs, history, items)
    expected = pl.concat(generate_union(specs, sessions, CHUNK, 120))
    with scratch(dcfg, "test-union") as root:
        got = pl.concat(union_parts(client, _covisit_paths(tiny_world), _params.sources(SOURCES, 7), CHUNK,
                                    120, root, 4))
    return expected, got


def test_union_equal(unions):
    expected, got = unions
    assert expected["session"].n_unique() > 3 * CHUNK  # several partitions, several chunks each
    assert_frame_equal(got, expected)


@pytest.fixture(scope="module")
def valid_features(tiny_world, client, dcfg, unions, tmp_path_factory):
    """valid split features: (polars state, polars chunk frames, dask state, dask parts dir, dask rows,
    columns). The dask state is read back from the workers' buckets and futures (tests only: the stage
    never gathers it)."""
    from features.assemble import assemble_chunks, fit_families
    from features.base import FeaturesConfig, Inputs
    from pipeline.engine import features as dask_features

    tmp = tmp_path_factory.mktemp("features")
    history, queries, items, _ = _split_inputs(tiny_world, "valid")
    cfg = section(FeaturesConfig, "features", chunk_sessions=CHUNK, deep_models={})
    inputs = Inputs(history=history, items=items,
                    sessions=tiny_world.read("sessions").select("session", "dataset", "locale", "length"))
    union_path = tmp / "union.parquet"
    unions[0].write_parquet(union_path)
    events = history.join(queries.select("session"), on="session", how="semi")
    state = fit_families(inputs, cfg)
    expected = list(assemble_chunks(pl.scan_parquet(union_path), queries, events, state, cfg))
    paths = dask_features.Paths(history=str(tiny_world.split / "valid" / "history.parquet"),
                                queries=str(tiny_world.split / "valid" / "queries.parquet"),
                                items=str(tiny_world.prepared / "items.parquet"),
                                sessions=str(tiny_world.prepared / "sessions.parquet"), union=str(union_path))
    stats: dict = {}
    with scratch(dcfg, "test-features") as root:
        rows, columns, _ = dask_features.run(client, paths, cfg, tmp / "parts", root, 4, stats)
        got_state = dask_features.read_state(root, stats["small"])
    return state, expected, got_state, tmp / "parts", rows, columns


def test_features_equal(valid_features):
    state, expected, got_state, parts_dir, rows, columns = valid_features
    for family, table in (("session_item", "covisit"), ("session_item", "transitions"),
                          ("cross_locale", "per_locale"), ("cross_locale", "total"),
                          ("cross_locale", "transitions"),
                          ("cross_locale", "item"), ("session_item", "attrs")):
        a, b = getattr(state[family], table), getattr(got_state[family], table)
        keys = [c for c in a.columns if a.schema[c] != pl.Float32]
        assert_frame_equal(b.select(a.columns).sort(keys), a.sort(keys))
    assert_frame_equal(got_state["item"], state["item"])
    parts = sorted(parts_dir.glob("part-*.parquet"))
    assert len(parts) == len(expected) > 3
    for part, frame in zip(parts, expected, strict=True):
        assert_frame_equal(pl.read_parquet(part), frame)
    assert rows == sum(f.height for f in expected) and columns == expected[0].columns


def test_ranker_mrr_close(tiny_world, client, dcfg, valid_features, tmp_path):
    """DaskLGBMRanker (2 workers, data-parallel, early stopping by blocks) against lgb.train: eval-fold
    MRR@100."""
    from pipeline import train_ranker
    from pipeline.engine import ranker as dask_ranker
    from rankers import lgbm

    parts = sorted(valid_features[3].glob("part-*.parquet"))
    split = tiny_world.split / "valid"
    queries, targets = pl.read_parquet(split / "queries.parquet"), pl.read_parquet(split / "targets.parquet")
    # The tiny world's 365 eval sessions make MRR noisy; 30% negatives (not the default's 15%) give both
    # trainers enough rows that the comparison is about the engine, not the sample.
    cfg = section(lgbm.RankerConfig, "ranker", num_threads=1,
                  locale_weights={"ES": 3.0, "FR": 3.0, "IT": 3.0},
                  max_train_sessions=0, neg_sample_rate=0.3)
    folds = lgbm.assign_folds(queries["session"], cfg.eval_fraction, 7)
    train_rows, stop_rows = train_ranker.load_training(parts, targets, folds, cfg, 7)
    eval_queries = queries.join(folds.filter(pl.col("is_eval")), on="session", how="semi")
    history, items = pl.read_parquet(split / "history.parquet"), tiny_world.read("items")
    features = [c for c in train_rows.columns if c.startswith(("cand_", "s_", "i_", "si_"))]

    mrr = {}
    for name, booster in (("polars", train_ranker.fit(train_rows, stop_rows, cfg, 7)["model"]),
                          ("dask", dask_ranker.train_on(client, train_rows, stop_rows, features, cfg, 7,
                                                        dcfg))):
        lgbm.save({"model": booster}, tmp_path / name, cfg, 7)
        report = train_ranker.evaluate(parts, lgbm.load(tmp_path / name), eval_queries, targets, history,
                                       items)
        mrr[name] = report["ranker"]["all"]["mrr@100"]
        assert booster.best_iteration > 0
    print(f"eval-fold MRR@100 over {eval_queries.height} sessions: {mrr}")
    assert abs(mrr["dask"] - mrr["polars"]) <= 0.005, mrr


STAGE_SOURCE_TYPES = ("covisit", "attribute", "popularity", "als")
ROW_GROUP_ROWS_SMALL = 400


@pytest.fixture(scope="module")
def stage_runs(tiny_world, cluster_address, tmp_path_factory):
    """The stage mains candidates -> features -> train_ranker -> predict as DVC runs them (in process), once
    with engine: polars and once with engine: dask on the module's cluster (scheduler_address: the
    existing-cluster path). params.yaml's sources of STAGE_SOURCE_TYPES (no deep checkpoints here; the slow
    text and sknn sources left out to keep the suite under a minute)."""
    import importlib
    import sys

    import yaml

    from tests.conftest import REPO

    def run(module: str, *argv) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(project)
            mp.setattr(sys, "argv", [module, *map(str, argv)])
            importlib.import_module(module).main()

    w = tiny_world
    projects = {}
    for engine in ("polars", "dask"):
        project = tmp_path_factory.mktemp(f"stages-{engine}")
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["engine"] = engine
        params["dask"]["scheduler_address"] = cluster_address
        sources = params["candidates"]["sources"]  # the covisit family, and one fitted model that must pickle
        params["candidates"]["sources"] = {k: v for k, v in sources.items()
                                           if v["type"] in STAGE_SOURCE_TYPES}
        params["candidates"]["sources"]["als"].update(iterations=3, max_fit_sessions=2000)  # a drawn sample
        params["candidates"]["sources"]["popularity"]["recent_fraction"] = 0.5  # a cutoff the workers find
        params["candidates"]["chunk_size"] = 500
        params["features"].update(chunk_sessions=500, deep_models={})
        params["ranker"]["neg_sample_rate"] = 0.3  # as test_ranker_mrr_close: enough rows for a tiny world
        params["ranker"].update(num_threads=1)
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        for split in ("valid", "test"):
            run("pipeline.candidate_gen", "--split", split, "--prepared", w.prepared, "--splitdir", w.split,
                "--out", project / f"union-{split}.parquet")
            run("pipeline.features_stage", "--split", split, "--prepared", w.prepared, "--splitdir", w.split,
                "--union", project / f"union-{split}.parquet", "--out", project / f"features-{split}")
        run("pipeline.train_ranker", "--features", project / "features-valid", "--splitdir", w.split,
            "--prepared", w.prepared, "--model", project / "model", "--metrics", project / "ranker.json",
            "--importance", project / "importance.csv")
        run("pipeline.predict", "--model", project / "model", "--features", project / "features-test",
            "--splitdir", w.split, "--prepared", w.prepared, "--raw", w.raw, "--out", project / "submissions")
        projects[engine] = project
    # the polars model's submissions scored by predict on the cluster: the dask predict path alone
    params["engine"] = "dask"
    project = projects["polars"]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run("pipeline.predict", "--model", project / "model", "--features", project / "features-test",
        "--splitdir", w.split, "--prepared", w.prepared, "--raw", w.raw, "--out",
        project / "submissions-dask")
    # both engines again with row groups of ROW_GROUP_ROWS_SMALL rows: the Dask path's pieces (parts of 500
    # sessions) straddle them
    from core import submission

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(submission, "ROW_GROUP_ROWS", ROW_GROUP_ROWS_SMALL)
        for engine in ("polars", "dask"):
            params["engine"] = engine
            (project / "params.yaml").write_text(yaml.safe_dump(params))
            run("pipeline.predict", "--model", project / "model", "--features", project / "features-test",
                "--splitdir", w.split, "--prepared", w.prepared, "--raw", w.raw, "--out",
                project / f"submissions-{engine}-small-groups")
    return projects


def test_stages_same_outputs(stage_runs):
    """Same union and feature parts from the stage mains, byte for byte; the same submissions from one
    model, byte for byte, in one row group and in several (the Dask path streams its parts' pieces into
    them)."""
    polars_dir, dask_dir = stage_runs["polars"], stage_runs["dask"]
    for split in ("valid", "test"):
        name = f"union-{split}.parquet"
        assert pl.read_parquet(polars_dir / name).height > 1000
        assert (dask_dir / name).read_bytes() == (polars_dir / name).read_bytes(), name
        parts = sorted(p.name for p in (polars_dir / f"features-{split}").glob("part-*.parquet"))
        assert len(parts) > 1
        assert parts == sorted(p.name for p in (dask_dir / f"features-{split}").glob("part-*.parquet"))
        for part in parts:
            assert_frame_equal(pl.read_parquet(dask_dir / f"features-{split}" / part),
                               pl.read_parquet(polars_dir / f"features-{split}" / part))
    written = sorted(p.name for p in (polars_dir / "submissions").glob("*.parquet"))
    assert written
    for name in written:
        dask_bytes = (polars_dir / "submissions-dask" / name).read_bytes()
        assert dask_bytes == (polars_dir / "submissions" / name).read_bytes()
        small = polars_dir / "submissions-polars-small-groups" / name
        assert (polars_dir / "submissions-dask-small-groups" / name).read_bytes() == small.read_bytes()
        rows = pq.ParquetFile(small).metadata.num_rows
        assert pq.ParquetFile(small).metadata.num_row_groups == -(-rows // ROW_GROUP_ROWS_SMALL)
        assert_frame_equal(pl.read_parquet(small), pl.read_parquet(polars_dir / "submissions" / name))
    assert max(pq.ParquetFile(polars_dir / "submissions" / n).metadata.num_rows for n in written) > 1000


def test_stages_ranker_mrr_close(stage_runs):
    import json

    mrr = {e: json.loads((d / "ranker.json").read_text())["mrr@100"] for e, d in stage_runs.items()}
    print(f"train_ranker eval-fold MRR@100: {mrr}")
    assert abs(mrr["dask"] - mrr["polars"]) <= 0.005, mrr
    assert sorted(p.name for p in (stage_runs["dask"] / "submissions").glob("*.parquet")) == sorted(
        p.name for p in (stage_runs["polars"] / "submissions").glob("*.parquet"))
