"""Candidate sources: one contract suite over every source, leakage, union and recall report."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from candidates.base import CandidateSource
from candidates.covisit import pair_weights
from candidates.registry import SOURCES
from candidates.union import build_sources, union, with_defaults
from core import schemas
from core.config import ParamsError
from pipeline.recall import recall_report
from tests import _params
from tests.test_deep import TINY as DEEP_TINY

N_PER_LOCALE = 30


def tiny_items() -> pl.DataFrame:
    """DE items 0..29 (products 0..29), ES items 30..49 (products 0..19: the same ASINs), and one
    DE item (50) seen only in sessions, not in the catalogue."""
    de = pl.DataFrame({"item": range(N_PER_LOCALE), "locale": "DE", "product": range(N_PER_LOCALE)})
    es = pl.DataFrame({"item": range(N_PER_LOCALE, N_PER_LOCALE + 20), "locale": "ES", "product": range(20)})
    extra = pl.DataFrame({"item": [50], "locale": "DE", "product": [40]})
    return (pl.concat([de, es, extra])
            .with_columns(pl.col("item").cast(pl.Int32), pl.col("product").cast(pl.Int32),
                          in_catalog=pl.col("item") != 50, id=pl.format("A{}", "product"),
                          # neighbouring items share a title word, as product lines do
                          title=pl.format("w{} w{} common", pl.col("product") // 3, pl.col("product") // 4),
                          price=pl.lit(1.0)))


def tiny_history(n_sessions: int = 300, seed: int = 0) -> pl.DataFrame:
    """Sessions walking forward through a locale's items (i -> i+1 or i+2), some repeats."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        base, size = (0, N_PER_LOCALE) if s % 5 else (N_PER_LOCALE, 20)
        item = int(rng.integers(size))
        for pos in range(int(rng.integers(2, 7))):
            rows.append((s, pos, base + item))
            item = (item + int(rng.choice([0, 1, 1, 2]))) % size
    return pl.DataFrame(rows, schema={"session": pl.Int32, "position": pl.Int32, "item": pl.Int32},
                        orient="row")


def tiny_queries() -> pl.DataFrame:
    """Query sessions 1000.. in long form: DE, ES, one holding the non-catalogue item, one empty."""
    rows = [(1000, "DE", 0, 3), (1000, "DE", 1, 4), (1000, "DE", 2, 5),
            (1001, "ES", 0, 35), (1001, "ES", 1, 36),
            (1002, "DE", 0, 50), (1002, "DE", 1, 10),
            (1003, "DE", None, None)]
    return pl.DataFrame(rows, schema={"session": pl.Int32, "locale": pl.String, "position": pl.Int32,
                                      "item": pl.Int32}, orient="row")


class SourceContract:
    """Mixin: every candidate source honours base.py's contract. Subclasses set type_ and cfg."""

    type_: str
    cfg: dict = {}
    k = 8

    def make(self, seed: int = 0) -> CandidateSource:
        return _params.source(self.type_, seed, **self.cfg)

    @pytest.fixture(scope="class")
    @classmethod
    def out(cls) -> pl.DataFrame:
        queries = tiny_queries()
        history = pl.concat([tiny_history(), queries.drop("locale").drop_nulls()])
        return cls.make(cls).fit(history, tiny_items()).generate(queries, cls.k)

    def test_schema(self, out):
        schemas.check(out, schemas.CANDIDATES, self.type_)
        assert out.columns == list(schemas.CANDIDATES)

    def test_finds_candidates(self, out):
        assert out.filter(pl.col("session") == 1000).height > 0
        assert out.filter(pl.col("session") == 1001).height > 0

    def test_at_most_k_ranked(self, out):
        per = out.group_by("session").agg(pl.len(), pl.col("rank").sort(), pl.col("score"))
        assert per.get_column("len").max() <= self.k
        for row in per.iter_rows(named=True):
            assert row["rank"] == list(range(1, row["len"] + 1))
        ordered = out.sort("session", "rank")
        descending = (pl.col("score").diff().fill_null(0) <= 0).all()
        assert ordered.group_by("session").agg(ok=descending)["ok"].all()

    def test_no_duplicates(self, out):
        assert out.select("session", "item").is_duplicated().sum() == 0

    def test_own_items_excluded(self, out):
        own = tiny_queries().drop_nulls("item").select("session", "item")
        assert out.join(own, on=["session", "item"]).height == 0

    def test_locale_catalogue(self, out):
        joined = (out.join(tiny_queries().select("session", "locale").unique(), on="session")
                  .join(tiny_items().select("item", item_locale="locale", in_catalog="in_catalog"),
                        on="item"))
        assert joined.height == out.height
        assert (joined["locale"] == joined["item_locale"]).all()
        assert joined["in_catalog"].all()

    def test_same_seed_same_output(self, out):
        queries = tiny_queries()
        history = pl.concat([tiny_history(), queries.drop("locale").drop_nulls()])
        again = self.make().fit(history, tiny_items()).generate(queries, self.k)
        assert again.equals(out)


