"""The synthetic Amazon-M2: real formats, determinism, the no-repeat rule, proportions, the oracle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core import raw
from core.dataconfig import DataConfig
from pipeline import synthetic
from pipeline.generate import MissingFilesError, build, check_files, link_files
from pipeline.synthetic.catalogue import build_world
from pipeline.synthetic.config import BRAND, CAT, DRIFT, POP, REL, TIER, VAR
from pipeline.synthetic.oracle import oracle_ranks
from pipeline.synthetic.sessions import simulate
from tests._params import section, synthetic_config

SCALE = 0.002


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic") / "raw"
    return out, synthetic.generate(out, SCALE, seed=3, cfg=synthetic_config())


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_writes_every_file_in_the_real_layout(world):
    out, result = world
    products, report = raw.read_products(out / "products_train.csv")
    assert products.columns == list(raw.PRODUCT_COLUMNS) and report.skipped == {}
    train, _ = raw.read_sessions(out / "sessions_train.csv", with_target=True)
    assert train.height == sum(result["train_sessions"].values())
    for task in raw.TASKS:
        for phase in raw.PHASES:
            test, _ = raw.read_sessions(out / raw.test_file(task, phase), with_target=False)
            gt = raw.read_ground_truth(out / "gt" / raw.gt_file(task, phase), task)
            assert test.height == gt.height == result["test_rows"][f"task{task}_phase{phase}"]
            assert set(test["locale"].unique()) == set(raw.TASK_LOCALES[task])
            assert (test["locale"] == gt["locale"]).all()
    ceiling = json.loads((out / "gt" / "ceiling.json").read_text())
    assert set(ceiling) == {"task1_phase1", "task1_phase2", "task2_phase1", "task2_phase2"}
    for name, per in ceiling.items():
        assert 0 < per["all"]["mrr@100"] <= per["all"]["recall@100"] <= 1
        assert set(per) >= {"all", *raw.TASK_LOCALES[int(name[4])]}


def test_prev_items_are_numpy_reprs_wrapping_five_per_line(world):
    out, _ = world
    text = (out / "sessions_train.csv").read_text()
    train, _ = raw.read_sessions(out / "sessions_train.csv", with_target=True)
    long = train.filter(pl.col("prev_items").list.len() > 5)
    assert long.height > 0 and '\n \'' in text
    for ids in long["prev_items"].head(20).to_list():
        assert f'"{np.array(ids)}"' in text  # exactly numpy's str(), quoted because it wraps


def test_deterministic_for_seed_and_different_across_seeds(tmp_path):
    synthetic.generate(tmp_path / "a", SCALE, seed=11, cfg=synthetic_config())
    synthetic.generate(tmp_path / "b", SCALE, seed=11, cfg=synthetic_config())
    synthetic.generate(tmp_path / "c", SCALE, seed=12, cfg=synthetic_config())
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["sessions_train.csv"] != _digest(tmp_path / "c")["sessions_train.csv"]


def test_next_item_never_in_its_session_and_in_its_catalogue(world):
    out, _ = world
    products, _ = raw.read_products(out / "products_train.csv")
    train, _ = raw.read_sessions(out / "sessions_train.csv", with_target=True)
    assert not train.select(pl.col("prev_items").list.contains(pl.col("next_item")).any()).item()
    for task in (1, 2):
        test, _ = raw.read_sessions(out / raw.test_file(task, 1), with_target=False)
        gt = raw.read_ground_truth(out / "gt" / raw.gt_file(task, 1), task)
        both = test.with_columns(next_item=gt["next_item"])
        assert not both.select(pl.col("prev_items").list.contains(pl.col("next_item")).any()).item()
        missing = both.join(products, left_on=["next_item", "locale"], right_on=["id", "locale"], how="anti")
        assert missing.height == 0


def test_locale_proportions_follow_table_2(world):
    out, result = world
    products, _ = raw.read_products(out / "products_train.csv")
    counts = dict(products.group_by("locale").len().iter_rows())
    expected = synthetic.scaled_counts(SCALE)
    assert counts == expected["products"]            # exact per-locale catalogue sizes
    assert result["train_sessions"] == expected["train"]
    de = set(products.filter(pl.col("locale") == "DE")["id"])
    for small in ("ES", "FR", "IT"):
        ids = set(products.filter(pl.col("locale") == small)["id"])
        assert 0.3 <= len(ids & de) / len(ids) <= 0.5
    jp = set(products.filter(pl.col("locale") == "JP")["id"])
    assert len(jp & de) / len(jp) < 0.1


def test_task3_titles_are_new_and_share_words_with_the_catalogue(world):
    out, _ = world
    products, _ = raw.read_products(out / "products_train.csv")
    gt = raw.read_ground_truth(out / "gt" / "gt_task3_phase1.csv", 3)
    assert gt["next_item_title"].null_count() == 0
    titles = set(products["title"])
    words = {w for t in titles for w in t.split()}
    new = gt["next_item_title"].to_list()
    assert sum(t not in titles for t in new) / len(new) > 0.5
    assert np.mean([len(set(t.split()) & words) / len(t.split()) for t in new]) > 0.5


def test_oracle_rank_matches_brute_force():
    """The class-count oracle equals ranking every locale item by the explicit mixture."""
    rng = np.random.default_rng(0)
    cfg = synthetic_config()
    w = build_world(rng, 0.001, cfg)
    loc = np.repeat(np.arange(6), 40)
    sim = simulate(rng, w, loc, np.full(len(loc), 4), cfg)
    idx = np.arange(len(loc))
    fast = oracle_ranks(w, sim, idx)
    st, W = sim["state"], sim["weights"]
    for s in idx[::7]:
        items = np.flatnonzero(w.ent_loc == st.loc[s])
        score = np.zeros(len(w.pop))
        g = w.g_li.lookup(w.code_li(st.loc[[s]], st.intent[[s]]))[0]
        in_cat = (w.ent_cat == st.intent[s]) & (w.ent_loc == st.loc[s])
        score[items] += W[s, POP] * w.pop[items] / w.pop[items].sum()
        score[in_cat] += W[s, CAT] * w.pop[in_cat] / w.g_li.mass[g]
        for comp, extra in ((BRAND, w.ent_brand == st.brand[s]),
                            (TIER, w.ent_tier == st.tier[s])):
            m = in_cat & extra
            if m.any():
                score[m] += W[s, comp] * w.pop[m] / w.pop[m].sum()
        for cat, q in zip(w.drift_cat[st.loc[s], st.intent[s]], w.drift_q[st.loc[s], st.intent[s]],
                          strict=True):
            m = (w.ent_cat == cat) & (w.ent_loc == st.loc[s])
            if q > 0:
                score[m] += W[s, DRIFT] * q * w.pop[m] / w.pop[m].sum()
        cur = st.cur[s]
        fam = (w.ent_fam == w.ent_fam[cur]) & (w.ent_loc == st.loc[s])
        fam[cur] = False
        if fam.any():
            score[fam] += W[s, VAR] * w.pop[fam] / w.pop[fam].sum()
        for r, rw in zip(w.rel[cur], w.rel_w[cur], strict=True):
            if r >= 0:
                score[r] += W[s, REL] * rw / w.rel_tot[cur]
        own = sim["flat"][sim["offsets"][s]: sim["offsets"][s] + sim["n_prev"][s]]
        candidates = np.setdiff1d(items, own)
        target = sim["target"][s]
        assert target in candidates
        slow = 1 + int((score[candidates] > score[target] * (1 + 1e-9)).sum())
        assert fast[s] == slow


def test_generate_stage_files_source_links_and_names_missing(tmp_path):
    src = tmp_path / "kdd"
    src.mkdir()
    with pytest.raises(MissingFilesError, match="products_train.csv"):
        link_files(src, tmp_path / "out0")
    sample = Path(__file__).resolve().parents[2] / "shared" / "kdd_format_sample"
    out = tmp_path / "data" / "raw"
    # data.test_files lists the test files that exist; one listed but absent is an error naming it
    with pytest.raises(MissingFilesError, match="sessions_test_task1_phase2.csv: file not found"):
        build(out, section(DataConfig, "data", source="files", raw_dir=str(sample)),
              synthetic_config(), 1)
    build(out, section(DataConfig, "data", source="files", raw_dir=str(sample), test_files=("task1_phase1",)),
          synthetic_config(), 1)
    assert (out / "sessions_train.csv").read_bytes() == (sample / "sessions_train.csv").read_bytes()
    assert (out / "gt" / "gt_task1_phase1.csv").exists()
    build(out, section(DataConfig, "data", source="synthetic", scale=0.001), synthetic_config(), 1)
    assert (out / "gt" / "ceiling.json").exists()
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())


def test_oracle_files_classify_every_target_and_agree_with_the_ceiling(world):
    out, _ = world
    ceiling = json.loads((out / "gt" / "ceiling.json").read_text())
    for name in ceiling:
        task, phase = int(name[4]), int(name[-1])
        oracle = pl.read_csv(out / "gt" / raw.oracle_file(task, phase))
        gt = raw.read_ground_truth(out / "gt" / raw.gt_file(task, phase), task)
        assert oracle.height == gt.height and (oracle["locale"] == gt["locale"]).all()
        assert set(oracle["target_class"].unique()) <= set(raw.TARGET_CLASSES)
        related = oracle.filter(pl.col("target_class").str.starts_with("related"))
        assert (related["related_rank"] >= 1).all()
        assert (oracle.filter(~pl.col("target_class").str.starts_with("related"))["related_rank"] == 0).all()
        hit = oracle["oracle_rank"] <= 100
        mrr = float(pl.Series(np.where(hit, 1.0 / oracle["oracle_rank"].to_numpy(), 0.0)).mean())
        assert mrr == pytest.approx(ceiling[name]["all"]["mrr@100"], rel=1e-9)
        # The first related item is the oracle's single most likely next item, ahead of every other class.
        first = oracle.filter(pl.col("target_class") == "related_1")["oracle_rank"]
        assert first.len() > 0 and first.to_numpy().mean() < oracle["oracle_rank"].to_numpy().mean()


def test_oracle_gap_of_a_perfect_and_an_empty_submission(world, tmp_path):
    from core import submission
    from pipeline import score

    out, _ = world
    gt = raw.read_ground_truth(out / "gt" / raw.gt_file(1, 1), 1)
    oracle = score.read_oracle(out / "gt", 1, 1)
    perfect = pl.DataFrame({"locale": gt["locale"], "next_item_prediction": gt["next_item"].map_elements(
        lambda x: [x], return_dtype=pl.List(pl.String))})
    gap = score.oracle_gap(perfect, gt, oracle, 1)
    assert gap["all"]["mrr@100"] == 1.0 and gap["all"]["gap_points"] < 0
    assert sum(c["share"] for k, c in gap.items() if k != "all") == pytest.approx(1.0)
    empty = perfect.with_columns(next_item_prediction=pl.lit([], dtype=pl.List(pl.String)))
    gap = score.oracle_gap(empty, gt, oracle, 1)
    assert gap["all"]["mrr@100"] == 0.0
    per_class = sum(c["gap_points"] for k, c in gap.items() if k != "all")
    assert per_class == pytest.approx(gap["all"]["gap_points"])
    assert gap["all"]["gap_points"] == pytest.approx(gap["all"]["oracle_mrr@100"])
    with pytest.raises(submission.SubmissionError, match="oracle file"):
        score.oracle_gap(perfect, gt, oracle.head(3), 1)


def test_leaderboard_gap_board_reads_oracle_files_and_is_empty_without_them(world, tmp_path):
    import shutil

    from pipeline import score

    out, _ = world
    gt = raw.read_ground_truth(out / "gt" / raw.gt_file(1, 1), 1)
    subs = tmp_path / "submissions" / "perfect"
    subs.mkdir(parents=True)
    pl.DataFrame({"locale": gt["locale"], "next_item_prediction": gt["next_item"].map_elements(
        lambda x: [x], return_dtype=pl.List(pl.String))}).write_parquet(subs / "task1_phase1.parquet")
    board = score.leaderboard(tmp_path / "submissions", out / "gt")[1]
    assert set(board) == {"task1_phase1"} and board["task1_phase1"]["perfect"]["all"]["mrr@100"] == 1.0
    assert "| perfect | related_1 |" in score.format_gap(board)
    real_gt = tmp_path / "real_gt"  # real data: ground truth without oracle files
    real_gt.mkdir()
    shutil.copy(out / "gt" / raw.gt_file(1, 1), real_gt / raw.gt_file(1, 1))
    assert score.leaderboard(tmp_path / "submissions", real_gt)[1] == {}


def test_check_files_names_the_missing_folder_and_a_misnamed_file(tmp_path):
    with pytest.raises(MissingFilesError, match="folder not found"):
        check_files(tmp_path / "absent")
    for name in ("products_train.csv", "sessions_train.csv", "sessions_test_task1.csv"):
        (tmp_path / name).write_text("")
    with pytest.raises(MissingFilesError, match="found sessions_test_task1.csv: rename it to "
                                                "sessions_test_task1_phase1.csv"):
        check_files(tmp_path, ("task1_phase1",))
    (tmp_path / "sessions_test_task1.csv").rename(tmp_path / "sessions_test_task1_phase1.csv")
    assert check_files(tmp_path, ("task1_phase1",)) == ("sessions_test_task1_phase1.csv",)
