"""Stage ``task3``: next product title, the last-title baseline and the BLEU-aware chooser/editor.

    python -m pipeline.task3 --prepared data/prepared --splitdir data/split --raw data/raw \
        --out submissions --metrics metrics/task3_valid.json

Validation = the held-out train sessions of data/split/valid (target title = the target item's
catalogue title). It is an imperfect twin of Task 3, whose targets are products absent from the
catalogue: the chooser masks the target, and with ``valid_mask`` its near-duplicates, out of its
valid candidates (titles.chooser.mask_valid) so it does not learn to copy a catalogue neighbour that
a real test session can never reach (``mixed``: the near-duplicates of a share ``new_line_share`` of the
sessions, as if that share of the targets opened a new product line; ``new_line``: the siblings stay
and the references of that share are recast as new lines', titles.chooser.new_line_refs).
``train_mask`` (default: the same) sets the candidates it learns from; ``valid_mask`` those its
margins, editor and the figures of stage ``choose`` are scored on.

The chooser is learned on the valid split (title sources fitted on the valid history); test
sessions (datasets task3_phase1/2, in file row order) get candidates from the sources fitted on
the test history, the model refitted on all valid sessions, and the editor tuned out of fold.
Writes submissions/task3_chooser/task3_phase{P}.parquet and the validation BLEU of each method and
chooser step to --metrics (the last-title submission itself comes from the ``baseline`` stage).

Without titles (a catalogue of placeholders, read as missing by core.raw) there is nothing to
learn: the chooser is skipped (logged, ``"skipped"`` in --metrics) and the submissions hold the
last-title fallback, an empty title where no session item has one; the score stage reports them
unscored when there is no ground truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from candidates.union import load_source_defaults, with_defaults
from core import config, submission
from core.io import setup_logging, timed, write_json
from core.metrics import bleu
from core.raw import PHASES, exit_on_data_error
from titles import chooser as tc
from titles.candidates import sources as title_sources
from titles.features import candidate_titles
from titles.folds import no_titles, test_sessions, valid_references
from titles.last_title import last_titles
from titles.text import item_titles, tokens

if TYPE_CHECKING:
    from candidates.union import SourceSpec

log = logging.getLogger(__name__)

# The two submissions: the chooser with its margins alone, and with the editor (the leaderboard's row names).
METHODS = {"plain": "task3_chooser_plain", "edited": "task3_chooser"}


@dataclass
class Fold:
    """What one side (valid or test) of the chooser needs."""

    sessions: pl.DataFrame   # session, locale (and row for test), in output order
    history: pl.DataFrame    # session, position, item: what the title sources are fitted on


def fit_sources(fold: Fold, items: pl.DataFrame, cfg: tc.ChooserConfig, seed: int) -> list[SourceSpec]:
    """The title sources of ``task3.chooser.sources``, fitted on the fold's history."""
    fitted = title_sources(cfg.sources, seed)
    for spec in fitted:
        spec.source.fit(fold.history, items)
    return fitted