class TestPopularity(SourceContract):
    type_ = "popularity"


class TestPopularityRecent(SourceContract):
    type_, cfg = "popularity", {"recent_fraction": 0.2}


class TestCovisitSymmetric(SourceContract):
    type_, cfg = "covisit", {"window": 3, "direction": "both", "normalize": "conditional"}


class TestCovisitForwardWeighted(SourceContract):
    type_, cfg = "covisit", {"window": 5, "direction": "forward", "distance_weight": 1.0, "normalize": "none"}


class TestCovisitLift(SourceContract):
    type_, cfg = "covisit", {"window": 1, "normalize": "lift", "unique_per_session": False}


class TestCovisitCosineProduct(SourceContract):
    type_, cfg = "covisit", {"key": "product", "normalize": "cosine"}


class TestSknn(SourceContract):
    type_, cfg = "sknn", {"sample_size": 50, "neighbors": 20}


class TestAls(SourceContract):
    type_, cfg = "als", {"factors": 8, "iterations": 3}


class TestBpr(SourceContract):
    type_, cfg = "bpr", {"factors": 8, "iterations": 20}


class TestAlsSampledIvf(SourceContract):  # the full-scale knobs: a fitting sample, IVF retrieval
    type_, cfg = "als", {"factors": 8, "iterations": 3, "max_fit_sessions": 150, "ivf_min_items": 10,
                         "ivf_nlist": 4, "ivf_nprobe": 2, "ivf_train_points": 30}


class TestBprSampledIvf(SourceContract):
    type_, cfg = "bpr", {"factors": 8, "iterations": 20, "max_fit_sessions": 150, "ivf_min_items": 10,
                         "ivf_nlist": 4, "ivf_nprobe": 2, "ivf_train_points": 30}


def test_factor_fit_sample_ignores_row_order():
    """max_fit_sessions keeps the same sessions however the history is ordered (ids are hashed)."""
    history, items = tiny_history(), tiny_items()
    capped = {"factors": 8, "iterations": 3, "max_fit_sessions": 100}
    full = _params.source("als", factors=8, iterations=3).fit(history, items)
    a = _params.source("als", **capped).fit(history, items)
    shuffled = history.sample(fraction=1.0, shuffle=True, seed=5)
    b = _params.source("als", **capped).fit(shuffled, items)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.array_equal(a.vectors, full.vectors)


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_factor_model_is_built_and_fitted_under_one_blas_thread(kind, monkeypatch):
    """implicit warns at model build when a BLAS pool has more than one thread; faiss's OpenMP OpenBLAS
    ignores OPENBLAS_NUM_THREADS, so the build must run under the limit as the fit does."""
    import implicit.utils

    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)  # it warns once per process
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _params.source(kind, factors=8, iterations=2).fit(tiny_history(), tiny_items())


class TestText(SourceContract):
    type_, cfg = "text", {"max_df": 0.5}


class TestTextLift(SourceContract):
    type_, cfg = "text", {"max_df": 1.0, "weighting": "lift"}


class TestPrefix(SourceContract):
    type_, cfg = "attribute", {"key": "prefix", "prefix_chars": 1}


class TestAttributeColumn(SourceContract):
    type_, cfg = "attribute", {"key": "price"}


_TINY_DEEP = {**DEEP_TINY, "dim": 8, "epochs": 2}  # every ModelConfig knob but arch, smaller


class TestGru4rec(SourceContract):  # trains in fit (no checkpoint): the contract, not the model's quality
    type_, cfg = "gru4rec", {"threads": 1, "model": _TINY_DEEP}


class TestSasrec(SourceContract):
    type_, cfg = "sasrec", {"threads": 1, "model": _TINY_DEEP}


class TestNarm(SourceContract):
    type_, cfg = "narm", {"threads": 1, "model": _TINY_DEEP}


