"""Deep session encoders: tiny training, determinism, resume, and the candidate-source contract."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import polars as pl
import pytest
import torch

from candidates.base import CandidateSource
from candidates.deep.config import ModelConfig
from candidates.deep.data import pad_left, session_sequences
from candidates.deep.models import build
from candidates.deep.source import (
    CORESource,
    GRU4RecSource,
    NARMSource,
    NoCheckpointError,
    SASRecSource,
    SRGNNSource,
    STAMPSource,
)
from candidates.deep.train import Sampler, length_batches, load, repeated_targets, train, trim
from candidates.deep.train import item_vectors as item_table
from candidates.registry import source_class
from core import schemas
from tests import _params
from tests._params import source_config

N_PER_LOCALE = 24
TINY = {"dim": 16, "layers": 1, "heads": 2, "dropout": 0.0, "max_len": 20, "init": "random",
        "share_products": False, "epochs": 10,
        "batch_size": 32,
        "lr": 0.01, "emb_lr": 0.05, "warmup_steps": 0, "clip_norm": 1.0, "weight_decay": 0.0,
        "negatives": 16, "neg_alpha": 0.0, "logq": True, "skip_repeats": True, "min_count": 1,
        "valid_sessions": 0, "patience": 0, "passes_per_item": 0.0,
        "max_train_seconds": 0.0, "finetune_locales": [],
        "finetune_epochs": 0, "scoring": "dot", "temperature": 1.0,
        "item_tower": "id", "meta_buckets": 64, "tower_id_min_count": 1}  # every ModelConfig knob but arch
ARCHS = ["gru4rec", "sasrec", "narm", "stamp", "srgnn", "core"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Two locales of 24 items each; every session walks a chain i -> i+1 inside its locale.

    Item 23 (last of DE) is not in the catalogue. Returns (items, history, query sessions).
    """
    rng = np.random.default_rng(0)
    items = pl.DataFrame({
        "item": np.arange(2 * N_PER_LOCALE, dtype=np.int32),
        "locale": ["DE"] * N_PER_LOCALE + ["UK"] * N_PER_LOCALE,
        "in_catalog": [i != N_PER_LOCALE - 1 for i in range(2 * N_PER_LOCALE)],
    })
    rows = []
    for s in range(300):
        base = N_PER_LOCALE * (s % 2)
        start, length = rng.integers(0, N_PER_LOCALE), rng.integers(2, 6)
        rows += [(s, p, base + (start + p) % N_PER_LOCALE) for p in range(length)]
    history = pl.DataFrame(rows, schema=schemas.EVENTS, orient="row")
    queries = (history.filter(pl.col("session") < 40)
               .with_columns(locale=pl.when(pl.col("session") % 2 == 0).then(pl.lit("DE"))
                             .otherwise(pl.lit("UK"))))
    empty = pl.DataFrame({"session": [999], "locale": ["UK"], "position": [None], "item": [None]},
                         schema={"session": pl.Int32, "locale": pl.String, "position": pl.Int32,
                                 "item": pl.Int32})
    return items, history, pl.concat([queries.select("session", "locale", "position", "item"), empty])


def tiny(arch: str) -> dict:
    """TINY as ``arch`` accepts it: core scores by cosine only."""
    return {**TINY, "scoring": "cosine"} if arch == "core" else TINY


def cfg(arch: str, **changes) -> ModelConfig:
    return ModelConfig(arch=arch, **{**tiny(arch), **changes})


def state(trained) -> dict[str, torch.Tensor]:
    return trained.model.state_dict()