def run_valid(fold: Fold, refs: pl.DataFrame, events: pl.DataFrame, items: pl.DataFrame, titles: pl.DataFrame,
              cfg: tc.ChooserConfig, seed: int) -> tuple[pl.DataFrame, tc.Tuned, dict]:
    """Learn the chooser on the valid fold; returns the labelled candidates to fit the chooser on (those of
    ``train_mask``), the tuned margins/edits and metrics.

    ``metrics["per_locale"]``: per locale the BLEU of the last title, the chooser (margins, no edits) and
    the chooser with edits on the same sessions, and the bootstrap spread of the two gains over the last
    title (``<method>_gain_sd``, tc.gain_sd), for the ``choose`` stage.
    """
    learn_refs = refs
    if "new_line" in (cfg.valid_mask, cfg.train_mask or cfg.valid_mask):
        lines = tc.new_line_refs(refs, titles, items, cfg.new_line_share, cfg.family_tokens)
        learn_refs = lines if (cfg.train_mask or cfg.valid_mask) == "new_line" else refs
        refs = lines if cfg.valid_mask == "new_line" else refs
    base = last_titles(refs, events, items)
    metrics: dict = {"n_sessions": refs.height,
                     "last_title": bleu(base["next_item_title"].to_list(), refs["ref_title"].to_list())}
    cands = candidate_titles(refs.select("session", "locale"), events, fit_sources(fold, items, cfg, seed),
                             items, titles, cfg.max_session_items)
    # The chooser learns on train_mask's candidates and references; validation scores it on valid_mask's.
    masks = ((cfg.train_mask or cfg.valid_mask, learn_refs), (cfg.valid_mask, refs))
    learn, labelled = (tc.label(tc.mask_valid(cands, r, mask, cfg.family_tokens, cfg.new_line_share),
                                r.select("session", "ref"), cfg.label) for mask, r in masks)
    metrics["candidates_per_session"] = labelled.height / max(refs.height, 1)
    oof = tc.out_of_fold(learn, cfg, seed, labelled)
    ref_of = refs.select("session", "ref")
    fallback = refs.select("session", "locale").join(
        base.select("session", fb=tokens(base["next_item_title"])), on="session", maintain_order="left")

    def hyps(choice: pl.DataFrame, column: str = "tokens") -> pl.DataFrame:
        # Sessions without a candidate fall back to the last title, as on test.
        return (fallback.join(choice.select("session", hyp=column), on="session", how="left",
                              maintain_order="left")
                .select("session", "locale", hyp=pl.coalesce("hyp", "fb")).join(ref_of, on="session"))

    def step_bleu(choice: pl.DataFrame, column: str = "tokens") -> float:
        merged = hyps(choice, column)
        return tc.corpus_bleu_of(merged["hyp"], merged["ref"])

    metrics["oracle_candidate"] = step_bleu(tc.choose(labelled, "bleu"))  # best candidate by its label
    best = tc.advantage(oof)
    metrics["chooser_argmax"] = step_bleu(best)
    metrics["argmax_departs"] = float((best["item"] != best["last_item"]).fill_null(True).mean())
    margins, margin_figures = tc.tune_margins(best, oof, ref_of, cfg)
    choice = (tc.tail_support(tc.stay(best, oof, margins), labelled)
              .join(ref_of, on="session", maintain_order="left"))
    edits, steps = tc.tune_edits(choice, choice["ref"], cfg)
    edited = tc.apply_edits(choice, edits)
    metrics["chooser"] = step_bleu(choice)
    metrics["departures"], undone = departures(choice, best, fallback, cfg.family_tokens)
    metrics["chooser_without_target_family"] = step_bleu(undone)
    metrics["chooser_drop_tail"] = step_bleu(
        tc.apply_edits(choice, tc.Edits({}, edits.drop_tail_min)), "edited")
    metrics["chooser_edited"] = step_bleu(edited, "edited")
    metrics["edit_steps_on_chosen_sessions"] = steps
    metrics["edits"] = {"trim": edits.trim, "drop_tail_min": edits.drop_tail_min}
    metrics["margins"] = {loc: (m if m != float("inf") else "never") for loc, m in margins.items()}
    # How much each step adds when the others stay: the editor alone on the last title.
    last_choice = tc.tail_support(tc.choose(labelled.filter(pl.col("si_recency") == 0), "si_in_session"),
                                  labelled).join(ref_of, on="session", maintain_order="left")
    metrics["last_title_edited"] = step_bleu(tc.apply_edits(last_choice, edits), "edited")
    per_locale = {}
    columns = {"last_title": hyps(base.select("session", tokens=tokens(base["next_item_title"]))),
               "chooser": hyps(choice), "chooser_edited": hyps(edited, "edited")}
    for locale in sorted(refs["locale"].unique().to_list()):
        parts = {name: frame.filter(pl.col("locale") == locale) for name, frame in columns.items()}
        per_locale[locale] = {name: tc.corpus_bleu_of(part["hyp"], part["ref"])
                              for name, part in parts.items()}
        # How far each gain over the last title may be from the truth, for stage choose's task3_min_z.
        per_locale[locale] |= {f"{name}_gain_sd": tc.gain_sd(parts[name]["hyp"], parts["last_title"]["hyp"],
                                                              parts["last_title"]["ref"], seed)
                               for name in ("chooser", "chooser_edited")}
        per_locale[locale] |= {"n": int((refs["locale"] == locale).sum()), **margin_figures.get(locale, {})}
    metrics["per_locale"] = per_locale
    return learn, tc.Tuned(margins, edits), metrics