class TestStamp(SourceContract):
    type_, cfg = "stamp", {"threads": 1, "model": _TINY_DEEP}


class TestSrgnn(SourceContract):
    type_, cfg = "srgnn", {"threads": 1, "model": _TINY_DEEP}


class TestCore(SourceContract):
    type_, cfg = "core", {"threads": 1, "model": {**_TINY_DEEP, "scoring": "cosine", "temperature": 0.1}}


class TestGru4recMetaTower(SourceContract):  # item vectors from the title words and price too
    type_, cfg = "gru4rec", {"threads": 1, "model": {**_TINY_DEEP, "item_tower": "meta_id"}}


def test_contract_covers_every_registered_source():
    assert {cls.type_ for cls in SourceContract.__subclasses__()} == set(SOURCES)


# --- co-visitation counts -------------------------------------------------------------------------

def _events(*sessions: list[int]) -> pl.DataFrame:
    rows = [(s, p, i) for s, items in enumerate(sessions) for p, i in enumerate(items)]
    return pl.DataFrame(rows, schema={"session": pl.Int32, "position": pl.Int32, "item": pl.Int32},
                        orient="row")


def _weights(events: pl.DataFrame, **cfg) -> dict[tuple[int, int], float]:
    w = pair_weights(events, _params.source_config("covisit", **cfg))
    return {(a, b): v for a, b, v in w.iter_rows()}


def test_pair_counts_by_variant():
    ev = _events([1, 2, 3], [1, 1, 2])
    assert _weights(ev, window=1, direction="forward") == {(1, 2): 2.0, (2, 3): 1.0}
    assert _weights(ev, window=1, direction="backward") == {(2, 1): 2.0, (3, 2): 1.0}
    # Without collapsing, 1 1 2 holds (1, 2) at distances 1 and 2; unique per session counts it once.
    assert _weights(ev, window=2, direction="forward", collapse_repeats=False) == {(1, 2): 2.0, (2, 3): 1.0,
                                                                                   (1, 3): 1.0}
    assert _weights(ev, window=2, direction="forward", collapse_repeats=False,
                    unique_per_session=False) == {(1, 2): 3.0, (2, 3): 1.0, (1, 3): 1.0}
    w = _weights(_events([1, 2, 3]), window=2, direction="both", distance_weight=1.0)
    assert w == {(1, 2): 1.0, (2, 1): 1.0, (2, 3): 1.0, (3, 2): 1.0, (1, 3): 0.5, (3, 1): 0.5}


def test_pair_counts_never_cross_sessions():
    w = _weights(_events([1, 2], [3, 4]), window=5)
    assert (2, 3) not in w and (3, 2) not in w


def test_product_key_transfers_across_locales():
    """An ES session whose only history is DE transitions still gets the ES twin of the DE neighbour."""
    items = tiny_items()
    history = _events(*[[2, 3]] * 5)  # DE only: 2 -> 3
    queries = pl.DataFrame({"session": [9], "locale": ["ES"], "position": [0], "item": [32]},
                           schema={"session": pl.Int32, "locale": pl.String, "position": pl.Int32,
                                   "item": pl.Int32})
    by_item = _params.source("covisit", key="item").fit(history, items).generate(queries, 5)
    by_product = _params.source("covisit", key="product").fit(history, items).generate(queries, 5)
    assert by_item.height == 0
    assert by_product["item"].to_list() == [33]  # ES item of product 3


# --- leakage --------------------------------------------------------------------------------------

def _target_score(history: pl.DataFrame, query: pl.DataFrame, target: int) -> float:
    out = _params.source("covisit", window=3).fit(history, tiny_items()).generate(query, 50)
    hit = out.filter(pl.col("item") == target)
    return float(hit["score"][0]) if hit.height else 0.0


def test_held_out_target_cannot_raise_its_own_score():
    """Fitting on the query's prev_items (what the split allows) never helps its target; fitting on
    its target (a leak) would, so the test can fail."""
    others = _events([1, 2, 7], [1, 2, 8], [2, 8], [1, 7, 9])
    query = pl.DataFrame({"session": [100, 100], "locale": "DE", "position": [0, 1], "item": [1, 2]},
                         schema={"session": pl.Int32, "locale": pl.String, "position": pl.Int32,
                                 "item": pl.Int32})
    target = 7
    prev_items = query.drop("locale")
    leaked = pl.concat([prev_items, pl.DataFrame({"session": [100], "position": [2], "item": [target]},
                                                 schema=schemas.EVENTS)])
    without = _target_score(others, query, target)
    allowed = _target_score(pl.concat([others, prev_items]), query, target)
    with_leak = _target_score(pl.concat([others, leaked]), query, target)
    assert without > 0
    assert allowed <= without + 1e-6
    assert with_leak > allowed


