"""Entropy mixtures (BiMix, App. A): domain entropies → ``r_i = softmax(H_i)``, training-free.

The numpy specification of ``quadmix entropy``; the Spark job aggregates the same counts and
calls the same functions, so its values are bit-identical to these on the same tokens.

Measures, in nats, per domain:

- ``se``: unigram Shannon entropy ``H(X) = −Σ p(x) log p(x)`` over all tokens;
- ``je``: joint entropy of adjacent pairs ``H(X_t, X_{t+1})`` (pairs within a document: the
  documents of a sample are not a stream, so no pair crosses a document boundary);
- ``ce``: conditional entropy ``H(X_{t+1} | X_t) = −Σ P(x, x') log P(x' | x)`` with
  ``P(x) = Σ_x' P(x, x')`` the pairs' left marginal, i.e. ``JE − H(left token of a pair)``;
- ``vne``: von Neumann entropy ``−Σ λ log λ`` of ρ = K / N, K the cosine kernel (unit diagonal)
  of N document vectors.

Every count-based entropy is ``log N − Σ_c n_c · c log c / N`` over its *count histogram*
(n_c codes seen exactly c times, N = Σ n_c c): integers in, one ``math.fsum`` in sorted order,
so the value does not depend on how the counts were summed or partitioned.

Estimators of the count-based entropies (``estimator``):

- ``plugin``: the entropy of the sample's frequencies. It is biased low by about (K − 1) / (2N)
  (K distinct codes, N counted items), so a domain sampled below the cap reads as less varied;
- ``miller_madow``: plug-in + (K − 1) / (2N), K and N from the same histogram. CE = JE − H(left)
  gets JE's correction minus H(left)'s, (K_pair − K_left) / (2 N_pairs): the same as correcting
  each H(X' | X = x) by (K_x − 1) / (2 N_x) and weighting it by N_x / N.

VNE is not a frequency estimate and has no such correction. Everything is in nats (log base e);
a log base b would divide every H by ln b, the same as :func:`softmax_mixture`'s temperature ln b.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quadmix_spark.core import Mixture

__all__ = [
    "COUNT_KINDS",
    "ESTIMATORS",
    "LOG_BASE",
    "MEASURES",
    "PAIR_SHIFT",
    "count_histogram",
    "entropies_from_histograms",
    "entropy_from_counts",
    "entropy_from_histogram",
    "miller_madow_correction",
    "ngram_counts",
    "sequence_entropies",
    "softmax_mixture",
    "von_neumann_entropy",
]

#: The four measures, in the order they are reported.
MEASURES = ("se", "je", "ce", "vne")
#: What is counted: tokens, adjacent pairs, and the left token of each pair (CE's marginal).
COUNT_KINDS = ("unigram", "pair", "left")
#: A pair (x, x') is counted under the code ``x << PAIR_SHIFT | x'`` (token ids < 2**31).
PAIR_SHIFT = 32
#: How a count-based entropy is estimated from a sample (see the module notes).
ESTIMATORS = ("plugin", "miller_madow")
#: The base of every logarithm here: entropies are in nats.
LOG_BASE = "e"


def _as_ids(tokens: ArrayLike) -> NDArray[np.int64]:
    ids = np.asarray(tokens, dtype=np.int64).ravel()
    if ids.size and (ids.min() < 0 or ids.max() >= 2**31):
        raise ValueError("token ids must be in [0, 2**31)")
    return ids


def ngram_counts(documents: Sequence[ArrayLike]) -> dict[str, tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Counts of every :data:`COUNT_KINDS` over ``documents`` (each a 1-D sequence of token ids).

    Returns kind → (codes, counts), codes sorted and unique, counts ≥ 1 (int64). Pair codes are
    ``x << PAIR_SHIFT | x'``; ``left`` counts x over the pairs (each document's last token has
    no successor and is not a left token).
    """
    lengths = np.fromiter((len(d) for d in documents), np.int64, len(documents))
    flat = _as_ids(np.fromiter(itertools.chain.from_iterable(documents), np.int64, int(lengths.sum())))
    # position p pairs with p + 1 unless p + 1 starts a document
    linked = np.ones(max(len(flat) - 1, 0), dtype=bool)
    starts = np.cumsum(lengths) - lengths
    starts = starts[(starts >= 1) & (starts < len(flat))]
    linked[starts - 1] = False
    pair = ((flat[:-1] << PAIR_SHIFT) | flat[1:])[linked] if len(flat) > 1 else flat[:0]
    out = {}
    for kind, codes in zip(COUNT_KINDS, (flat, pair, pair >> PAIR_SHIFT), strict=True):
        values, counts = np.unique(codes, return_counts=True)
        out[kind] = (values.astype(np.int64), counts.astype(np.int64))
    return out


