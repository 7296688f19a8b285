"""The ground-truth probes of a raw directory: how hard its test targets are, for the score stage.

    python -m pipeline.score ... --raw data/raw --probes metrics/gt_probes.json
    m2 stats data/raw --probes

Only the score stage reads gt/ (the stats stage describes the data without it). For every task-1/2
test file with ground truth: share of targets never seen in train, share following the session's last
item somewhere in train, share sharing the first five id characters with the last item, targets
missing from their locale's catalogue, and MRR@100 / Recall@100 of two probes (per-locale popularity;
a plain symmetric window-3 co-visitation fitted on train sessions and all test prev_items) plus the
oracle ceiling when gt/ceiling.json exists; and the issue-13 checks those figures decide.

Locale by locale: each locale's sessions are exploded, counted and paired on their own (sessions never
cross locales), ids as int codes, so the long frames hold one locale at a time; what crosses locales (an
ASIN sold in several) is summed from per-locale counts. Co-visitation is kept only for the items a
probe looks up, and a target's rank is counted, not sorted out of every candidate.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core import raw
from core.io import peak_rss_mib
from core.metrics import within_targets

log = logging.getLogger(__name__)

K = 100
WINDOW = 3
COVIS_WEIGHTS = (1.0, 0.5, 0.25)  # the session's last, second-last, third-last item
# Sessions ranked at once: a session's candidates grow with the data (a popular item's neighbours), so
# the frames are cut by sessions; the ranks do not depend on it.
CHUNK_SESSIONS = 20_000
# Real figures (DESIGN.md "What real sessions look like") and the targets of issue 13.
REAL = {
    "covis_over_popularity_mrr_task1": ("~100x", (20, float("inf"))),
    "covis_over_popularity_mrr_task2": ("~100x", (20, float("inf"))),
    "covis_recall_task2": ("0.65", (0.45, 0.80)),
    "ceiling_over_covis_mrr": ("unknown (winners ~1.2x covis)", (1.3, float("inf"))),
    "target_prefix5_share": ("0.14", (0.08, 0.25)),
}


def _locale_sessions(train: pl.DataFrame, tests: dict[str, pl.DataFrame], locale: str) -> pl.DataFrame:
    """seq:Int64, train:bool, items:list[str] of one locale's sessions: train sessions (target last)
    numbered from 0, then each test file's after them, in file order."""
    parts = [
        train.lazy()
        .with_row_index("seq")
        .filter(pl.col("locale") == locale)
        .select(
            pl.col("seq").cast(pl.Int64),
            train=pl.lit(True),
            items=pl.concat_list("prev_items", pl.col("next_item")),
        )
    ]
    offset = train.height
    for test in tests.values():
        parts.append(
            test.lazy()
            .with_row_index("seq", offset)
            .filter(pl.col("locale") == locale)
            .select(pl.col("seq").cast(pl.Int64), train=pl.lit(False), items=pl.col("prev_items"))
        )
        offset += test.height
    return pl.concat(parts).collect()