# --- union ----------------------------------------------------------------------------------------

def _cands(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={"session": pl.Int32, "item": pl.Int32, "score": pl.Float32},
                         orient="row")
    return frame.with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session"))


def test_union_is_wide_and_deduplicated():
    a = _cands([(1, 10, 0.9), (1, 11, 0.5), (2, 20, 0.7)])
    b = _cands([(1, 11, 3.0), (1, 12, 2.0)])
    out = union({"a": a, "b": b}, max_per_session=300)
    assert out.schema == pl.Schema({"session": pl.Int32, "item": pl.Int32, "cand_a_score": pl.Float32,
                                    "cand_a_rank": pl.Int32, "cand_b_score": pl.Float32,
                                    "cand_b_rank": pl.Int32, "n_sources": pl.Int8})
    assert out.select("session", "item").rows() == [(1, 10), (1, 11), (1, 12), (2, 20)]
    assert out["n_sources"].to_list() == [1, 2, 1, 1]
    assert out["cand_b_rank"].to_list() == [None, 1, 2, None]
    assert out["cand_a_rank"].to_list() == [1, 2, None, 1]


def test_union_cap_keeps_best_ranks():
    a = _cands([(1, i, 10.0 - i) for i in range(5)])
    b = _cands([(1, 100 + i, 10.0 - i) for i in range(5)])
    out = union({"a": a, "b": b}, max_per_session=4)
    assert sorted(out["item"].to_list()) == [0, 1, 100, 101]


def test_union_empty_source_keeps_its_columns():
    empty = pl.DataFrame(schema=schemas.CANDIDATES)
    out = union({"a": _cands([(1, 10, 1.0)]), "z": empty}, max_per_session=10)
    assert {"cand_z_score", "cand_z_rank"} <= set(out.columns)
    assert out["cand_z_rank"].null_count() == 1


def test_build_sources_reads_params_entries():
    specs = _params.sources({"pop": {"type": "popularity", "k": 5},
                             "fwd": {"type": "covisit", "k": 7, "direction": "forward"}}, seed=3)
    assert [(s.name, s.type, s.k) for s in specs] == [("pop", "popularity", 5), ("fwd", "covisit", 7)]
    assert specs[1].source.cfg.direction == "forward"
    assert specs[1].source.cfg.window == _params.source_defaults()["covisit"]["window"]
    defaults = _params.source_defaults()
    with pytest.raises(ParamsError, match=r"sources\.x: unknown key\(s\) \['windw'\]"):
        with_defaults({"x": {"type": "covisit", "k": 5, "windw": 2}}, defaults)
    with pytest.raises(ParamsError, match=r"sources\.x: needs 'type' and 'k'"):
        with_defaults({"x": {"type": "covisit"}}, defaults)
    with pytest.raises(ParamsError, match="unknown source type 'nope'"):
        with_defaults({"x": {"type": "nope", "k": 1}}, defaults)
    with pytest.raises(ParamsError, match=r"no source_defaults\.sknn block"):
        with_defaults({"x": {"type": "sknn", "k": 1}}, {"covisit": defaults["covisit"]})
    # build_sources takes completed entries: a knob left out is an error naming it
    with pytest.raises(ParamsError, match=r"missing key 'window' \(candidates\.sources\.x\.window\)"):
        build_sources({"x": {"type": "covisit", "k": 5}}, seed=0)


# --- recall report --------------------------------------------------------------------------------

