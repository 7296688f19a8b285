"""Item embeddings warm-started from the history's own co-visitation: PPMI + randomized SVD.

With few session passes per item (full-size data on a CPU budget) most item rows of an encoder are
touched a handful of times and stay near their random init. Starting them from a factorisation of
the item co-occurrence matrix gives every item seen in a pair a vector that already puts items
viewed together close, which training then refines. Levy & Goldberg (NeurIPS 2014) show the
truncated SVD of the (shifted) positive PMI matrix is what skip-gram factorises; the randomized SVD
is Halko, Martinsson & Tropp (SIAM Review 2011), Algorithm 4.4 with power iterations.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from candidates.deep.data import PAD


def cooccurrence(tokens: np.ndarray, n_tokens: int, window: int) -> sp.csr_matrix:
    """(n_tokens, n_tokens) counts of two distinct items within ``window`` steps of one padded row,
    both directions."""
    rows, cols = [], []
    for d in range(1, window + 1):
        a, b = tokens[:, :-d].ravel(), tokens[:, d:].ravel()
        keep = (a != PAD) & (b != PAD) & (a != b)
        rows += [a[keep], b[keep]]
        cols += [b[keep], a[keep]]
    row, col = np.concatenate(rows), np.concatenate(cols)
    counts = sp.csr_matrix((np.ones(len(row), dtype=np.float64), (row, col)), shape=(n_tokens, n_tokens))
    counts.sum_duplicates()
    return counts


def ppmi(counts: sp.csr_matrix) -> sp.csr_matrix:
    """Positive pointwise mutual information of a symmetric count matrix (zeros stay zero)."""
    total = counts.sum()
    margin = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (margin[coo.row] * margin[coo.col]))
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)


def randomized_svd(matrix: sp.csr_matrix, rank: int, seed: int, oversample: int = 10,
                   power_iterations: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(U (n, rank), singular values (rank,)) of ``matrix`` (Halko et al. 2011, Algorithm 4.4)."""
    rng = np.random.default_rng(seed)
    width = min(rank + oversample, min(matrix.shape))
    basis, _ = np.linalg.qr(matrix @ rng.standard_normal((matrix.shape[1], width)))
    for _ in range(power_iterations):
        basis, _ = np.linalg.qr(matrix.T @ basis)
        basis, _ = np.linalg.qr(matrix @ basis)
    small_u, values, _ = np.linalg.svd((matrix.T @ basis).T, full_matrices=False)
    return (basis @ small_u)[:, :rank], values[:rank]


def item_vectors(tokens: np.ndarray, n_tokens: int, dim: int, seed: int, window: int = 2,
                 norm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n_tokens, dim) float32, covered (n_tokens,) bool): U * sqrt(S) of the PPMI matrix of the
    training rows, rescaled so that the covered rows' mean norm is ``norm``; rows in no pair are 0."""
    matrix = ppmi(cooccurrence(tokens, n_tokens, window))
    covered = np.asarray(matrix.getnnz(axis=1)).ravel() > 0
    if not covered.any():
        return np.zeros((n_tokens, dim), dtype=np.float32), covered
    u, values = randomized_svd(matrix, dim, seed)
    vectors = u * np.sqrt(values)[None, :]
    if vectors.shape[1] < dim:  # fewer items than dimensions
        vectors = np.pad(vectors, ((0, 0), (0, dim - vectors.shape[1])))
    mean_norm = np.linalg.norm(vectors[covered], axis=1).mean()
    vectors = vectors * (norm / max(mean_norm, 1e-12))
    vectors[~covered] = 0.0
    return vectors.astype(np.float32), covered
