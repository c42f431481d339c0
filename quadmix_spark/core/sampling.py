"""Eq.3: expected copy count S(r̄), deterministic randomness, integer copies.

S(r̄) = (2 / (1 + exp(−λ(ω − r̄))))^η + ε   for r̄ ≤ ω
S(r̄) = ε                                    for r̄ > ω

S is an expected number of copies (not a probability): floor(S) copies for sure and
one more with probability frac(S). The Bernoulli draw uses :func:`hash_uniform`, a pure
function of (document key, seed, copy), so a selection is identical across reruns,
partitionings, local mode and a cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ENTROPY_STREAM",
    "HOLDOUT_STREAM",
    "ORDER_STREAM",
    "RUN_HOLDOUT_STREAM",
    "CV_FOLD_STREAM",
    "SAMPLE_STREAM",
    "STATS_DOMAIN_STREAM",
    "STATS_GLOBAL_STREAM",
    "STREAMS_STREAM",
    "domain_token_expectation",
    "expected_copies_to_copies",
    "hash_uniform",
    "sampling_function",
    "text_keys",
]

# Stream indices: the ``copy`` argument of hash_uniform for every purpose other than copy draws
# (which use copy = 0, 1, ...). Each purpose has its own stream, so no two decisions about one
# document share a uniform. Part of the on-disk contract: changing one changes what it chooses.
SAMPLE_STREAM = 1_000_003  # rank-mapping samples; + 1: the budget-calibration sample
ORDER_STREAM = 2_000_003  # proxy training-stream order; copy j of a document adds j
HOLDOUT_STREAM = 3_000_017  # experiment pool vs held-out slice; + 1: order inside the slice
STATS_DOMAIN_STREAM = 4_000_037  # stats: the per-domain quantile-sketch sample
STATS_GLOBAL_STREAM = 4_000_039  # stats: the global quantile-sketch sample
RUN_HOLDOUT_STREAM = 5_000_011  # fit-search: the proxy runs held out from the regressor
CV_FOLD_STREAM = 5_000_021  # fit-search: cross-validation folds of the runs; + r: repeat r
ENTROPY_STREAM = 7_000_003  # entropy: the token sample; + 1: the VNE documents; + 2: the VNE model's sample
STREAMS_STREAM = 6_000_011  # domain streams: document order inside a domain; + 1: pieces of a mixed stream

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def sampling_function(
    r: ArrayLike, lam: ArrayLike, omega: ArrayLike, eta: ArrayLike, eps: ArrayLike
) -> NDArray[np.float64]:
    """Expected copies S per document (Eq.3).

    Parameters
    ----------
    r : array-like of float, shape (n_docs,)
        Token-weighted rank r̄ in (0, 1], smaller = better.
    lam, omega, eta, eps : scalar or array-like broadcastable to ``r``
        β of each document's domain (the caller gathers e.g. ``params.lam[domain_idx]``).

    Returns
    -------
    ndarray of float64, broadcast shape: S ≥ 0. Inside the cutoff S ∈ [1 + ε, 2^η + ε);
    S drops to ε just past ω (the jump is intended).

    Notes
    -----
    ``exp`` and ``**`` may differ in the last bit between CPU builds of numpy; that can
    flip ``u < frac(S)`` only when u lies within ~1e-16 of frac(S).
    """
    r = np.asarray(r, dtype=np.float64)
    if np.isnan(r).any():
        raise ValueError("r contains NaN")
    lam, omega, eta, eps = (np.asarray(x, dtype=np.float64) for x in (lam, omega, eta, eps))
    inside = r <= omega
    # Clip the exponent at 0: outside the cutoff the value is discarded anyway, and this
    # keeps exp() in (0, 1] so it can never overflow (λ ≥ 0, so z ≥ 0).
    z = lam * np.maximum(omega - r, 0.0)
    bracket = 2.0 / (1.0 + np.exp(-z))
    return np.where(inside, bracket**eta + eps, eps)


def _mix64(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64 finaliser (Steele, Lea, Flood 2014); wrapping uint64 arithmetic."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash_uniform(keys: ArrayLike, seed: int, copy: int | ArrayLike = 0) -> NDArray[np.float64]:
    """Deterministic uniform in [0, 1) from (key, seed, copy).

    **On-disk contract** (changing it changes every selection). All arithmetic is uint64,
    wrapping mod 2**64; ``mix`` is the splitmix64 finaliser::

        mix(z):  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                 z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                 return z ^ (z >> 31)
        G  = 0x9E3779B97F4A7C15
        h  = mix((seed mod 2**64) + G)
        h  = mix((h ^ (key mod 2**64)) + G)       # int64 key: two's-complement bits
        h  = mix((h ^ (copy mod 2**64)) + G)
        u  = (h >> 11) / 2**53

    Parameters
    ----------
    keys : array-like of int64 (or uint64), shape (n,)
        Stable document keys; string ids are hashed to int64 by the caller first
        (e.g. Spark ``xxhash64(id)``).
    seed : int
        Selection seed (any Python int; reduced mod 2**64).
    copy : int or array-like of int broadcastable to ``keys``
        Stream index, so one document can get several independent draws.

    Returns
    -------
    ndarray of float64, shape of ``keys``, in [0, 1); each value depends only on its own
    (key, seed, copy), never on array order or batch.
    """
    k = np.asarray(keys)
    if k.size and not np.issubdtype(k.dtype, np.integer):
        raise TypeError(f"keys must be integers (int64), got dtype {k.dtype}")
    k = k.astype(np.int64, copy=False).view(np.uint64) if k.dtype != np.uint64 else k
    c = np.asarray(copy)
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"copy must be integer, got dtype {c.dtype}")
    c = c.astype(np.int64, copy=False).view(np.uint64) if c.dtype != np.uint64 else c
    s = np.full(1, int(seed) & _MASK64, dtype=np.uint64)
    # Operate on arrays only: uint64 array ops wrap silently; errstate guards the rest.
    with np.errstate(over="ignore"):
        h = _mix64(s + _GOLDEN)
        h = _mix64((h ^ np.atleast_1d(k)) + _GOLDEN)
        h = _mix64((h ^ np.atleast_1d(c)) + _GOLDEN)
    u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return u.reshape(np.broadcast_shapes(k.shape, c.shape))


def text_keys(texts: Iterable[str]) -> NDArray[np.int64]:
    """Stable int64 keys of strings on the driver: the first 8 bytes of sha256(utf-8), big-endian.

    For ids that never reach Spark (e.g. proxy run ids) and are then drawn with
    :func:`hash_uniform`. Documents use Spark's ``xxhash64(id)`` (``doc_key``) instead.
    Returns int64, shape (n,).
    """
    digests = [hashlib.sha256(t.encode("utf-8")).digest()[:8] for t in texts]
    return np.array([int.from_bytes(d, "big", signed=True) for d in digests], dtype=np.int64)


def expected_copies_to_copies(S: ArrayLike, u: ArrayLike) -> NDArray[np.int64]:
    """Integer copies: floor(S) + (u < frac(S)).

    Parameters
    ----------
    S : array-like of float, shape (n,)
        Expected copies (≥ 0, finite).
    u : array-like of float, shape (n,)
        Uniforms in [0, 1), normally ``hash_uniform(keys, seed)``.

    Returns
    -------
    ndarray of int64, shape (n,). E[copies] = S exactly when u ~ U[0, 1).
    """
    S = np.asarray(S, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    if not np.isfinite(S).all() or (S < 0).any():
        raise ValueError("S must be finite and >= 0")
    if np.isnan(u).any() or (u < 0).any() or (u >= 1).any():
        raise ValueError("u must be in [0, 1)")
    base = np.floor(S)
    return (base + (u < (S - base))).astype(np.int64)


def domain_token_expectation(
    domain_idx: ArrayLike, tokens: ArrayLike, S: ArrayLike, n_domains: int
) -> NDArray[np.float64]:
    """Expected selected tokens per domain, Σ tokens·S, shape (n_domains,).

    Sums are additive across batches (add the per-batch vectors); the float sum order
    differs between batchings only in the last bits.
    """
    d = np.asarray(domain_idx)
    t = np.asarray(tokens, dtype=np.float64)
    s = np.asarray(S, dtype=np.float64)
    if not (d.shape == t.shape == s.shape) or d.ndim != 1:
        raise ValueError(
            f"domain_idx, tokens, S must be 1-D of equal length, got {d.shape}, {t.shape}, {s.shape}"
        )
    if d.size and (d.min() < 0 or d.max() >= n_domains):
        raise ValueError(f"domain_idx outside [0, {n_domains})")
    return np.bincount(d.astype(np.int64), weights=t * s, minlength=n_domains).astype(np.float64)
