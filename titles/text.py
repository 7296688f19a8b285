"""Helpers shared by the Task 3 title methods: tokens, BLEU statistics, session title frames.

BLEU is computed the way ``core.metrics.bleu`` (sacrebleu) does it: 13a tokens, n = 1..4,
clipped n-gram matches, brevity penalty on the summed lengths. Keeping the per-sentence statistics
(matches and totals per order, hypothesis and reference length) lets the chooser learn a sentence
label and lets the editor tune its edits against the exact corpus score by summing rows.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

MAX_ORDER = 4
STAT_COLUMNS = ([f"m{n}" for n in range(1, MAX_ORDER + 1)] + [f"t{n}" for n in range(1, MAX_ORDER + 1)]
                + ["hyp_len", "ref_len"])
_SEP = "\x1f"


def tokens(titles: pl.Series) -> pl.Series:
    """sacrebleu 13a tokens of each title (List(String)); null -> empty list."""
    tok = Tokenizer13a()
    # 13a is a chain of regular expressions with no polars equivalent; it runs once per distinct
    # title, not per candidate row.
    distinct = titles.fill_null("").unique()
    mapping = pl.DataFrame({"_t": distinct, "_tok": [tok(t).split() for t in distinct.to_list()]},
                           schema={"_t": pl.String, "_tok": pl.List(pl.String)})
    return (pl.DataFrame({"_t": titles.fill_null("")})
            .join(mapping, on="_t", how="left", maintain_order="left")
            ["_tok"].alias(titles.name))


def _ngrams(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """_row, n, gram, count: the n-gram counts (n = 1..4) of the token lists in ``column``."""
    # The exploded tokens keep each row's tokens together and in order, so the n-gram at a token is
    # the next n tokens of the whole column when the (n-1)th next token is still of the same row
    # (a plain shift: a shift over("_row") windows per row and costs ten times as much).
    long = frame.select("_row", tok=pl.col(column)).explode("tok", empty_as_null=False).drop_nulls("tok")
    parts = []
    for n in range(1, MAX_ORDER + 1):
        gram = pl.concat_str([pl.col("tok").shift(-k) for k in range(n)], separator=_SEP)
        same_row = pl.col("_row").shift(-(n - 1)) == pl.col("_row")
        parts.append(long.select("_row", n=pl.lit(n, pl.Int8), gram=pl.when(same_row).then(gram))
                     .drop_nulls("gram"))
    return pl.concat(parts).group_by("_row", "n", "gram").agg(count=pl.len())


def reference_grams(ref: pl.Series) -> pl.DataFrame:
    """The n-gram counts of references ``ref``, for :func:`bleu_stats` calls that share them."""
    return _ngrams(pl.DataFrame({"ref": ref}).with_row_index("_row"), "ref")


def bleu_stats(hyp: pl.Series, ref: pl.Series, ref_grams: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per-pair BLEU statistics of token lists ``hyp`` and ``ref`` (same length, List(String)).

    ``ref_grams``: :func:`reference_grams` of ``ref``, when several hypotheses are scored against it.
    Returns one row per pair, in order: m1..m4 (clipped n-gram matches), t1..t4 (hypothesis n-gram
    totals), hyp_len, ref_len, all Int64.
    """
    frame = pl.DataFrame({"hyp": hyp, "ref": ref}).with_row_index("_row")
    h = _ngrams(frame, "hyp")
    r = _ngrams(frame, "ref") if ref_grams is None else ref_grams
    matches = (h.join(r, on=["_row", "n", "gram"], suffix="_ref")
               .group_by("_row", "n").agg(m=pl.min_horizontal("count", "count_ref").sum())
               .pivot(on="n", index="_row", values="m"))
    lens = frame.select("_row", hyp_len=pl.col("hyp").list.len().cast(pl.Int64),
                        ref_len=pl.col("ref").list.len().cast(pl.Int64))
    out = lens.join(matches, on="_row", how="left", maintain_order="left")
    cols = []
    for n in range(1, MAX_ORDER + 1):
        m = pl.col(str(n)).fill_null(0).cast(pl.Int64) if str(n) in out.columns else pl.lit(0, pl.Int64)
        cols += [m.alias(f"m{n}"), (pl.col("hyp_len") - (n - 1)).clip(lower_bound=0).alias(f"t{n}")]
    return out.sort("_row").select(*cols, "hyp_len", "ref_len").select(STAT_COLUMNS)


def corpus_bleu(stats: pl.DataFrame) -> float:
    """Corpus BLEU-4 (0..1) of summed statistics, as sacrebleu computes it (exp smoothing)."""
    if stats.height == 0:
        return 0.0
    s = stats.select(pl.col(STAT_COLUMNS).sum()).row(0, named=True)
    if s["t1"] == 0:
        return 0.0
    log_p, smooth = 0.0, 1.0
    for n in range(1, MAX_ORDER + 1):
        m, t = s[f"m{n}"], s[f"t{n}"]
        if t == 0:
            return 0.0
        if m == 0:  # sacrebleu 'exp' smoothing
            smooth *= 2.0
            log_p += math.log(100.0 / (smooth * t) / 100.0)
        else:
            log_p += math.log(m / t)
    c, r = s["hyp_len"], s["ref_len"]
    bp = 1.0 if c >= r else (math.exp(1.0 - r / c) if c > 0 else 0.0)
    return float(bp * math.exp(log_p / MAX_ORDER))


def sentence_bleu(stats: pl.DataFrame) -> np.ndarray:
    """Add-one smoothed sentence BLEU-4 of each row (a smooth per-title label for the chooser)."""
    def precision(n: int) -> pl.Expr:
        add = 0 if n == 1 else 1
        return (pl.col(f"m{n}") + add) / (pl.col(f"t{n}") + add).clip(lower_bound=1)

    log_p = sum(precision(n).clip(lower_bound=1e-9).log() for n in range(1, MAX_ORDER + 1))
    bp = pl.when(pl.col("hyp_len") >= pl.col("ref_len")).then(1.0).otherwise(
        (1.0 - pl.col("ref_len") / pl.col("hyp_len").clip(lower_bound=1)).exp())
    return stats.select((bp * (log_p / MAX_ORDER).exp()).alias("b"))["b"].fill_nan(0.0).to_numpy()


def session_events(sessions: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The query sessions in long form: session, locale, position, item (a null item for an empty one)."""
    return (sessions.select("session", "locale")
            .join(events.select("session", "position", "item"), on="session", how="left")
            .sort("session", "position"))


def item_titles(items: pl.DataFrame) -> pl.DataFrame:
    """item, title, tokens (13a), n_tok of every item with a non-empty title."""
    titled = items.filter(pl.col("title").is_not_null() & (pl.col("title").str.strip_chars() != ""))
    return (titled.select("item", "title").with_columns(tokens=tokens(titled["title"]))
            .with_columns(n_tok=pl.col("tokens").list.len().cast(pl.Int32)))
