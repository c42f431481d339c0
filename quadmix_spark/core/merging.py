"""Eq.1: merge normalised scores with per-domain weights, q̄ = Σ_n α[d, n] · σ_n."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["check_domain_idx", "merge_scores"]


def check_domain_idx(domain_idx: ArrayLike, n_domains: int, n_docs: int) -> NDArray[np.int64]:
    """Validate domain indices: 1-D integers in [0, n_domains) of length ``n_docs``."""
    d = np.asarray(domain_idx)
    if d.ndim != 1 or d.shape[0] != n_docs:
        raise ValueError(f"domain_idx must have shape ({n_docs},), got {d.shape}")
    if d.size and not np.issubdtype(d.dtype, np.integer):
        raise TypeError(f"domain_idx must be integers, got dtype {d.dtype}")
    d = d.astype(np.int64, copy=False)
    if d.size and (d.min() < 0 or d.max() >= n_domains):
        bad = int(d[(d < 0) | (d >= n_domains)][0])
        raise ValueError(f"domain_idx contains {bad}, outside [0, {n_domains})")
    return d


def merge_scores(sigma: ArrayLike, domain_idx: ArrayLike, alpha: ArrayLike) -> NDArray[np.float64]:
    """Merged quality q̄ (Eq.1); smaller = better.

    Parameters
    ----------
    sigma : array-like, shape (n_docs, N)
        Normalised scores σ(q_n) in [0, 1] (see :mod:`.normalize`).
    domain_idx : array-like of int, shape (n_docs,)
        Domain of each document, an index into the rows of ``alpha``.
    alpha : array-like, shape (M, N)
        Per-domain scorer weights (rows sum to 1; validated by ``QuadMixParams``).

    Returns
    -------
    ndarray of float64, shape (n_docs,).
    """
    s = np.asarray(sigma, dtype=np.float64)
    a = np.asarray(alpha, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"sigma must be 2-D (n_docs, N), got shape {s.shape}")
    if a.ndim != 2 or a.shape[1] != s.shape[1]:
        raise ValueError(f"alpha must have shape (M, {s.shape[1]}), got {a.shape}")
    if np.isnan(s).any():
        raise ValueError("sigma contains NaN; quarantine rows with missing scores first")
    d = check_domain_idx(domain_idx, a.shape[0], s.shape[0])
    w = a[d]
    # Accumulate column by column in a fixed order: each row's result is then bitwise
    # the same whatever the batch size or layout (einsum/matmul may reorder the sum), and
    # exact ties in q̄ matter for the ≤ in Eq.2.
    out = np.zeros(s.shape[0], dtype=np.float64)
    for n in range(s.shape[1]):
        out += w[:, n] * s[:, n]
    return out
