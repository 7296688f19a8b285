import polars as pl

from core import schemas
from pipeline import prepare, split
from tests._params import section


def test_prepare_sample_keeps_and_reports_catalogue_gaps(sample_dir):
    products, train, tests, reports = prepare.read_raw(sample_dir, "raise")
    out = prepare.prepare(products, train, tests)
    for frame, schema in [(out.items, schemas.ITEMS), (out.sessions, schemas.SESSIONS),
                          (out.events, schemas.EVENTS), (out.targets, schemas.TARGETS)]:
        schemas.check(frame, schema, "prepared")
    # the UK next item listed only in the DE catalogue is kept, flagged and counted
    gap = out.items.filter((pl.col("id") == "B09M7GY217") & (pl.col("locale") == "UK"))
    assert gap.height == 1 and not gap["in_catalog"][0]
    assert out.report["datasets"]["train"]["next_items_missing_from_catalogue"] == 2
    # the same ASIN in two locales: two items, one product
    shared = out.items.filter(pl.col("id") == "B07XJ8C8F5")
    assert shared.height == 2 and shared["product"].n_unique() == 1
    assert out.events.height == (sum(len(x) for x in train["prev_items"])
                                 + sum(len(x) for x in tests["task1_phase1"]["prev_items"]))
    assert reports["sessions_test_task2_phase1.csv"] == "missing"


def test_split_never_fits_on_a_held_out_target(tiny_world):
    sessions, events, targets = (tiny_world.read(name) for name in ("sessions", "events", "targets"))
    folds = split.make_folds(sessions, events, targets,
                             section(split.SplitConfig, "split", valid_fraction=0.2, max_valid_sessions=0),
                             seed=1)
    valid = folds["valid"]
    held = valid.queries["session"]
    assert 0.15 < held.len() / sessions.filter(pl.col("dataset") == "train").height < 0.25
    hist = valid.history.filter(pl.col("session").is_in(held.implode()))
    # held-out sessions appear in history with their prev_items only, never their target
    lengths = hist.group_by("session").len().join(sessions.select("session", "length"), on="session")
    assert (lengths["len"] == lengths["length"]).all()
    # test fold: every train session carries its target as its last event
    test = folds["test"]
    train_ids = sessions.filter(pl.col("dataset") == "train")
    tl = test.history.join(train_ids.select("session", "length"), on="session").group_by("session").agg(
        pl.len(), pl.col("length").first(), pl.col("item").last())
    assert (tl["len"] == tl["length"] + 1).all()
    assert tl.join(targets, on="session").filter(pl.col("item") != pl.col("item_right")).height == 0
    assert set(test.queries["dataset"].unique()) == set(section(split.SplitConfig, "split").test_datasets)
    # same seed, same split
    again = split.make_folds(sessions, events, targets,
                             section(split.SplitConfig, "split", valid_fraction=0.2, max_valid_sessions=0),
                             seed=1)
    assert again["valid"].queries.equals(valid.queries)


def test_max_valid_sessions_caps_the_held_out_sessions_and_returns_the_rest_to_history(tiny_world):
    sessions, events, targets = (tiny_world.read(name) for name in ("sessions", "events", "targets"))
    def fold(cap: int) -> split.Fold:
        cfg = section(split.SplitConfig, "split", valid_fraction=0.2, max_valid_sessions=cap)
        return split.make_folds(sessions, events, targets, cfg, seed=1)["valid"]

    free = fold(0)
    cap = free.queries.height // 3
    capped = fold(cap)
    assert capped.queries.height == cap
    assert set(capped.queries["session"]) <= set(free.queries["session"])
    # the sessions the cap dropped are fitted on with their target, like any other train session
    assert capped.history.height == free.history.height + (free.queries.height - cap)
    assert capped.targets.join(capped.queries, on="session", how="anti").is_empty()
    loose = fold(10 * cap)
    assert loose.queries.equals(free.queries)