def count_histogram(counts: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(c, n_c): the distinct positive counts, ascending, and how many codes have each."""
    c = np.asarray(counts, dtype=np.int64).ravel()
    if (c < 0).any():
        raise ValueError("counts must be >= 0")
    values, freq = np.unique(c[c > 0], return_counts=True)
    return values.astype(np.int64), freq.astype(np.int64)


def _checked_histogram(
    values: ArrayLike, frequencies: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    c = np.asarray(values, dtype=np.int64).ravel()
    n = np.asarray(frequencies, dtype=np.int64).ravel()
    if c.shape != n.shape:
        raise ValueError(f"values {c.shape} and frequencies {n.shape} must have one shape")
    if (c < 1).any() or (n < 1).any():
        raise ValueError("counts and their frequencies must be >= 1")
    if len(np.unique(c)) != len(c):
        raise ValueError("values must be distinct counts")
    if c.size == 0:
        raise ValueError("no counts: the entropy of an empty sample is undefined")
    return c, n


def miller_madow_correction(values: ArrayLike, frequencies: ArrayLike) -> float:
    """(K − 1) / (2N) nats for a count histogram: K = Σ n_c distinct codes, N = Σ n_c c items."""
    c, n = _checked_histogram(values, frequencies)
    return (int(n.sum()) - 1) / (2 * int(np.sum(c * n)))


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def entropy_from_histogram(values: ArrayLike, frequencies: ArrayLike, estimator: str = "plugin") -> float:
    """Shannon entropy (nats) of a distribution given as its count histogram.

    ``values`` (k,) distinct counts c ≥ 1, ``frequencies`` (k,) n_c ≥ 1 codes with count c, in any
    order. ``H = log N − Σ n_c c log c / N``, N = Σ n_c c; summed with ``math.fsum`` in ascending c,
    so any order of the pairs gives the same bits. ``miller_madow`` adds
    :func:`miller_madow_correction`. Raises ValueError when N = 0.
    """
    _check_estimator(estimator)
    c, n = _checked_histogram(values, frequencies)
    order = np.argsort(c)
    c, n = c[order], n[order]
    total = int(np.sum(c * n))
    pairs = zip(c.tolist(), n.tolist(), strict=True)
    weighted = math.fsum(float(ni) * float(ci) * math.log(ci) for ci, ni in pairs)
    plugin = max(0.0, math.log(total) - weighted / total)
    return plugin + miller_madow_correction(c, n) if estimator == "miller_madow" else plugin


def entropy_from_counts(counts: ArrayLike, estimator: str = "plugin") -> float:
    """Shannon entropy (nats) of the distribution ``counts / Σ counts``; zero counts are ignored."""
    return entropy_from_histogram(*count_histogram(counts), estimator=estimator)


def entropies_from_histograms(
    histograms: Mapping[str, tuple[ArrayLike, ArrayLike]],
    estimator: str = "plugin",
) -> dict[str, float]:
    """SE, JE and CE from the count histograms of :data:`COUNT_KINDS` (kind → (c, n_c)).

    CE = JE − H(left) (see the module notes); both share the pairs' total, so CE is exact, and
    with ``miller_madow`` it carries JE's correction minus H(left)'s.
    """
    missing = [k for k in COUNT_KINDS if k not in histograms]
    if missing:
        raise ValueError(f"histograms lack {missing}")
    h = {kind: entropy_from_histogram(*histograms[kind], estimator=estimator) for kind in COUNT_KINDS}
    return {"se": h["unigram"], "je": h["pair"], "ce": max(0.0, h["pair"] - h["left"])}


def sequence_entropies(documents: Sequence[ArrayLike], estimator: str = "plugin") -> dict[str, float]:
    """SE, JE and CE (nats) of ``documents`` (token-id arrays), computed in one process."""
    counts = ngram_counts(documents)
    return entropies_from_histograms({k: count_histogram(v[1]) for k, v in counts.items()}, estimator)


def von_neumann_entropy(vectors: ArrayLike) -> float:
    """Von Neumann entropy (nats) of ρ = K / N, K the cosine kernel of ``vectors`` (N, d).

    Rows are scaled to unit length, so K has a unit diagonal and trace ρ = 1. ρ = V Vᵀ / N and
    Vᵀ V / N have the same non-zero eigenvalues; the smaller of the two is decomposed (the d × d
    one for N > d), so the cost is O(N d²), not O(N³). Identical vectors give 0, N orthogonal
    ones log N. Raises ValueError on a zero or non-finite row.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"vectors must be a non-empty (N, d) matrix, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("vectors must be finite")
    norms = np.linalg.norm(v, axis=1)
    if (norms == 0).any():
        raise ValueError(f"{int((norms == 0).sum())} zero vectors: their direction is undefined")
    u = v / norms[:, None]
    n, d = u.shape
    gram = (u.T @ u if n > d else u @ u.T) / n
    eig = np.linalg.eigvalsh(gram)
    eig = eig[eig > 1e-12]  # rounding leaves tiny negative or zero eigenvalues: 0 log 0 = 0
    return max(0.0, float(-np.sum(eig * np.log(eig))))


def softmax_mixture(entropies: Mapping[str, float], temperature: float = 1.0, **provenance: Any) -> Mixture:
    """``r_i = exp(H_i / T) / Σ_j exp(H_j / T)`` over the domains of ``entropies`` (domain → H in nats).

    Higher entropy, larger share; a larger ``temperature`` T flattens the shares toward uniform
    (T = ln b is the softmax of entropies in base b). ``provenance`` is stored with the mixture.
    """
    if not entropies:
        raise ValueError("softmax_mixture needs at least one domain")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    domains = sorted(entropies)
    h = np.array([float(entropies[d]) for d in domains], dtype=np.float64)
    if not np.all(np.isfinite(h)):
        bad = [d for d, x in zip(domains, h, strict=True) if not math.isfinite(x)]
        raise ValueError(f"entropies must be finite; not for {bad}")
    # T = 1 divides by 1.0, which leaves every bit of H − max H as it was before T existed
    w = np.exp((h - h.max()) / temperature)  # shifted: exp never overflows, the ratios are unchanged
    shares = w / w.sum()
    return Mixture.from_shares(dict(zip(domains, shares.tolist(), strict=True)), provenance)
