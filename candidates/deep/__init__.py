"""Deep session models (GRU4Rec, SASRec) trained in torch, retrieved with faiss.

    config.py     the ``deep`` params section (frozen dataclasses)
    data.py       history frame -> left-padded item/locale tensors
    models.py     the two session encoders, item embeddings tied with the output
    train.py      device choice, training loop, checkpoint + resume
    (retrieval: candidates/retrieval.py, one faiss index per locale catalogue)
    source.py     the ``gru4rec`` / ``sasrec`` candidate sources and ``score_pairs``

Nothing here imports torch or faiss at package import time beyond the modules you import.
"""
