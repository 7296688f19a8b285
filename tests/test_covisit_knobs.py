"""Co-visitation knobs of issue 21: query-session weighting, two hops, single-lag expansion, the grid."""

from __future__ import annotations

import polars as pl
import pytest

from candidates.covisit import (
    Covisit,
    CovisitConfig,
    expand_hops,
    neighbours,
    weighted_pairs,
    with_query_flag,
)
from tests import _params
from tests.test_candidates import SourceContract, tiny_history, tiny_items


def covisit_cfg(**knobs) -> CovisitConfig:
    """params.yaml ``source_defaults.covisit`` with ``knobs`` replaced."""
    return _params.source_config("covisit", **knobs)


EVENTS = {"session": pl.Int32, "position": pl.Int32, "item": pl.Int32}


def _events(*sessions: list[int]) -> pl.DataFrame:
    rows = [(s, p, i) for s, items in enumerate(sessions) for p, i in enumerate(items)]
    return pl.DataFrame(rows, schema=EVENTS, orient="row")


def _query(*items: int, session: int = 100, locale: str = "DE") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session": [session] * len(items),
            "locale": locale,
            "position": range(len(items)),
            "item": list(items),
        },
        schema={"session": pl.Int32, "locale": pl.String, "position": pl.Int32, "item": pl.Int32},
    )


class TestCovisitQueryWeighted(SourceContract):
    type_, cfg = "covisit", {"window": 3, "query_weight": 3.0}


class TestCovisitTwoHops(SourceContract):
    type_, cfg = "covisit", {"window": 1, "hops": 2, "hop_below": 3}


class TestCovisitLag(SourceContract):
    type_, cfg = "covisit", {"window": 2, "lag": 2}


class TestCovisitGrid(SourceContract):
    type_, cfg = (
        "covisit",
        {"grid": [{"window": 1, "direction": "forward"}, {"window": 3}], "select_share": 0.5},
    )


def test_query_flag_marks_sessions_without_their_target():
    prev = _events([1, 2], [3, 4], [5])  # sessions 0, 1, 2: prev_items
    history = pl.concat([prev, pl.DataFrame({"session": [0], "position": [2], "item": [9]}, schema=EVENTS)])
    flagged = with_query_flag(history.sort("session", "position"), prev)
    per = flagged.group_by("session").agg(pl.col("query").first()).sort("session")
    assert per["query"].to_list() == [False, True, True]  # session 0 carries its target 9


def test_query_weight_scales_only_query_pairs():
    ev = _events([1, 2], [1, 3]).with_columns(query=pl.col("session") == 1)
    w = {
        (a, b): v
        for a, b, v in weighted_pairs(
            ev, covisit_cfg(window=1, direction="forward", query_weight=4.0)
        ).iter_rows()
    }
    assert w == {(1, 2): 1.0, (1, 3): 4.0}
    plain = {
        (a, b): v for a, b, v in weighted_pairs(ev, covisit_cfg(window=1, direction="forward")).iter_rows()
    }
    assert plain == {(1, 2): 1.0, (1, 3): 1.0}


def test_two_hops_reach_neighbours_of_neighbours_of_rare_items_only():
    # 1 -> 2 once (rare: one neighbour); 2 -> 3, 2 -> 4 often; 5 has three direct neighbours.
    ev = _events([1, 2], *[[2, 3]] * 3, [2, 4], [5, 6], [5, 7], [5, 8], [6, 9])
    cfg = covisit_cfg(
        window=1, direction="forward", normalize="conditional", hops=2, hop_weight=0.5, hop_below=2
    )
    nb = neighbours(ev, cfg)
    of = {a: dict(zip(g["b"], g["score"], strict=True)) for (a,), g in nb.group_by("a")}
    assert set(of[1]) == {2, 3, 4}
    assert of[1][3] == pytest.approx(0.5 * 1.0 * 0.75) and of[1][2] == pytest.approx(1.0)
    assert set(of[5]) == {6, 7, 8}  # three direct neighbours: not rare, not expanded
    one = neighbours(ev, covisit_cfg(window=1, direction="forward"))
    assert expand_hops(one, covisit_cfg(hops=1)).equals(one)


def test_lag_expands_only_that_recent_item():
    history = _events(*[[1, 2]] * 3, *[[3, 4]] * 3)
    last1 = Covisit(covisit_cfg(window=1, direction="forward", lag=1), 0).fit(history, tiny_items())
    last2 = Covisit(covisit_cfg(window=1, direction="forward", lag=2), 0).fit(history, tiny_items())
    q = _query(1, 3)  # last item 3, the one before 1
    assert last1.generate(q, 5)["item"].to_list() == [4]
    assert last2.generate(q, 5)["item"].to_list() == [2]


def test_grid_chooses_the_variant_that_ranks_held_out_targets_best():
    """Sessions go a -> b, and the next item is always two steps ahead of the one before the last:
    a forward window of 2 finds it, a consecutive-pair variant cannot; the grid picks window 2."""
    rows = [[i, i + 1, i + 2] for i in range(0, 26)] * 4
    history = _events(*rows)
    cfg = covisit_cfg(
        grid=({"window": 1, "direction": "backward"}, {"window": 2, "direction": "forward"}),
        select_share=0.5,
        max_session_items=2,
    )
    src = Covisit(cfg, seed=3).fit(history, tiny_items())
    assert src.selection["chosen"] == {"window": 2, "direction": "forward"}
    assert src.cfg.window == 2 and src.cfg.grid == ()
    again = Covisit(cfg, seed=3).fit(history, tiny_items())
    assert again.selection == src.selection


def test_grid_rejects_unknown_knobs():
    with pytest.raises(ValueError, match="unknown knob"):
        covisit_cfg(grid=({"windw": 2},))
    with pytest.raises(ValueError):
        covisit_cfg(grid=({"direction": "sideways"},))


def test_grid_on_tiny_history_is_deterministic():
    history = tiny_history()
    cfg = covisit_cfg(grid=({"window": 1}, {"window": 3, "normalize": "lift"}), select_share=0.3)
    a = Covisit(cfg, 0).fit(history, tiny_items())
    b = Covisit(cfg, 0).fit(history, tiny_items())
    assert a.selection == b.selection and a.nbrs.equals(b.nbrs)
