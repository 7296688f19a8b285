"""The report stage: dataset analysis cores on hand-made frames, and the whole page on the tiny world."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from pathlib import Path

import polars as pl
import pytest
import yaml

from core import schemas
from core.io import write_json
from pipeline import recall, report
from pipeline.reporting import analysis, page, plots

CFG = report.ReportConfig(top_features=5, tail_points=20, dpi=40)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless the file is a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND", f"{path} is truncated"
    return struct.unpack(">II", data[16:24])


def fake_metrics(world, metrics_dir: Path) -> report.Results:
    """Every optional input, shaped as the stages that own them write it."""
    queries = pl.read_parquet(world.split / "valid" / "queries.parquet")
    targets = pl.read_parquet(world.split / "valid" / "targets.parquet")
    # A union holding the target of two sessions in three: covisit ranks it 1..150, popularity only sometimes.
    found = targets.filter(pl.col("session") % 3 != 0)
    union = found.with_columns(
        cand_covisit_rank=(pl.col("session") % 150 + 1).cast(pl.Int32),
        cand_popularity_rank=pl.when(pl.col("session") % 2 == 0).then(pl.col("session") % 40 + 1)
        .cast(pl.Int32))
    proposed = pl.col("^cand_.*_rank$").is_not_null().cast(pl.Int32)
    union = union.with_columns(n_sources=pl.sum_horizontal(proposed))
    recall_json, _ = recall.recall_report(union, targets, queries)
    results = report.Results.under(metrics_dir, metrics_dir / "plots")
    results.importance.parent.mkdir()
    write_json(recall_json, results.recall)
    pl.DataFrame({"feature": ["si_cv_last1", "cand_covisit_score", "s_length", "i_pop_locale",
                              "si_same_brand",
                              "cand_popularity_rank", "s_locale"],
                  "gain_share": [0.4, 0.25, 0.1, 0.1, 0.07, 0.05, 0.03],
                  "gain": [40.0, 25.0, 10.0, 10.0, 7.0, 5.0, 3.0], "split": [9, 8, 7, 6, 5, 4, 3]}
                 ).write_csv(results.importance)
    write_json({"mrr@100": 0.41, "best_source": "source_covisit", "best_source_mrr@100": 0.35,
                "target_in_candidates": 0.8, "eval_sessions": 120}, results.ranker)
    ranking = {"mrr@100": 0.3, "recall@100": 0.7, "ndcg@100": 0.4, "n": 10, "ceiling_mrr@100": 0.5,
               "share_of_ceiling": 0.6}
    board = {
        "task1_phase1": {"popularity": {"all": {**ranking, "mrr@100": 0.01, "share_of_ceiling": 0.02},
                                        "DE": ranking, "JP": ranking, "UK": ranking},
                         "ranker": {"all": ranking, "DE": ranking, "JP": ranking}},
        "task2_phase1": {"popularity": {"all": {k: v for k, v in ranking.items() if "ceiling" not in k}}},
        "task3_phase1": {"last_title": {"all": {"bleu": 0.25, "n": 10}, "ES": {"bleu": 0.2, "n": 3}},
                         "task3_chooser": {"all": {"bleu": 0.27, "n": 10}, "ES": {"bleu": 0.23, "n": 3}}},
    }
    write_json(board, results.leaderboard)
    write_json({"task1": {"method": "ranker", "valid_mrr@100": {"ranker": 0.41, "source_covisit": 0.35}},
                "task3": {"method": "per locale", "min_gain": 0.0, "per_locale": {"ES": {
                    "method": "task3_chooser", "gain": 0.01,
                    "valid": {"task3_chooser": {"bleu": 0.21, "last_title": 0.2, "n": 30}}}}}},
               results.publish)
    write_json({"published": {"valid_gain": 1.0, "test_gain": {"phase1": 3.0, "phase2": None},
                              "gap": {"phase1": -2.0, "phase2": None}}}, results.task3_gap)
    write_json({"locales": {"DE": {"sessions": 10, "repeat_share": 0.3},
                            "ES": {"sessions": 4, "repeat_share": 0.2}},
                "probes": {"task1_phase1": {"covisit": {"mrr@100": 0.3}, "popularity": {"mrr@100": 0.01}}}},
               results.data_stats)
    return results


@pytest.fixture(scope="module")
def built(tiny_world, tmp_path_factory):
    metrics_dir = tmp_path_factory.mktemp("metrics")
    results = fake_metrics(tiny_world, metrics_dir)
    out = tmp_path_factory.mktemp("reports")
    page = report.build_report(report.read_prepared(tiny_world.prepared), results, out, CFG)
    report.write_page(page, out)
    return out, metrics_dir


def test_every_plot_is_a_png_referenced_from_both_pages(built):
    out, _ = built
    markdown = (out / "index.md").read_text()
    page = (out / "index.html").read_text()
    linked_md = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    linked_html = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(linked_md) == sorted(report.PLOTS.values())
    assert linked_html == linked_md
    for name in report.PLOTS.values():
        width, height = png_size(out / name)
        assert width > 100 and height > 100
    assert sorted(p.name for p in out.glob("*.png")) == sorted(report.PLOTS.values())
    assert report.MISSING not in markdown
    assert not list(out.glob(".*tmp"))


def test_page_holds_the_tables(built):
    out, metrics_dir = built
    markdown = (out / "index.md").read_text()
    assert "share of ceiling" in markdown and "60.0%" in markdown and "2.0%" in markdown
    assert "task3_phase1" in markdown and "bleu ES" in markdown
    assert "repeat_share" in markdown  # data_stats.json flattened into a table
    union = json.loads((metrics_dir / report.RECALL).read_text())["overall"]["union"]["recall"]
    assert f"{union:.1%}" in markdown
    assert "<table>" in (out / "index.html").read_text()
    # the Task 3 choice, its valid gain and the test gain beside it (sacrebleu scale): 1.0 vs 3.0
    row = next(line for line in markdown.splitlines() if "task3_chooser *" in line)
    assert [c.strip() for c in row.strip("|").split("|")][2:5] == ["+1.00", "+3.00", "n/a"], row
    # the published file's valid-vs-test gap (metrics/task3_gap.json, stage score)
    assert "valid gain over the last title +1.00 BLEU" in markdown and "phase1 +3.00, phase2 n/a" in markdown


def test_missing_inputs_are_reported_not_fatal(tiny_world, tmp_path, monkeypatch):
    # The dataset plots are covered above; skip them here to keep the test fast.
    monkeypatch.setattr(report, "dataset_section", lambda page, *_: page.heading("Dataset"))
    out = tmp_path / "reports"
    page = report.build_report({}, report.Results.under(tmp_path / "metrics", tmp_path / "plots"), out, CFG)
    report.write_page(page, out)
    markdown = (out / "index.md").read_text()
    for name in (report.RECALL, report.RANKER, report.IMPORTANCE, report.LEADERBOARD, report.DATA_STATS,
                 report.PUBLISH):
        assert re.search(rf"{re.escape(name)}`[^\n]*{report.MISSING}", markdown), name
    assert not list(out.glob("*.png")) and "<img" not in (out / "index.html").read_text()


def test_main_runs_as_the_dvc_stage_and_is_deterministic(built, tiny_world, project_dir, monkeypatch):
    out, metrics_dir = built
    monkeypatch.chdir(project_dir)
    monkeypatch.setattr("sys.argv", ["report", "--prepared", str(tiny_world.prepared), "--metrics",
                                     str(metrics_dir), "--plots", str(metrics_dir / "plots"), "--out",
                                     "reports"])
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    assert set(params["report"]) == {f.name for f in dataclasses.fields(report.ReportConfig)}
    params["report"] = dataclasses.asdict(CFG)  # the fixture's small settings, so the bytes must match
    (project_dir / "params.yaml").write_text(yaml.safe_dump(params))
    report.main()
    again = project_dir / "reports"
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in out.iterdir())
    for path in sorted(out.iterdir()):
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


# ---- the dataset analysis cores, on frames small enough to check by hand ----

SESSIONS = pl.DataFrame({"session": [0, 1, 2, 3], "dataset": ["train", "train", "train", "task1_phase1"],
                         "row": [0, 1, 2, 0], "locale": ["DE", "DE", "ES", "DE"], "length": [3, 2, 2, 4]},
                        schema_overrides={"session": pl.Int32, "row": pl.Int32, "length": pl.Int32})
EVENTS = pl.DataFrame({"session": [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3],
                       "position": [2, 1, 0, 0, 1, 0, 1, 0, 1, 2, 3],
                       "item": [5, 6, 5, 7, 7, 8, 9, 5, 5, 5, 5]}, schema=schemas.EVENTS)
TARGETS = pl.DataFrame({"session": [0, 1], "item": [7, 5]}, schema=schemas.TARGETS)


def test_repeat_shares_follow_position_order():
    shares = analysis.repeat_shares(SESSIONS, EVENTS).sort("locale")
    # Session 0 is 5,6,5: repeats, no consecutive duplicate; session 1 is 7,7: both; ES session 2: neither.
    # The test session 3 is not counted.
    assert shares.rows() == [("DE", 2, 1.0, 0.5), ("ES", 1, 0.0, 0.0)]


def test_session_lengths_count_the_train_target():
    lengths = analysis.session_lengths(SESSIONS, TARGETS)
    assert lengths.rows() == [("DE", 3, 1), ("DE", 4, 1), ("ES", 2, 1)]


def test_item_counts_and_tail():
    viewed = analysis.interactions(SESSIONS, EVENTS, TARGETS)
    assert viewed.height == EVENTS.height + TARGETS.height
    counts = analysis.item_counts(viewed)
    de = counts.filter(pl.col("locale") == "DE")
    assert de.select("item", "count", "rank").rows() == [(5, 7, 1), (7, 3, 2), (6, 1, 3)]
    curve = analysis.tail_curve(counts, points_per_decade=1)
    assert curve.filter(pl.col("locale") == "DE")["rank"].to_list() == [1, 3]  # first, and the last rank
    tops = analysis.top_share(counts).filter(pl.col("locale") == "DE")
    assert tops["top_share"][0] == pytest.approx(7 / 11)


def test_locale_overlap_is_asymmetric_and_catalogue_only():
    items = pl.DataFrame({"item": [0, 1, 2, 3, 4, 5], "id": ["a", "b", "c", "a", "z", "q"],
                          "locale": ["DE", "DE", "DE", "ES", "ES", "ES"],
                          "in_catalog": [True, True, True, True, True, False]})
    overlap = {(a, b): v for a, b, v in analysis.locale_overlap(items).iter_rows()}
    assert overlap == {("DE", "DE"): 1.0, ("DE", "ES"): pytest.approx(1 / 3),
                       ("ES", "DE"): 0.5, ("ES", "ES"): 1.0}


def test_recall_curves_read_the_recall_stage_shape():
    rep = {"overall": {"n": 3, "union": {"recall": 0.9, "recall@20": 0.5, "recall@100": 0.8,
                                         "candidates_per_session": 10.0},
                       "sources": {"a": {"recall@20": 0.4, "recall@100": 0.6, "marginal": 0.1}}},
           "by_locale": {"DE": {"union": {"recall@20": 0.3, "recall@100": 0.7}}}}
    curves = analysis.recall_curves(rep)
    assert curves.rows() == [("source", "a", 20, 0.4), ("source", "a", 100, 0.6),
                             ("source", "union", 20, 0.5), ("source", "union", 100, 0.8),
                             ("locale", "DE", 20, 0.3), ("locale", "DE", 100, 0.7)]


def test_recall_curves_end_at_the_deepest_rank_a_source_proposed():
    """A source of k = 5 has one point (K = 5), not a flat line to K = 200; one of k = 60 stops at 60."""
    rep = {"overall": {"n": 3, "union": {"recall": 0.9, "recall@20": 0.5, "recall@100": 0.8},
                       "sources": {"short": {"recall@20": 0.1, "recall@100": 0.1, "max_rank": 5},
                                   "mid": {"recall@20": 0.3, "recall@100": 0.4, "max_rank": 60},
                                   "deep": {"recall@20": 0.2, "recall@100": 0.5, "max_rank": 250}}}}
    curves = analysis.recall_curves(rep).filter(pl.col("scope") == "source")
    points = {name: part.select("k", "recall").rows() for (name,), part in curves.group_by("name")}
    assert points["short"] == [(5, 0.1)]
    assert points["mid"] == [(20, 0.3), (60, 0.4)]
    assert points["deep"] == [(20, 0.2), (100, 0.5)]  # no K at or past 250 was measured


def test_one_colour_per_method_in_every_plot():
    names = ["ranker", "source_covisit", "covisit", "popularity", "sknn", "source_sknn"]
    colours = plots.method_colours(names)
    assert colours["covisit"] == colours["source_covisit"] and colours["sknn"] == colours["source_sknn"]
    assert len({colours[m] for m in ("ranker", "covisit", "popularity", "sknn")}) == 4
    many = plots.method_colours([f"m{i}" for i in range(40)])
    assert len(set(many.values())) == 40


def test_html_escapes_text_and_renders_code_spans():
    p = page.Page("a <title>")
    p.heading("`x` & y")
    p.para("see `metrics/recall.json` <b>")
    p.table(["h"], [["<c>"]])
    p.image("plot.png", "alt \"q\"")
    html = p.html()
    assert "<h2><code>x</code> &amp; y</h2>" in html and "&lt;b&gt;" in html and "<td>&lt;c&gt;</td>" in html
    assert '<img src="plot.png" alt="alt &#34;q&#34;">' in html and "<title>a &lt;title&gt;</title>" in html
    md = p.markdown()
    assert md.startswith("# a <title>\n\n## `x` & y\n\nsee `metrics/recall.json` <b>\n\n"
                         "| h |\n|---|\n| <c> |")
    assert md.endswith("![alt \"q\"](plot.png)\n")


def test_nested_stats_split_by_depth_and_order_locales():
    tables = page.nested_tables("t",
                                  {"task1": {"n": 5, "covis": {"UK": 0.3, "DE": 0.2}}, "task2": {"n": 7}})
    assert [(head, rows) for _, head, rows in tables] == [
        (["", "n"], [["task1", "5"], ["task2", "7"]]),
        (["", "DE", "UK"], [["task1 / covis", "0.2", "0.3"]])]
