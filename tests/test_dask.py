"""engine: dask gives the polars path's answers (pytest -m dask; needs the distributed extra)."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

from candidates.covisit import CovisitConfig, neighbours  # noqa: E402
from pipeline.engine import DaskConfig, dask_client, scratch, session_ranges, write_session_partitions  # noqa: E402
from pipeline.engine import covisit as dask_covisit  # noqa: E402

pytestmark = pytest.mark.dask

DCFG = DaskConfig(workers=2, threads_per_worker=1, memory_limit="1GiB")


@pytest.fixture(scope="module")
def client():
    with dask_client(DCFG) as c:
        yield c


@pytest.mark.parametrize("cfg", [
    CovisitConfig(window=1, direction="forward", normalize="conditional", top_n=50),
    CovisitConfig(window=8, direction="forward", distance_weight=1.0, normalize="conditional", top_n=50),
    CovisitConfig(window=3, direction="both", normalize="cosine", top_n=20),
    CovisitConfig(window=2, direction="backward", normalize="lift", unique_per_session=False, top_n=10),
], ids=["fwd", "dist", "cosine", "lift"])
def test_covisit_neighbours_equal(tiny_world, client, cfg, tmp_path):
    history = pl.read_parquet(tiny_world.split / "valid" / "history.parquet")
    expected = neighbours(history, cfg)
    paths = write_session_partitions(history, session_ranges(history["session"], 4), tmp_path / "parts")
    bits = dask_covisit.item_bits_of(history["item"].max(), cfg.window)
    got = dask_covisit.neighbours(client, paths, cfg, bits)
    assert expected.height > 1000
    assert_frame_equal(got, expected)