def id_codes(train: pl.DataFrame, tests: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """id, code:Int32 of every id a session holds; codes follow the id sort order, so sorting on the
    code breaks ties exactly as sorting on the id."""
    ids = [train.select(pl.col("next_item").alias("id")).unique()]
    for frame in (train, *tests.values()):
        ids.append(frame.select(pl.col("prev_items").explode(empty_as_null=True).alias("id")).unique())
    return (
        pl.concat(ids)
        .drop_nulls()
        .unique()
        .sort("id")
        .with_row_index("code")
        .with_columns(pl.col("code").cast(pl.Int32))
    )


def covisitation(events: pl.DataFrame, query: pl.DataFrame) -> pl.DataFrame:
    """Symmetric window-3 co-visitation counts a, b (int codes), n:UInt32 of ``events`` (seq, code in
    session order), kept only for ``a`` in ``query`` (code): the items the probe looks up."""
    pairs = []
    for d in range(1, WINDOW + 1):
        nxt = events.select(
            a=pl.col("code"), b=pl.col("code").shift(-d), same=pl.col("seq").shift(-d) == pl.col("seq")
        )
        nxt = nxt.filter(pl.col("same") & (pl.col("a") != pl.col("b"))).select("a", "b")
        for a, b in (("a", "b"), ("b", "a")):
            pairs.append(
                nxt.select(pl.col(a).alias("a"), pl.col(b).alias("b")).join(
                    query, left_on="a", right_on="code", how="semi"
                )
            )
    return pl.concat(pairs).group_by("a", "b").agg(n=pl.len())


def _ranks(sessions: pl.DataFrame, scored: pl.DataFrame) -> pl.DataFrame:
    """sid, rank of each session's target among its scored candidates (null when absent).

    ``sessions``: sid, target (code); ``scored``: sid, code, score (own items and off-catalogue removed).
    Candidates rank by score descending, then code (= id order); the target's rank is one more than
    the candidates before it, counted rather than sorted.
    """
    target = scored.join(sessions, left_on=["sid", "code"], right_on=["sid", "target"]).select(
        "sid", t_score="score", t_code="code"
    )
    before = (
        scored.join(target, on="sid")
        .filter(
            (pl.col("score") > pl.col("t_score"))
            | ((pl.col("score") == pl.col("t_score")) & (pl.col("code") < pl.col("t_code")))
        )
        .group_by("sid")
        .len()
    )
    ranked = target.join(before, on="sid", how="left").select(
        "sid", rank=(pl.col("len").fill_null(0) + 1).cast(pl.Int64)
    )
    return sessions.join(ranked, on="sid", how="left").select("sid", "rank")


def _metrics(rank: pl.Series, locale: pl.Series) -> dict:
    frame = pl.DataFrame({"rank": rank, "locale": locale}).with_columns(
        rr=pl.when(pl.col("rank") <= K).then(1.0 / pl.col("rank")).otherwise(0.0).fill_null(0.0),
        hit=(pl.col("rank") <= K).fill_null(False),
    )
    out = {"all": {"mrr@100": float(frame["rr"].mean()), "recall@100": float(frame["hit"].mean())}}
    for row in (
        frame.group_by("locale")
        .agg(pl.col("rr").mean(), pl.col("hit").mean())
        .sort("locale")
        .iter_rows(named=True)
    ):
        out[row["locale"]] = {"mrr@100": row["rr"], "recall@100": row["hit"]}
    return out


@dataclass
class Probe:
    """One test file with ground truth, in codes: sessions (sid, locale, target), own (sid, code),
    recent (sid, w, code: the last three items with their weights)."""

    sessions: pl.DataFrame
    own: pl.DataFrame
    recent: pl.DataFrame

    @classmethod
    def of(cls, test: pl.DataFrame, gt: pl.DataFrame, codes: pl.DataFrame) -> Probe:
        base = test.select(pl.int_range(pl.len()).alias("sid"), "locale", "prev_items")
        sessions = (
            base.select("sid", "locale")
            .with_columns(id=gt["next_item"])
            .join(codes, on="id", how="left", maintain_order="left")
            .select("sid", "locale", target="code")
        )
        own = (
            base.select("sid", pl.col("prev_items").alias("id"))
            .explode("id", empty_as_null=True)
            .drop_nulls()
            .join(codes, on="id")
            .select("sid", "code")
            .unique()
        )
        recent = (
            base.select("sid", pl.col("prev_items").list.reverse().list.head(WINDOW).alias("id"))
            .explode("id", empty_as_null=True)
            .drop_nulls()
        )
        recent = (
            recent.with_columns(
                w=pl.int_range(pl.len())
                .over("sid")
                .replace_strict(list(range(WINDOW)), list(COVIS_WEIGHTS), return_dtype=pl.Float64)
            )
            .join(codes, on="id")
            .select("sid", "w", "code")
        )
        return cls(sessions, own, recent)

    def metrics(self, ranks_by_locale) -> dict:
        """MRR@100 / Recall@100 of a probe; ``ranks_by_locale(locale, sessions)`` gives (sid, rank) of
        some sessions (sid, locale, target) of that locale. Locale by locale and CHUNK_SESSIONS at a
        time, so the candidate frames stay that size however large the data."""
        ranks = []
        for loc in raw.LOCALES:
            sessions = self.sessions.filter(pl.col("locale") == loc)
            for start in range(0, sessions.height, CHUNK_SESSIONS):
                ranks.append(ranks_by_locale(loc, sessions.slice(start, CHUNK_SESSIONS)))
        # one chunk, as one frame would be: a float mean per group sums chunk by chunk
        rank = (
            pl.concat(ranks, rechunk=True).sort("sid")["rank"].rechunk()
            if ranks
            else pl.Series("rank", [], pl.Int64)
        )
        return _metrics(rank, self.sessions["locale"])


def probe_popularity(probe: Probe, top: dict[str, pl.DataFrame]) -> dict:
    """Per-locale popularity (train interactions; ``top``: locale -> code, len, its K + 50 best in
    its catalogue, best first), the session's own items excluded: a target's rank is its place in
    the list less the session's own items above it."""

    def ranks(loc: str, sessions: pl.DataFrame) -> pl.DataFrame:
        place = top[loc].with_columns(place=pl.int_range(1, pl.len() + 1)).select("code", "place")
        target = (
            sessions.join(place, left_on="target", right_on="code")
            .join(probe.own, left_on=["sid", "target"], right_on=["sid", "code"], how="anti")
            .select("sid", t_place="place")
        )
        above = (
            probe.own.join(target, on="sid")
            .join(place, on="code")
            .filter(pl.col("place") < pl.col("t_place"))
            .group_by("sid")
            .len()
        )
        ranked = target.join(above, on="sid", how="left").select(
            "sid", rank=(pl.col("t_place") - pl.col("len").fill_null(0)).cast(pl.Int64)
        )
        return sessions.join(ranked, on="sid", how="left").select("sid", "rank")

    return probe.metrics(ranks)


def probe_covisitation(probe: Probe, covis: pl.DataFrame, catalogue: dict[str, pl.DataFrame]) -> dict:
    """Score = sum over the last three items of weight x co-visitation count; own items excluded."""

    def ranks(loc: str, sessions: pl.DataFrame) -> pl.DataFrame:
        scored = (
            probe.recent.join(sessions, on="sid", how="semi")
            .join(covis, left_on="code", right_on="a")
            .group_by("sid", "b")
            .agg(score=(pl.col("w") * pl.col("n")).sum())
            .rename({"b": "code"})
            .join(probe.own, on=["sid", "code"], how="anti")
            .join(catalogue[loc], on="code", how="semi")
            .select("sid", "code", "score")
        )
        return _ranks(sessions.select("sid", "target"), scored)

    return probe.metrics(ranks)


def read_files(raw_dir: Path, gt_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict, dict, dict]:
    """catalogue (locale, id), train, every test file present, the task-1/2 ground truths that match
    their test file's rows, and gt/ceiling.json (or {})."""
    products, _ = raw.read_products(raw_dir / "products_train.csv", on_error="skip")
    catalogue = products.select("locale", "id")
    del products
    train, _ = raw.read_sessions(raw_dir / "sessions_train.csv", with_target=True, on_error="skip")
    tests, gts = {}, {}
    for task in raw.TASKS:
        for phase in raw.PHASES:
            name = f"task{task}_phase{phase}"
            if (raw_dir / raw.test_file(task, phase)).exists():
                tests[name] = raw.read_sessions(raw_dir / raw.test_file(task, phase), with_target=False)[0]
                gt_path = gt_dir / raw.gt_file(task, phase)
                if task != 3 and gt_path.exists():
                    gts[name] = raw.read_ground_truth(gt_path, task)
                    if gts[name].height != tests[name].height:
                        log.warning(
                            "%s: %d gt rows for %d test rows; skipped",
                            name,
                            gts[name].height,
                            tests[name].height,
                        )
                        del gts[name]
    ceiling_path = gt_dir / "ceiling.json"
    ceiling = json.loads(ceiling_path.read_text()) if ceiling_path.exists() else {}
    return catalogue, train, tests, gts, ceiling


def compute_probes(raw_dir: str | Path, gt_dir: str | Path) -> dict:
    """{"raw_dir", "test_files": {name: {...}}, "checks": {...}} (see the module docstring)."""
    raw_dir, gt_dir = Path(raw_dir), Path(gt_dir)
    catalogue, train, tests, gts, ceiling = read_files(raw_dir, gt_dir)
    out = {"raw_dir": str(raw_dir), "test_files": {}}
    if not gts:
        out["checks"] = _checks(out["test_files"])
        return out
    codes = id_codes(train, tests)
    cat_codes = {
        loc: catalogue.filter(pl.col("locale") == loc).join(codes, on="id").select("code")
        for loc in raw.LOCALES
    }
    probes = {name: Probe.of(tests[name], gt, codes) for name, gt in gts.items()}
    frames = {
        name: tests[name]
        .select("locale", last=pl.col("prev_items").list.last())
        .with_columns(target=gt["next_item"])
        for name, gt in gts.items()
    }
    query = pl.concat([p.recent.select("code") for p in probes.values()]).unique()
    wanted = (
        pl.concat([f.select("last", "target") for f in frames.values()])
        .unique()
        .join(codes.rename({"id": "last", "code": "a"}), on="last")
        .join(codes.rename({"id": "target", "code": "b"}), on="target")
        .select("a", "b")
    )

    covis, follows, train_codes, top = [], [], [], {}
    for loc in raw.LOCALES:
        sessions = _locale_sessions(train, tests, loc)
        events = (
            sessions.select("seq", "train", pl.col("items").alias("id"))
            .explode("id", empty_as_null=True)
            .drop_nulls("id")
            .join(codes, on="id", how="left", maintain_order="left")
            .select("seq", "train", "code")
        )
        past = events.filter(pl.col("train"))
        top[loc] = (
            past.group_by("code")
            .len()
            .join(cat_codes[loc], on="code", how="semi")
            .sort(["len", "code"], descending=[True, False])
            .head(K + 50)
        )
        covis.append(covisitation(events, query))
        follows.append(
            past.select(
                a=pl.col("code"), b=pl.col("code").shift(-1), same=pl.col("seq").shift(-1) == pl.col("seq")
            )
            .filter(pl.col("same"))
            .select("a", "b")
            .join(wanted, on=["a", "b"], how="semi")
            .unique()
        )
        train_codes.append(past.select("code").unique())
        log.info(
            "%s: %d sessions, %d events; peak RSS %.0f MiB",
            loc,
            sessions.height,
            events.height,
            peak_rss_mib(),
        )
        del sessions, events, past
    covis = pl.concat(covis).group_by("a", "b").agg(n=pl.col("n").sum().cast(pl.Float64))
    follows = (
        pl.concat(follows)
        .unique()
        .join(codes.rename({"code": "a", "id": "last"}), on="a")
        .join(codes.rename({"code": "b", "id": "target"}), on="b")
        .select("last", "target")
    )
    train_ids = codes.join(pl.concat(train_codes).unique(), on="code", how="semi").select("id")
    log.info("co-visitation: %d pairs; peak RSS %.0f MiB", covis.height, peak_rss_mib())

    for name, probe in probes.items():
        frame = frames[name]
        entry = {
            "sessions": frame.height,
            "target_unseen_in_train": float(
                frame.join(train_ids, left_on="target", right_on="id", how="anti").height
                / max(1, frame.height)
            ),
            "target_follows_last_in_train": float(
                frame.join(follows, on=["last", "target"], how="semi").height / max(1, frame.height)
            ),
            "target_prefix5_share": float(
                (frame["last"].str.slice(0, 5) == frame["target"].str.slice(0, 5)).mean()
            ),
            "target_missing_from_catalogue": frame.join(
                catalogue, left_on=["locale", "target"], right_on=["locale", "id"], how="anti"
            ).height,
            "popularity": probe_popularity(probe, top),
            "covisitation": probe_covisitation(probe, covis, cat_codes),
        }
        if name in ceiling:
            entry["ceiling"] = {
                k: {m: v[m] for m in ("mrr@100", "recall@100")} for k, v in ceiling[name].items()
            }
        if entry["target_missing_from_catalogue"]:
            log.warning(
                "%s: %d targets are not in their locale's catalogue",
                name,
                entry["target_missing_from_catalogue"],
            )
        out["test_files"][name] = entry
        log.info("%s probed; peak RSS %.0f MiB", name, peak_rss_mib())
    out["checks"] = _checks(out["test_files"])
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _checks(files: dict) -> dict:
    """The issue-13 figures the ground truth decides, with their real value, target range and whether met."""
    measured = {}
    for task in (1, 2):
        names = [n for n in files if n.startswith(f"task{task}_")]
        if not names:
            continue
        cov = sum(files[n]["covisitation"]["all"]["mrr@100"] for n in names) / len(names)
        pop = sum(files[n]["popularity"]["all"]["mrr@100"] for n in names) / len(names)
        measured[f"covis_over_popularity_mrr_task{task}"] = _ratio(cov, pop)
        if task == 2:
            measured["covis_recall_task2"] = sum(
                files[n]["covisitation"]["all"]["recall@100"] for n in names
            ) / len(names)
    with_ceiling = [n for n in files if "ceiling" in files[n]]
    if with_ceiling:
        measured["ceiling_over_covis_mrr"] = _ratio(
            sum(files[n]["ceiling"]["all"]["mrr@100"] for n in with_ceiling),
            sum(files[n]["covisitation"]["all"]["mrr@100"] for n in with_ceiling),
        )
    if files:
        measured["target_prefix5_share"] = sum(
            f["target_prefix5_share"] * f["sessions"] for f in files.values()
        ) / sum(f["sessions"] for f in files.values())
    return within_targets(measured, REAL)


def format_probes(probes: dict) -> str:
    """The test files table and the checks the ground truth decides."""
    lines = [f"Ground-truth probes of {probes['raw_dir']}"]
    if probes["checks"]:
        lines += [
            "",
            "Issue-13 checks (ground truth):",
            f"{'statistic':<34} {'measured':>9} {'real':>30} {'target':>14}  ok",
        ]
        for key, c in probes["checks"].items():
            lo, hi = c["target"]
            target = f"{lo:g}-{hi:g}" if hi is not None else f">= {lo:g}"
            value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
            lines.append(f"{key:<34} {value:>9} {c['real']:>30} {target:>14}  {'yes' if c['ok'] else 'NO'}")
    if not probes["test_files"]:
        return "\n".join(lines + ["", "no task-1/2 test file with ground truth"])
    lines += [
        "",
        "Test files with ground truth (MRR@100 / Recall@100):",
        f"{'file':<13} {'n':>6} {'unseen':>6} {'follow':>6} {'pref5':>6} {'miss':>4} "
        f"{'popularity':>15} {'co-visitation':>15} {'ceiling':>15}",
    ]
    for name, f in probes["test_files"].items():

        def pair(d: dict | None) -> str:
            return f"{d['all']['mrr@100']:.4f}/{d['all']['recall@100']:.3f}" if d else "n/a"

        lines.append(
            f"{name:<13} {f['sessions']:>6} {f['target_unseen_in_train']:>6.3f} "
            f"{f['target_follows_last_in_train']:>6.3f} {f['target_prefix5_share']:>6.3f} "
            f"{f['target_missing_from_catalogue']:>4} {pair(f['popularity']):>15} "
            f"{pair(f['covisitation']):>15} {pair(f.get('ceiling')):>15}"
        )
    lines.append(
        "real (ES/FR/IT test): popularity 0.003 MRR, co-visitation 0.37 MRR / 0.65 recall; "
        "follow = target follows the last item somewhere in train"
    )
    return "\n".join(lines)