def test_recall_report_counts_hits_and_marginals():
    a = _cands([(1, 10, 0.9), (1, 11, 0.5), (2, 20, 0.7)])
    b = _cands([(1, 11, 3.0), (3, 30, 1.0)])
    u = union({"a": a, "b": b}, max_per_session=300)
    targets = pl.DataFrame({"session": [1, 2, 3, 4], "item": [11, 20, 30, 40]}, schema=schemas.TARGETS)
    queries = pl.DataFrame({"session": [1, 2, 3, 4], "locale": ["DE", "DE", "ES", "ES"], "dataset": "train",
                            "row": [0, 1, 2, 3]}, schema=schemas.QUERIES)
    report, plot = recall_report(u, targets, queries, ks=(1, 2))
    o = report["overall"]
    assert o["n"] == 4
    assert o["union"]["recall"] == 0.75
    assert o["sources"]["a"]["recall@1"] == 0.25 and o["sources"]["a"]["recall@2"] == 0.5
    assert o["sources"]["b"]["recall@1"] == 0.5
    assert o["sources"]["a"]["marginal"] == 0.25 and o["sources"]["b"]["marginal"] == 0.25
    assert o["sources"]["a"]["max_rank"] == 2 and o["sources"]["b"]["max_rank"] == 1
    assert o["union"]["recall@1"] == 0.75
    assert report["by_locale"]["ES"]["union"]["recall"] == 0.5
    assert set(plot["source"]) == {"a", "b", "union"}


# --- shared attribute and title-word lift ---------------------------------------------------------

def _one_query(locale: str, *items: int) -> pl.DataFrame:
    return pl.DataFrame({"session": [500] * len(items), "locale": locale, "position": range(len(items)),
                         "item": list(items)},
                        schema={"session": pl.Int32, "locale": pl.String, "position": pl.Int32,
                                "item": pl.Int32})


def test_prefix_proposes_the_family_in_the_session_locale_by_views():
    # Ids A0..A29 (DE) and A0..A19 (ES): prefix "A1" holds products 1 and 10..19.
    items = tiny_items()
    history = _events([12, 12, 12], [13], [30 + 12])  # DE 12 viewed 3x, DE 13 once; ES 12 once
    out = (_params.source("attribute", key="prefix", prefix_chars=2)
           .fit(history, items).generate(_one_query("DE", 11), 20))
    got = out["item"].to_list()
    assert set(got) == {1, 10, 12, 13, 14, 15, 16, 17, 18, 19}   # the DE family, not ES, not itself
    assert got[:2] == [12, 13]                                     # most viewed first


def test_lift_weights_words_that_persist_along_sessions():
    """A title word that consecutive items share (the block word) gets a large weight; a word that
    is shared only as often as chance (one of two colours) gets about none, though it is rarer
    than nothing in IDF terms."""
    from candidates.text import title_tokens, token_lift

    n = 40
    colour = np.random.default_rng(0).integers(0, 2, n)
    items = pl.DataFrame({"item": range(n), "locale": "DE", "in_catalog": True,
                          "title": [f"block{i // 4} colour{c}" for i, c in enumerate(colour)]},
                         schema_overrides={"item": pl.Int32})
    history = _events(*[[b * 4 + j for j in range(4)] for b in range(n // 4)] * 5)
    tokens = title_tokens(items, _params.source_config("text", max_df=1.0))
    weight = token_lift(history, tokens).join(tokens.group_by("token").agg(df=pl.len()), on="token")
    block, col = weight.filter(pl.col("df") == 4), weight.filter(pl.col("df") > 4)
    assert block.height == n // 4 and col.height == 2
    assert block["idf"].min() > 1.0
    assert col["idf"].max() < 0.3


def test_popularity_is_the_locale_top_k_without_own_items_for_long_and_short_sessions():

    history, items = tiny_history(), tiny_items()
    queries = tiny_queries()
    # one query session holding the locale's most viewed items: it needs depth k + its own count
    counts = history.group_by("item").agg(n=pl.len()).join(
        items.filter(pl.col("in_catalog")).select("item", "locale"), on="item"
    )
    first = queries.row(0, named=True)
    top_items = counts.filter(pl.col("locale") == first["locale"]).sort(
        ["n", "item"], descending=[True, False]
    )
    long = pl.DataFrame({"session": first["session"], "locale": first["locale"],
                         "position": range(20), "item": top_items["item"].head(20)},
                        schema=queries.select("session", "locale", "position", "item").schema)
    sessions = pl.concat([long, queries.filter(pl.col("session") != first["session"])
                          .select("session", "locale", "position", "item")])
    k = 6
    out = _params.source("popularity").fit(history, items).generate(sessions, k)
    own = sessions.select("session", "item").drop_nulls()
    expected = (
        sessions.select("session", "locale").unique()
        .join(counts, on="locale")
        .join(own, on=["session", "item"], how="anti")
        .sort(["session", "n", "item"], descending=[False, True, False])
        .group_by("session", maintain_order=True).head(k)
    )
    assert out.select("session", "item").equals(expected.select("session", "item").cast(pl.Int32))
