"""A synthetic Amazon-M2: the competition files, ground truth and the oracle ceiling, from one seed.

    python -m pipeline.generate --out data/raw        (the DVC stage; knobs in params.yaml `synthetic`)
    m2 generate --out data/raw --scale 0.02 --stats

The world (every knob lives in :class:`SyntheticConfig`, its values in params.yaml ``synthetic``; the
published sizes it scales are core/paper.py's):

* Products: categories -> brands -> families (one model) -> variants (colour/size). A family's
  variants get ids issued together (the same first five characters), and a share of categories
  are books with 10-digit numeric ids (leading zeros kept). Popularity is lognormal per category,
  family and variant (heavy-tailed but flatter than a pure Zipf law, so that per-locale
  popularity is a weak predictor). Each family has a price tier (0/1/2) and a brand.
* Locales: per-locale catalogue sizes are Table 2 times ``scale``. Families belong to pools that
  fix their locales: DE+UK+JP, DE+UK, DE, UK, JP, and one local pool per small locale; each small
  locale also carries DE families (weighted by popularity^small_pick_bias) for ``overlap_small_de`` of its
  catalogue. Titles are built from per-locale words, so one ASIN has a different title per locale.
* Sessions: a Markov process over a hidden state (current item, intent category, the session's
  brand and price tier, items seen). The next item comes from a mixture of consecutive re-view,
  re-view of an earlier item, sibling variant, the current item's related items (product-level,
  so they transfer across locales), the intent category by popularity, the same restricted to
  the session's brand or tier, drift to a related category, and locale popularity. The target
  uses the same mixture with the re-view components dropped and the session's items excluded
  (rejection sampling, which is exactly "renormalised over the other items").
* Task 3 targets are new products: a new variant of the drawn next item's family (or a new
  family in its category); only their titles are written (gt_task3).
* The oracle ranks every catalogue item of the locale by the exact next-item probability given
  the hidden state and reports MRR@100 / Recall@100 of the drawn target (gt/ceiling.json). For
  tasks 1 and 2, gt/oracle_task{T}_phase{P}.csv gives per ground-truth row the target's class
  (its relation to the hidden state, ``core.raw.TARGET_CLASSES``) and its oracle rank, so the
  leaderboard can show where a method loses against the oracle.

Everything is vectorised numpy over sessions, one step of the process at a time. Modules: config
(the knobs, the mixture's components, file sizes at a scale), groups (popularity-sorted buckets),
catalogue (products, entries, titles, products_train.csv), sessions (the process), oracle (ranks,
classes, ceiling), write (:func:`generate`).
"""


from pipeline.synthetic.config import SyntheticConfig, scaled_counts
from pipeline.synthetic.write import generate

__all__ = ["SyntheticConfig", "generate", "scaled_counts"]