def departures(choice: pl.DataFrame, best: pl.DataFrame, fallback: pl.DataFrame,
               family_tokens: int) -> tuple[dict[str, float], pl.DataFrame]:
    """Where the chooser departs from the last title on valid, and ``choice`` without the departures to a
    neighbour of the target's own family (its first ``family_tokens`` tokens): a new product line has none.

    Returns the shares of sessions departing at all, to an own item and to such a neighbour, and the choice
    with those sessions back on the last title (``fallback``'s ``fb`` tokens).
    """
    picked = (choice.join(best.select("session", "last_item"), on="session", how="left",
                          maintain_order="left")
              .join(fallback.select("session", "fb"), on="session", how="left", maintain_order="left"))
    departs = pl.col("last_item").is_null() | (pl.col("item") != pl.col("last_item"))
    family = (departs & (pl.col("si_in_session") == 0)
              & (pl.col("tokens").list.head(family_tokens) == pl.col("ref").list.head(family_tokens)))
    own = departs & (pl.col("si_in_session") == 1)
    shares = picked.select(departed=departs.mean(), to_own_items=own.mean(),
                           to_target_family=family.mean()).row(0, named=True)
    undone = picked.with_columns(tokens=pl.when(family).then(pl.col("fb")).otherwise(pl.col("tokens")))
    return {k: float(v or 0.0) for k, v in shares.items()}, undone.select("session", "tokens")


def predict_test(fold: Fold, model, tuned: tc.Tuned, events: pl.DataFrame, items: pl.DataFrame,
                 titles: pl.DataFrame, cfg: tc.ChooserConfig, seed: int) -> dict[str, pl.DataFrame]:
    """session, next_item_title for ``fold.sessions`` (same order), last title fallback: {"plain": the
    chooser with its margins, "edited": the same with the editor}."""
    cands = candidate_titles(fold.sessions.select("session", "locale"), events,
                             fit_sources(fold, items, cfg, seed),
                             items, titles, cfg.max_session_items)
    scored = tc.predict(model, cands)
    choice = tc.apply_edits(tc.tail_support(tc.stay(tc.advantage(scored), scored, tuned.margins), cands),
                            tuned.edits)
    last = last_titles(fold.sessions, events, items)
    return {name: tc.fill_missing(fold.sessions, choice.select("session", next_item_title=title), last)
            for name, title in (("plain", pl.col("title")), ("edited", tc.edited_titles(choice)))}


@exit_on_data_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--splitdir", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="submissions root")
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    cfg = config.load_section(tc.ChooserConfig, "task3.chooser")
    where = f"{config.PARAMS_FILE}:task3.chooser.sources"
    cfg = dataclasses.replace(cfg, sources=with_defaults(cfg.sources, load_source_defaults(), where))
    seed = config.seed()
    items = pl.read_parquet(args.prepared / "items.parquet")
    sessions = pl.read_parquet(args.prepared / "sessions.parquet")
    events = pl.read_parquet(args.prepared / "events.parquet")
    with timed("titles"):
        titles = item_titles(items)
    with timed("chooser on valid"):
        queries = pl.read_parquet(args.splitdir / "valid" / "queries.parquet")
        refs = valid_references(queries, pl.read_parquet(args.splitdir / "valid" / "targets.parquet"), titles)
        valid = Fold(refs.select("session", "locale"),
                     pl.read_parquet(args.splitdir / "valid" / "history.parquet"))
        metrics = no_titles(titles, refs, "task3_chooser")
        if metrics is None:
            labelled, tuned, metrics = run_valid(valid, refs, events, items, titles, cfg, seed)
            model = tc.fit(labelled, cfg, seed)
            log.info("valid BLEU: %s", {k: v for k, v in metrics.items() if isinstance(v, float)})
    with timed("test predictions"):
        history = pl.read_parquet(args.splitdir / "test" / "history.parquet")
        for phase in PHASES:
            fold = Fold(test_sessions(sessions, phase), history)
            if fold.sessions.height == 0:
                log.warning("no task3_phase%d sessions in the prepared data", phase)
                continue
            locales = submission.load_test_locales(args.raw, 3, phase)
            if "skipped" in metrics:
                frames = dict.fromkeys(("plain", "edited"), last_titles(fold.sessions, events, items))
            else:
                frames = predict_test(fold, model, tuned, events, items, titles, cfg, seed)
            for name, frame in frames.items():
                sub = fold.sessions.select("session", "locale").join(frame, on="session",
                                                                     maintain_order="left")
                submission.write(sub.select("locale", "next_item_title"),
                                 submission.submission_path(args.out / METHODS[name], 3, phase), 3, locales,
                                 None)
            log.info("task3_chooser phase %d: %d rows", phase, sub.height)
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    main()