def same_weights(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_pad_left_keeps_last_items_right_aligned():
    lists = pl.Series([[1, 2, 3, 4], [5], []], dtype=pl.List(pl.Int32))
    assert pad_left(lists, 3).tolist() == [[3, 4, 5], [0, 0, 6], [0, 0, 0]]


def test_session_sequences_orders_by_position_and_truncates():
    events = pl.DataFrame({"session": [1, 1, 1, 2], "position": [2, 0, 1, 0], "item": [30, 10, 20, 5]},
                          schema=schemas.EVENTS)
    seqs = session_sequences(events, 2)
    assert seqs["items"].to_list() == [[20, 30], [5]]


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_change_the_session_vector(arch):
    torch.manual_seed(0)
    model = build(cfg(arch, max_len=6), n_items=10, n_locales=2).eval()
    tokens = torch.tensor([[0, 0, 0, 3, 4, 5], [0, 0, 0, 0, 7, 2], [0, 0, 0, 0, 0, 0]])
    locale = torch.tensor([0, 1, 1])
    with torch.no_grad():
        full = model(tokens, locale)
        short = model(trim(tokens), locale)
    assert trim(tokens).shape == (3, 3)
    torch.testing.assert_close(full[:, -3:], short)
    assert torch.isfinite(full).all()


def test_repeated_targets_marks_steps_whose_target_is_already_in_the_prefix():
    # Row: PAD 5 7 5 7 9 -> inputs PAD 5 7 5 7, targets 5 7 5 7 9.
    tokens = torch.tensor([[0, 5, 7, 5, 7, 9]])
    got = repeated_targets(tokens[:, :-1], tokens[:, 1:])
    assert got.tolist() == [[False, False, True, True, False]]


def test_length_batches_cover_every_session_once():
    tokens = torch.tensor([[0] * (5 - n) + [1] * n for n in (2, 5, 3, 2, 4, 5, 2)])
    batches = length_batches(tokens, 3, torch.Generator().manual_seed(0), pool=1)
    assert sorted(torch.cat(batches).tolist()) == list(range(7))
    assert all(len(b) <= 3 for b in batches)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_prefix_gets_the_vector_of_that_prefix_alone(arch):
    """One row trains all its prefixes: the vector at step t is the one the prefix ending at t gets as a
    query of its own (repeats included: SR-GNN's graph merges them, NARM/STAMP attend over them)."""
    torch.manual_seed(0)
    model = build(cfg(arch, max_len=6), n_items=10, n_locales=2).eval()
    tokens = torch.tensor([[0, 3, 4, 3, 5, 4], [0, 0, 0, 7, 2, 7]])
    locale = torch.tensor([0, 1])
    with torch.no_grad():
        full = model(tokens, locale)
        for t in range(tokens.shape[1]):
            alone = torch.cat([torch.zeros_like(tokens[:, t + 1:]), tokens[:, : t + 1]], dim=1)
            real = tokens[:, t] != 0
            torch.testing.assert_close(full[real, t], model.session_vectors(alone, locale)[real])


def test_srgnn_prefix_graph_merges_repeats_and_normalises_by_degree():
    from candidates.deep.models import SRGNN

    # A B A C: nodes A (step 0), B (1), C (3); edges A->B, B->A, A->C
    node, incoming, outgoing = SRGNN.prefix_graphs(torch.tensor([[5, 6, 5, 7]]))
    assert node.tolist() == [[0, 1, 0, 3]]
    last = outgoing[0, 3]
    assert last[0, 1] == 0.5 and last[0, 3] == 0.5 and last[1, 0] == 1.0 and last.sum() == 2.0
    assert incoming[0, 3][0, 1] == 1.0 and incoming[0, 3][3, 0] == 1.0 and incoming[0, 3][1, 0] == 1.0
    assert outgoing[0, 0].sum() == 0.0 and outgoing[0, 1].sum() == 1.0  # prefixes A, then A B: one edge


@pytest.mark.parametrize("arch", ["core", "gru4rec", "sasrec"])
def test_cosine_scores_are_cosines_over_temperature(arch):
    torch.manual_seed(0)
    model = build(cfg(arch, scoring="cosine", temperature=0.5), n_items=10, n_locales=2).eval()
    tokens, locale = torch.tensor([[0, 3, 4]]), torch.tensor([0])
    with torch.no_grad():
        h = model.session_vectors(tokens, locale)
        torch.testing.assert_close(h.norm(dim=-1), torch.tensor([2.0]))
        table = model.item_table()
        torch.testing.assert_close(table[1:, :-1].norm(dim=-1), torch.ones(10))
        assert (table[:, -1] == 0).all()
        torch.testing.assert_close(model.score(h, torch.arange(1, 11)), h @ table[1:, :-1].T)
        torch.testing.assert_close(model.query(h), h)  # scoring a query vector again leaves it


def test_core_refuses_dot_scoring():
    with pytest.raises(ValueError, match="core: cosine"):
        cfg("core", scoring="dot")


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_learns_the_chain(world, arch):
    items, history, sessions = world
    source = source_class(arch)(source_config(arch, threads=1, model=tiny(arch)), seed=3).fit(history, items)
    assert source.trained.meta["losses"][-1] < source.trained.meta["losses"][0]
    cands = source.generate(sessions, 3)
    last = sessions.drop_nulls("item").sort("position").group_by("session").agg(pl.col("item").last())
    hits = (last.with_columns(nxt=pl.col("item") + 1)
            .join(cands, left_on=["session", "nxt"], right_on=["session", "item"], how="semi"))
    # Wrap-arounds (23 -> 0, 47 -> 24) and the off-catalogue item 23 are rare; most must be found.
    assert hits.height >= 0.6 * last.height


@pytest.mark.parametrize("arch", ["gru4rec", "sasrec"])
def test_same_seed_same_weights_on_cpu(world, arch):
    items, history, _ = world
    a = train(history, items, cfg(arch, epochs=2, dropout=0.2), seed=5, progress=False)
    b = train(history, items, cfg(arch, epochs=2, dropout=0.2), seed=5, progress=False)
    c = train(history, items, cfg(arch, epochs=2, dropout=0.2), seed=6, progress=False)
    assert same_weights(state(a), state(b))
    assert not same_weights(state(a), state(c))


def test_resume_equals_uninterrupted_training(world, tmp_path):
    items, history, _ = world
    path = tmp_path / "m.pt"
    train(history, items, cfg("sasrec", epochs=2, dropout=0.2), seed=1, checkpoint=path, progress=False)
    assert torch.load(path, weights_only=False)["epoch"] == 2
    resumed = train(history, items, cfg("sasrec", epochs=3, dropout=0.2), seed=1, checkpoint=path,
                    progress=False)
    straight = train(history, items, cfg("sasrec", epochs=3, dropout=0.2), seed=1, progress=False)
    assert resumed.meta["epoch"] == 3 and len(resumed.meta["losses"]) == 3
    assert same_weights(state(resumed), state(straight))
    assert same_weights(state(load(path, torch.device("cpu"))), state(straight))


def test_mismatched_checkpoint_is_retrained_not_resumed(world, tmp_path):
    items, history, _ = world
    path = tmp_path / "m.pt"
    train(history, items, cfg("gru4rec", epochs=1), seed=1, checkpoint=path, progress=False)
    other = train(history, items, cfg("gru4rec", epochs=1, dim=8), seed=1, checkpoint=path, progress=False)
    fresh = train(history, items, cfg("gru4rec", epochs=1, dim=8), seed=1, progress=False)
    assert same_weights(state(other), state(fresh))


@pytest.fixture(scope="module",
                params=[GRU4RecSource, SASRecSource, NARMSource, STAMPSource, SRGNNSource, CORESource])
def fitted(request, world) -> CandidateSource:
    items, history, _ = world
    knobs = source_config(request.param.name, threads=1, model={**tiny(request.param.name), "epochs": 1})
    return request.param(knobs, seed=2).fit(history, items)


def test_source_contract(fitted, world):
    items, _, sessions = world
    k = 5
    out = schemas.check(fitted.generate(sessions, k), schemas.CANDIDATES, fitted.name)
    assert out.group_by("session").len()["len"].max() <= k
    assert out.select("session", "item").is_duplicated().sum() == 0
    # Every query session gets k items, the empty one included.
    assert out["session"].n_unique() == sessions["session"].n_unique()
    assert out.height == k * sessions["session"].n_unique()
    own = sessions.drop_nulls("item").select("session", "item")
    assert out.join(own, on=["session", "item"], how="semi").height == 0
    locale = out.join(sessions.select("session", "locale").unique(), on="session").join(
        items.rename({"locale": "item_locale"}), on="item")
    assert (locale["locale"] == locale["item_locale"]).all() and locale["in_catalog"].all()
    ranks = out.sort("session", "rank")
    steps = ranks.group_by("session", maintain_order=True).agg(pl.col("score").diff().max())
    assert steps["score"].max() <= 0
    assert fitted.generate(sessions, k).equals(out)


def test_score_pairs_agrees_with_generate(fitted, world):
    _, _, sessions = world
    out = fitted.generate(sessions, 5)
    pairs = out.select("session", "item").reverse().vstack(
        pl.DataFrame({"session": [12345], "item": [0]}, schema={"session": pl.Int32, "item": pl.Int32}))
    scored = fitted.score_pairs(sessions, pairs)
    assert scored.select("session", "item").equals(pairs)
    assert scored["score"][-1] is None
    both = scored.head(out.height).join(out, on=["session", "item"])
    np.testing.assert_allclose(both["score"].to_numpy(), both["score_right"].to_numpy(), rtol=1e-4, atol=1e-5)


def test_source_loads_only_the_checkpoint_of_its_history(world, tmp_path):
    items, history, sessions = world
    for split, hist in (("valid", history.filter(pl.col("session") >= 100)), ("test", history)):
        train(hist, items, cfg("gru4rec", epochs=1), seed=1, checkpoint=tmp_path / split / "gru4rec.pt",
              progress=False)
    pattern = str(tmp_path / "*" / "gru4rec.pt")
    valid_hist = history.filter(pl.col("session") >= 100)
    src = GRU4RecSource(source_config("gru4rec", checkpoint=pattern, threads=1)).fit(valid_hist, items)
    assert src.trained.meta["key"]["fingerprint"] == torch.load(
        tmp_path / "valid" / "gru4rec.pt", weights_only=False)["key"]["fingerprint"]
    assert src.generate(sessions, 3).height > 0
    with pytest.raises(NoCheckpointError):
        SASRecSource(source_config("sasrec", checkpoint=pattern, threads=1)).fit(valid_hist, items)
    with pytest.raises(NoCheckpointError):
        GRU4RecSource(source_config("gru4rec", checkpoint=pattern, threads=1)).fit(history.head(50), items)


def test_valid_model_encodes_test_queries_and_never_the_reverse(world, tmp_path):
    """The split's shape: the test history is the valid history plus the held-out sessions' targets
    (their last event). The valid split's model matches the test history (a per-session prefix of it);
    a model trained on the test history never matches the valid one (it saw the valid targets)."""
    items, history, sessions = world
    last = pl.col("position") == pl.col("position").max().over("session")
    valid_hist = history.filter(~(last & (pl.col("session") % 4 == 0)))
    assert valid_hist.height < history.height
    train(valid_hist, items, cfg("gru4rec", epochs=1), seed=1, checkpoint=tmp_path / "valid" / "gru4rec.pt",
          progress=False)
    valid_only = str(tmp_path / "valid" / "gru4rec.pt")
    valid_cfg = source_config("gru4rec", checkpoint=valid_only, threads=1)
    on_test = GRU4RecSource(valid_cfg).fit(history, items)
    on_valid = GRU4RecSource(valid_cfg).fit(valid_hist, items)
    assert on_test.generate(sessions, 5).equals(on_valid.generate(sessions, 5))
    train(history, items, cfg("gru4rec", epochs=1), seed=1, checkpoint=tmp_path / "test" / "gru4rec.pt",
          progress=False)
    with pytest.raises(NoCheckpointError):
        test_only = str(tmp_path / "test" / "gru4rec.pt")
        GRU4RecSource(source_config("gru4rec", checkpoint=test_only, threads=1)).fit(valid_hist, items)
    # both present: each split takes the one trained on exactly its history
    both = GRU4RecSource(source_config("gru4rec", checkpoint=str(tmp_path / "*" / "gru4rec.pt"), threads=1))
    assert both.fit(history, items).trained.meta["key"] == torch.load(
        tmp_path / "test" / "gru4rec.pt", weights_only=False)["key"]


def test_train_deep_stage_main(world, project_dir, monkeypatch):
    from pipeline import train_deep

    items, history, _ = world
    history.write_parquet(project_dir / "history.parquet")
    items.write_parquet(project_dir / "items.parquet")
    params = (project_dir / "params.yaml").read_text()
    for key, tiny in (("dim", 8), ("epochs", 1), ("negatives", 8), ("threads", 1)):
        params = re.sub(rf"(\n\s+{key}): \d+", rf"\1: {tiny}", params)
    (project_dir / "params.yaml").write_text(params)
    monkeypatch.chdir(project_dir)
    train_deep.main(["--history", "history.parquet", "--items", "items.parquet", "--model", "sasrec",
                     "--out", "models/one", "--metrics", "metrics/one.json", "--device", "cpu"])
    metrics = json.loads((project_dir / "metrics" / "one.json").read_text())
    assert list(metrics) == ["sasrec"] and metrics["sasrec"]["epochs"] == 1
    assert load(project_dir / "models" / "one" / "sasrec.pt").cfg.dim == 8
    # every model of deep.models, two processes side by side (deep.parallel: 2): the same weights
    train_deep.main(["--history", "history.parquet", "--items", "items.parquet", "--out", "models/valid",
                     "--metrics", "metrics/valid.json", "--device", "cpu"])
    metrics = json.loads((project_dir / "metrics" / "valid.json").read_text())
    assert set(metrics) == {"gru4rec", "sasrec"} and all(m["threads"] == 1 for m in metrics.values())
    alone, beside = (load(project_dir / "models" / d / "sasrec.pt").model.state_dict()
                     for d in ("one", "valid"))
    assert all(torch.equal(alone[k], beside[k]) for k in alone)
    # share_products: the stage reads each item's ASIN too
    items.with_columns(product=pl.col("item") % N_PER_LOCALE).write_parquet(project_dir / "items.parquet")
    (project_dir / "params.yaml").write_text(params.replace("share_products: false", "share_products: true"))
    train_deep.main(["--history", "history.parquet", "--items", "items.parquet", "--model", "gru4rec",
                     "--out", "models/shared", "--metrics", "metrics/shared.json", "--device", "cpu"])
    assert "item_row" in load(project_dir / "models" / "shared" / "gru4rec.pt").model.state_dict()


def test_deep_feature_family_scores_every_candidate(world, tmp_path):
    """Family ``deep``: the model score of every (session, item), as score_pairs gives it, and the
    rank by that score within the session; a glob with no checkpoint of this history fails."""
    from features import deep as deep_family
    from features.base import Chunk, FeaturesConfig, Inputs

    items, history, sessions = world
    train(history, items, cfg("gru4rec", epochs=1), seed=1, checkpoint=tmp_path / "gru4rec.pt",
          progress=False)
    features_cfg = _params.section(FeaturesConfig, "features",
                                   deep_models={"gru4rec": str(tmp_path / "*.pt")}, deep_similarity=True)
    state = deep_family.fit(Inputs(history=history, items=items, sessions=pl.DataFrame()), features_cfg)
    frame = pl.DataFrame({"session": [0, 0, 0, 1, 999], "item": [3, 9, 5, 30, 40]},
                         schema={"session": pl.Int32, "item": pl.Int32})
    chunk = Chunk(events=sessions.drop_nulls("item").select("session", "position", "item"),
                  queries=sessions.select("session", "locale").unique("session"))
    out = deep_family.add(frame, chunk, state, features_cfg)
    assert out.select("session", "item").equals(frame)
    expected = state.models["gru4rec"].score_pairs(sessions, frame)["score"]
    assert out["si_deep_gru4rec_score"].to_list() == pytest.approx(expected.to_list())
    s0 = out.filter(pl.col("session") == 0).sort("si_deep_gru4rec_score", descending=True)
    assert s0["si_deep_gru4rec_rank"].to_list() == [1, 2, 3]
    assert out.filter(pl.col("session") == 999)["si_deep_gru4rec_rank"].to_list() == [1]
    # the cosine with the session's last item: 1 for that item itself, null for an empty session
    last = sessions.filter(pl.col("session") == 0).sort("position")["item"][-1]
    table = item_table(state.models["gru4rec"].trained)[:, :-1]
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    cos = out["si_deep_gru4rec_last_cos"].to_list()
    assert cos[:3] == pytest.approx([float(unit[i] @ unit[last]) for i in (3, 9, 5)], rel=1e-5)
    assert cos[4] is None
    same = deep_family.add(pl.DataFrame({"session": [0], "item": [last]}, schema=frame.schema), chunk, state,
                           features_cfg)
    assert same["si_deep_gru4rec_last_cos"][0] == pytest.approx(1.0, rel=1e-5)
    off = deep_family.add(frame, chunk, state, features_cfg.__class__(**{**vars(features_cfg),
                                                                          "deep_similarity": False}))
    assert "si_deep_gru4rec_last_cos" not in off.columns
    with pytest.raises(NoCheckpointError):
        deep_family.fit(Inputs(history=history.head(50), items=items, sessions=pl.DataFrame()), features_cfg)


def test_sample_budget_caps_each_epoch_and_is_recorded(world, tmp_path):
    items, history, _ = world
    path = tmp_path / "m.pt"
    n_items = history["item"].n_unique()  # 48: 4 passes per item over 3 epochs is 64 sessions an epoch
    capped = train(history, items, cfg("gru4rec", epochs=3, passes_per_item=4), seed=1, checkpoint=path,
                   progress=False)
    assert n_items == 48 and capped.meta["sessions"] == [64, 64, 64]
    assert capped.meta["passes_per_item"] == pytest.approx(4)
    assert capped.meta["stopped_by"] == "epochs"
    assert torch.load(path, weights_only=False)["steps"] == capped.meta["steps"]
    again = train(history, items, cfg("gru4rec", epochs=3, passes_per_item=4), seed=1, progress=False)
    assert same_weights(state(capped), state(again))
    # A cap above the data is no cap: the same weights as without one.
    loose = train(history, items, cfg("gru4rec", epochs=2, passes_per_item=1000), seed=1, progress=False)
    free = train(history, items, cfg("gru4rec", epochs=2), seed=1, progress=False)
    assert same_weights(state(loose), state(free))


def test_thin_sample_budget_is_logged_with_its_knob(world, caplog):
    items, history, _ = world
    sessions = history.group_by("session").agg(pl.len()).filter(pl.col("len") >= 2).height
    n_items = history["item"].n_unique()
    with caplog.at_level(logging.WARNING, logger="candidates.deep.train"):
        thin = train(history, items, cfg("gru4rec", epochs=1, passes_per_item=0.5), seed=1, progress=False)
    assert thin.meta["passes_per_item"] == pytest.approx(24 / n_items)
    assert "passes_per_item" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="candidates.deep.train"):
        full = train(history, items, cfg("gru4rec", epochs=50, max_train_seconds=1e-6), seed=1,
                     progress=False)
    assert full.meta["passes_per_item"] == pytest.approx(sessions * 50 / n_items)
    assert full.meta["passes_per_item"] >= 5 and "passes per item" not in caplog.text


