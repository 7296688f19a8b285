"""Name -> candidate source class. A co-visitation variant is a params entry, not a new class.

Classes are imported lazily so that importing the registry does not import torch or implicit.
"""

from __future__ import annotations

import importlib

from candidates.base import CandidateSource

SOURCES: dict[str, str] = {
    "popularity": "candidates.popularity:Popularity",
    "covisit": "candidates.covisit:Covisit",
    "sknn": "candidates.sknn:Sknn",
    "als": "candidates.factors:Als",
    "bpr": "candidates.factors:Bpr",
    "text": "candidates.text:TitleSimilarity",
    "attribute": "candidates.attribute:SharedAttribute",
    "gru4rec": "candidates.deep.source:GRU4RecSource",
    "sasrec": "candidates.deep.source:SASRecSource",
    "narm": "candidates.deep.source:NARMSource",
    "stamp": "candidates.deep.source:STAMPSource",
    "srgnn": "candidates.deep.source:SRGNNSource",
    "core": "candidates.deep.source:CORESource",
}


def source_class(kind: str) -> type[CandidateSource]:
    if kind not in SOURCES:
        raise KeyError(f"unknown candidate source type {kind!r}; known: {sorted(SOURCES)}")
    module, _, cls = SOURCES[kind].partition(":")
    return getattr(importlib.import_module(module), cls)