def test_sasrec_positions_count_from_the_session_start():
    """A training prefix [a] inside a longer window and the query [a] are the same input."""
    torch.manual_seed(0)
    model = build(cfg("sasrec", max_len=6), n_items=10, n_locales=2).eval()
    with torch.no_grad():
        window = model(torch.tensor([[0, 0, 3, 4, 5, 6]]), torch.tensor([1]))
        query = model(torch.tensor([[0, 0, 0, 0, 0, 3]]), torch.tensor([1]))
        pair = model(torch.tensor([[0, 0, 0, 0, 3, 4]]), torch.tensor([1]))
    torch.testing.assert_close(window[0, 2], query[0, -1])
    torch.testing.assert_close(window[0, 3], pair[0, -1])


def test_negatives_come_from_the_batch_locale_seen_items():
    counts = np.array([0, 5, 0, 1, 9, 2])  # tokens 1..5: 1, 2 (unseen), 3 in locale 0; 4, 5 in locale 1
    token_locale = np.array([-1, 0, 0, 0, 1, 1])
    sampler = Sampler.build(counts, token_locale, 2, cfg("gru4rec", negatives=400, neg_alpha=1.0), 100,
                            torch.device("cpu"))
    drawn = sampler.draw(0, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {1, 3}
    assert 0.75 < (drawn == 1).float().mean() < 0.92  # 5 / 6 of the draws by count ** 1
    # the expected count of token 1 in a sample: 100 targets x 5/6 plus 400 negatives x 5/6
    assert float(sampler.log_expected[0][1].exp()) == pytest.approx(500 * 5 / 6, rel=1e-5)
    assert set(sampler.draw(1, torch.Generator().manual_seed(0)).tolist()) <= {4, 5}


def test_held_out_sessions_score_each_epoch_and_the_best_epoch_is_served(world, tmp_path):
    items, history, _ = world
    path = tmp_path / "m.pt"
    trained = train(history, items, cfg("gru4rec", epochs=12, valid_sessions=40, patience=2), seed=1,
                    checkpoint=path, progress=False)
    mrr = trained.meta["valid_mrr"]
    assert len(mrr) == trained.meta["epoch"] and max(mrr) > 0.3  # a chain is easy
    assert mrr[trained.meta["best_epoch"] - 1] == max(mrr)
    if trained.meta["stopped_by"] == "early_stop":
        assert trained.meta["epoch"] - trained.meta["best_epoch"] == 2
    assert same_weights(state(load(path, torch.device("cpu"))), state(trained))
    assert trained.meta["sessions"][0] == 300  # the held-out sessions still train on their prefix


def test_unseen_items_are_never_indexed(world):
    items, history, sessions = world
    history = history.filter(pl.col("item") != 5)
    model = {**TINY, "epochs": 1}
    source = GRU4RecSource(source_config("gru4rec", threads=1, model=model)).fit(history, items)
    assert 5 not in source.index().items_of["DE"] and 4 in source.index().items_of["DE"]


def test_a_checkpoint_of_other_encoder_code_is_retrained_and_never_served(world, tmp_path, monkeypatch,
                                                                            caplog):
    from candidates.deep import source as deep_source
    from candidates.deep import train as deep_train

    items, history, _ = world
    path = tmp_path / "valid" / "gru4rec.pt"
    path.parent.mkdir()
    train(history, items, cfg("gru4rec", epochs=2), seed=1, checkpoint=path, progress=False)
    with caplog.at_level(logging.INFO, logger="candidates.deep.train"):
        train(history, items, cfg("gru4rec", epochs=2), seed=1, checkpoint=path, progress=False)
    assert "resuming" in caplog.text and "retraining" not in caplog.text
    caplog.clear()
    changed = deep_train.code_fingerprint()[::-1]  # as if models.py or train.py had been edited
    monkeypatch.setattr(deep_train, "code_fingerprint", lambda: changed)
    monkeypatch.setattr(deep_source, "code_fingerprint", lambda: changed)
    with pytest.raises(NoCheckpointError, match="by this code"):
        GRU4RecSource(source_config("gru4rec", checkpoint=str(path), threads=1)).fit(history, items)
    with caplog.at_level(logging.INFO, logger="candidates.deep.train"):
        train(history, items, cfg("gru4rec", epochs=2), seed=1, checkpoint=path, progress=False)
    assert "retraining" in caplog.text and "resuming" not in caplog.text
    assert torch.load(path, weights_only=False)["key"]["code"] == changed
    GRU4RecSource(source_config("gru4rec", checkpoint=str(path), threads=1)).fit(history, items)


def test_code_fingerprint_covers_the_encoder_modules():
    from candidates.deep import train as deep_train

    assert set(deep_train.CODE_FILES) == {"config.py", "data.py", "models.py", "train.py", "warmstart.py",
                                          "tower.py"}
    assert len(deep_train.code_fingerprint()) == 16


def test_time_budget_stops_between_epochs(world):
    items, history, _ = world
    trained = train(history, items, cfg("gru4rec", epochs=50, max_train_seconds=1e-6), seed=1, progress=False)
    assert trained.meta["epoch"] == 1 and trained.meta["stopped_by"] == "max_train_seconds"


def test_finetune_continues_on_the_chosen_locales_and_resumes(world, tmp_path):
    items, history, _ = world
    path = tmp_path / "m.pt"
    tuned = cfg("gru4rec", epochs=2, finetune_locales=["UK"], finetune_epochs=2)
    straight = train(history, items, tuned, seed=1, progress=False)
    assert straight.meta["epoch"] == 4
    assert straight.meta["sessions"] == [300, 300, 150, 150]  # UK holds the odd half of the sessions
    # pretrained alone (no fine-tuning knobs), then resumed with fine-tuning: the same weights as in one go
    train(history, items, cfg("gru4rec", epochs=2), seed=1, checkpoint=path, progress=False)
    resumed = train(history, items, tuned, seed=1, checkpoint=path, progress=False)
    assert same_weights(state(resumed), state(straight))
    assert same_weights(state(load(path, torch.device("cpu"))), state(straight))
    # a checkpoint already fine-tuned on UK is not resumed for DE: trained again from the start
    de = cfg("gru4rec", epochs=2, finetune_locales=["DE"], finetune_epochs=2)
    on_de = train(history, items, de, seed=1, checkpoint=path, progress=False)
    assert same_weights(state(on_de), state(train(history, items, de, seed=1, progress=False)))
    plain = train(history, items, cfg("gru4rec", epochs=4), seed=1, progress=False)
    assert not same_weights(state(plain), state(straight))
    with pytest.raises(ValueError, match="no training session of finetune_locales"):
        train(history, items, cfg("gru4rec", epochs=1, finetune_locales=["JP"], finetune_epochs=1), seed=1,
              progress=False)
    with pytest.raises(ValueError, match="finetune_epochs"):
        cfg("gru4rec", finetune_epochs=1)


def test_ppmi_svd_warm_start_puts_covisited_items_together():
    from candidates.deep.warmstart import item_vectors

    # two disjoint groups of items that are only ever viewed together: 1-4 and 5-8; item 9 never in a pair
    rng = np.random.default_rng(0)
    rows = [[0, 0, *rng.permutation(g)[:3]] for g in ([1, 2, 3, 4], [5, 6, 7, 8]) for _ in range(50)]
    tokens = np.array([*rows, [0, 0, 0, 0, 9]])
    vectors, covered = item_vectors(tokens, 10, dim=2, seed=0)  # one dimension per group
    assert covered.tolist() == [False] + [True] * 8 + [False] and not vectors[9].any()
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    within, across = unit[1] @ unit[2], unit[1] @ unit[6]
    assert within > 0.9 and abs(across) < 0.1
    assert np.linalg.norm(vectors[covered], axis=1).mean() == pytest.approx(1.0, rel=1e-4)


def test_warm_start_knob_sets_the_covered_item_rows(world):
    items, history, _ = world
    warm = train(history, items, cfg("gru4rec", epochs=1, init="ppmi_svd"), seed=1, progress=False)
    cold = train(history, items, cfg("gru4rec", epochs=1), seed=1, progress=False)
    assert not same_weights(state(warm), state(cold))
    with pytest.raises(ValueError, match="init"):
        cfg("gru4rec", init="glove")


def test_shared_product_rows_give_twins_one_vector_and_keep_their_bias(world, tmp_path):
    items, history, sessions = world
    # item i of DE and item i + 24 of UK are one product (ASIN); UK's last product has no ASIN
    twins = items.with_columns(product=pl.when(pl.col("item") < 2 * N_PER_LOCALE - 1)
                               .then(pl.col("item") % N_PER_LOCALE).cast(pl.Int32))
    path = tmp_path / "m.pt"
    trained = train(history, twins, cfg("gru4rec", share_products=True), seed=1, checkpoint=path,
                    progress=False)
    table = item_table(trained)
    assert trained.model.item_emb.num_embeddings == N_PER_LOCALE + 1 + 1  # PAD, 24 products, 1 lone item
    assert np.array_equal(table[3, :-1], table[3 + N_PER_LOCALE, :-1])  # one vector ...
    assert table[3, -1] != table[3 + N_PER_LOCALE, -1]  # ... each its own bias
    assert not np.array_equal(table[N_PER_LOCALE - 1, :-1], table[2 * N_PER_LOCALE - 1, :-1])
    assert np.array_equal(item_table(load(path, torch.device("cpu"))), table)
    shared = source_config("gru4rec", threads=1, model={**TINY, "share_products": True})
    source = source_class("gru4rec")(shared, seed=3).fit(history, twins)
    last = sessions.drop_nulls("item").sort("position").group_by("session").agg(pl.col("item").last())
    hits = (last.with_columns(nxt=pl.col("item") + 1)
            .join(source.generate(sessions, 3), left_on=["session", "nxt"], right_on=["session", "item"],
                  how="semi"))
    assert hits.height >= 0.6 * last.height
    with pytest.raises(ValueError, match="share_products"):
        cfg("gru4rec", share_products=True, init="ppmi_svd")
    with pytest.raises(ValueError, match="share_products"):
        cfg("gru4rec", share_products=True, item_tower="meta")


def _with_attributes(items: pl.DataFrame, placeholders: bool) -> pl.DataFrame:
    n = items.height
    if placeholders:  # the shared real files: empty titles, no brand, colour or price
        return items.with_columns(title=pl.lit(""), brand=pl.lit(None, pl.String),
                                  color=pl.lit(None, pl.String), price=pl.lit(None, pl.Float64))
    titles = [f"chain step{i % N_PER_LOCALE} kind{i // 6}" for i in range(n)]
    return items.with_columns(title=pl.Series(titles),
                              brand=pl.Series([f"b{i // 6}" for i in range(n)]), color=pl.lit("red"),
                              price=pl.Series([float(i) for i in range(n)]))


def test_item_attributes_hash_words_and_mark_placeholders():
    from candidates.deep.tower import TITLE_WORDS, item_attributes

    items = pl.DataFrame({"item": [0, 1, 2], "locale": ["DE", "DE", "UK"], "title": ["Red cup", "", None],
                          "brand": ["acme", None, ""], "color": [None, "blue", None],
                          "price": [9.5, None, None]})
    attrs = item_attributes(items, 3, ["DE", "UK"], buckets=1000)
    assert attrs["title"].shape == (4, TITLE_WORDS)
    assert (attrs["title"][1, :2] > 0).all() and (attrs["title"][1, 2:] == 0).all()
    assert (attrs["title"][2:] == 0).all()
    assert attrs["has"].tolist() == [False, True, True, False]  # the pad; a title; a colour; nothing
    assert attrs["locale"].tolist() == [0, 1, 1, 2] and attrs["price"][1] > 0 and attrs["price"][2] == 0


@pytest.mark.parametrize("tower", ["meta", "meta_id"])
def test_metadata_tower_indexes_items_no_session_shows(world, tower):
    items, history, sessions = world
    items = _with_attributes(items, placeholders=False)
    unseen = history.filter(pl.col("item") != 5)  # item 5 only has its attributes
    source = source_class("gru4rec")(source_config("gru4rec", threads=1,
                                                   model={**TINY, "epochs": 2, "item_tower": tower}), seed=1)
    source.fit(unseen, items)
    assert 5 in source.trained.meta["indexable"].tolist()
    table = source.trained.model.item_table()
    assert table[5 + 1, :-1].norm() > 0
    out = schemas.check(source.generate(sessions, 5), schemas.CANDIDATES, "gru4rec")
    assert out.select("session", "item").is_duplicated().sum() == 0


def test_metadata_tower_on_placeholders_falls_back_to_ids_and_says_so(world, caplog):
    items, history, _ = world
    items = _with_attributes(items, placeholders=True)
    with caplog.at_level(logging.INFO, logger="candidates.deep.train"):
        with_tower = train(history, items, cfg("gru4rec", epochs=1, item_tower="meta"), seed=1,
                           progress=False)
    assert "0 of 48 items (0.0%)" in caplog.text and "fall back to their id row" in caplog.text
    assert "placeholders" in caplog.text
    plain = train(history, items, cfg("gru4rec", epochs=1), seed=1, progress=False)
    assert with_tower.meta["indexable"].tolist() == plain.meta["indexable"].tolist()


def test_meta_id_rare_items_are_their_attributes_alone(world, caplog):
    items, history, _ = world
    items = _with_attributes(items, placeholders=False)
    counts = history.group_by("item").len()
    rare = counts.filter(pl.col("len") < counts["len"].max())["item"].to_list()
    threshold = int(counts["len"].max())  # every item but the most frequent ones is rare
    with caplog.at_level(logging.INFO, logger="candidates.deep.train"):
        trained = train(history, items, cfg("gru4rec", epochs=2, item_tower="meta_id",
                                             tower_id_min_count=threshold), seed=1, progress=False)
    assert f"fewer than tower_id_min_count {threshold} times" in caplog.text
    model = trained.model
    tokens = torch.tensor([i + 1 for i in rare])
    before = model.item_emb.weight[tokens].detach().clone()
    assert torch.allclose(model.item_vectors(tokens), model.tower(tokens))  # the attributes alone
    common = torch.tensor([i + 1 for i in counts.filter(pl.col("len") == threshold)["item"].to_list()])
    assert not torch.allclose(model.item_vectors(common), model.tower(common))  # tower + id row
    model.item_vectors(tokens).sum().backward()
    grad = model.item_emb.weight.grad.to_dense()[tokens]
    assert torch.count_nonzero(grad) == 0 and torch.equal(model.item_emb.weight[tokens], before)
