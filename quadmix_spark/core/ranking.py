"""Eq.2: token-weighted, inclusive, per-domain percentile rank r̄ ∈ (0, 1].

r̄(x) = Σ{tokens_y : d_y = d_x, q̄_y ≤ q̄_x} / Σ{tokens_y : d_y = d_x}; smaller = better.
Documents with equal q̄ in a domain get equal r̄ (the ≤ counts the whole tie group).

Two modes:

* exact (:func:`token_weighted_rank`): needs every document of a domain at once; the
  reference the Spark path is tested against.
* scalable (:func:`fit_rank_mapping` + :func:`apply_rank_mapping`): a per-domain step
  function fitted on a sample (quadmix.md §2, "large scale") and applied row by row.
  Applied to the very data it was fitted on it reproduces the exact rank bit for bit.

Token counts must be positive integers: a zero-token document could get r̄ = 0, outside
the (0, 1] contract, so empty documents are quarantined before ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .merging import check_domain_idx

__all__ = ["RankMapping", "apply_rank_mapping", "fit_rank_mapping", "token_weighted_rank"]


def _check_inputs(
    merged: ArrayLike, domain_idx: ArrayLike, tokens: ArrayLike, n_domains: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    q = np.asarray(merged, dtype=np.float64)
    if q.ndim != 1:
        raise ValueError(f"merged must be 1-D, got shape {q.shape}")
    if np.isnan(q).any():
        raise ValueError("merged scores contain NaN; quarantine rows with missing scores first")
    d = check_domain_idx(domain_idx, n_domains, q.shape[0])
    t = np.asarray(tokens)
    if t.shape != q.shape:
        raise ValueError(f"tokens must have shape {q.shape}, got {t.shape}")
    if t.size and not (np.issubdtype(t.dtype, np.integer) or np.issubdtype(t.dtype, np.floating)):
        raise TypeError(f"tokens must be numeric, got dtype {t.dtype}")
    t64 = t.astype(np.int64)
    # Integers keep cumulative sums exact, so a domain's ranks never depend on the
    # rounding of other domains' token counts in the same batch.
    if t.size and not np.array_equal(t64, t):
        raise ValueError("tokens must be whole numbers (token counts)")
    if t.size and t64.min() < 1:
        i = int(np.flatnonzero(t64 < 1)[0])
        raise ValueError(
            f"tokens must be >= 1 (row {i} has {t64[i]}); quarantine empty documents before ranking"
        )
    return q, d, t64


def _group_ranks(
    q: NDArray[np.float64], d: NDArray[np.int64], t: NDArray[np.int64], n_domains: int
) -> tuple[NDArray[np.intp], NDArray[np.bool_], NDArray[np.float64]]:
    """Sort by (domain, q̄) and give each row the rank of its tie group.

    Returns ``order`` (the sort permutation), ``last`` (True at the last row of each
    (domain, q̄) group in sorted order) and ``r_sorted`` (rank per sorted row). Both the
    exact mode and the mapping use this, so they share the arithmetic exactly.
    """
    order = np.lexsort((q, d))
    ds, qs, ts = d[order], q[order], t[order]
    cum = np.concatenate(([0], np.cumsum(ts, dtype=np.int64)))
    starts = np.searchsorted(ds, np.arange(n_domains), side="left")
    ends = np.searchsorted(ds, np.arange(n_domains), side="right")
    total = cum[ends] - cum[starts]
    within = cum[1:] - cum[starts][ds]
    last = np.ones(ds.shape[0], dtype=bool)
    last[:-1] = (ds[1:] != ds[:-1]) | (qs[1:] != qs[:-1])
    group = np.cumsum(last) - last  # index of the tie group each sorted row belongs to
    group_cum = within[last]
    r_sorted = group_cum[group] / total[ds]
    return order, last, r_sorted


def token_weighted_rank(
    merged: ArrayLike, domain_idx: ArrayLike, tokens: ArrayLike, n_domains: int
) -> NDArray[np.float64]:
    """Exact Eq.2 over all given documents.

    Parameters
    ----------
    merged : array-like of float, shape (n_docs,)
        Merged scores q̄ (smaller = better).
    domain_idx : array-like of int, shape (n_docs,)
        Domain index in [0, n_domains).
    tokens : array-like of int, shape (n_docs,)
        Token count of each document, >= 1.
    n_domains : int
        M.

    Returns
    -------
    ndarray of float64, shape (n_docs,), in (0, 1]. The result depends only on the set of
    rows, not their order.
    """
    q, d, t = _check_inputs(merged, domain_idx, tokens, n_domains)
    order, _, r_sorted = _group_ranks(q, d, t, n_domains)
    out = np.empty_like(r_sorted)
    out[order] = r_sorted
    return out


@dataclass(frozen=True, eq=False)
class RankMapping:
    """Per-domain step function q̄ → r̄ fitted on a sample.

    Attributes
    ----------
    knots : tuple of M float64 arrays
        Distinct merged scores of the sample in each domain, sorted ascending.
    fractions : tuple of M float64 arrays
        ``fractions[m][k]`` = share of domain m's sample tokens with q̄ ≤ ``knots[m][k]``;
        increasing, last entry 1.0. Empty arrays for a domain absent from the sample.

    A value q in domain m maps to ``fractions[m][i]`` for the last knot i with knot ≤ q.
    A value better than every knot maps to the **floor** ``fractions[m][0]`` (the
    smallest positive fraction of that domain), so r̄ stays in (0, 1].
    """

    knots: tuple[NDArray[np.float64], ...]
    fractions: tuple[NDArray[np.float64], ...]

    def __post_init__(self) -> None:
        if len(self.knots) != len(self.fractions):
            raise ValueError("knots and fractions must have one entry per domain")
        knots, fracs = [], []
        for m, (k, f) in enumerate(zip(self.knots, self.fractions, strict=True)):
            k = np.array(k, dtype=np.float64).ravel()
            f = np.array(f, dtype=np.float64).ravel()
            if k.shape != f.shape:
                raise ValueError(f"domain {m}: {k.size} knots but {f.size} fractions")
            if (np.diff(k) <= 0).any() or not np.isfinite(k).all():
                raise ValueError(f"domain {m}: knots must be finite and strictly increasing")
            if f.size and ((np.diff(f) <= 0).any() or f[0] <= 0 or f[-1] != 1.0):
                raise ValueError(f"domain {m}: fractions must increase in (0, 1] and end at 1")
            k.setflags(write=False)
            f.setflags(write=False)
            knots.append(k)
            fracs.append(f)
        object.__setattr__(self, "knots", tuple(knots))
        object.__setattr__(self, "fractions", tuple(fracs))

    @property
    def n_domains(self) -> int:
        return len(self.knots)

    def to_dict(self) -> dict[str, Any]:
        """Plain-list form for JSON; floats keep their exact value (repr round-trips)."""
        return {
            "version": 1,
            "n_domains": self.n_domains,
            "knots": [k.tolist() for k in self.knots],
            "fractions": [f.tolist() for f in self.fractions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankMapping:
        if data.get("version") != 1:
            raise ValueError(f"unsupported RankMapping version {data.get('version')!r}")
        knots, fracs = data["knots"], data["fractions"]
        if len(knots) != data["n_domains"]:
            raise ValueError("n_domains does not match the number of knot lists")
        return cls(tuple(knots), tuple(fracs))


def fit_rank_mapping(
    sample_merged: ArrayLike,
    sample_domain_idx: ArrayLike,
    sample_tokens: ArrayLike,
    n_domains: int,
) -> RankMapping:
    """Fit the q̄ → r̄ step function per domain on a sample (same inputs as
    :func:`token_weighted_rank`). Refit after every change of α: q̄ depends on it."""
    q, d, t = _check_inputs(sample_merged, sample_domain_idx, sample_tokens, n_domains)
    order, last, r_sorted = _group_ranks(q, d, t, n_domains)
    dl, ql, rl = d[order][last], q[order][last], r_sorted[last]
    bounds = np.searchsorted(dl, np.arange(n_domains + 1), side="left")
    knots = tuple(ql[bounds[m] : bounds[m + 1]] for m in range(n_domains))
    fracs = tuple(rl[bounds[m] : bounds[m + 1]] for m in range(n_domains))
    return RankMapping(knots, fracs)


def apply_rank_mapping(mapping: RankMapping, merged: ArrayLike, domain_idx: ArrayLike) -> NDArray[np.float64]:
    """Rank each document with ``mapping``; row-wise, so batch boundaries do not matter.

    Parameters
    ----------
    mapping : RankMapping
    merged : array-like of float, shape (n_docs,)
    domain_idx : array-like of int, shape (n_docs,)

    Returns
    -------
    ndarray of float64, shape (n_docs,), in (0, 1].

    Raises
    ------
    ValueError
        On NaN scores, or a document whose domain has no knots in the mapping.
    """
    q = np.asarray(merged, dtype=np.float64)
    if q.ndim != 1:
        raise ValueError(f"merged must be 1-D, got shape {q.shape}")
    if np.isnan(q).any():
        raise ValueError("merged scores contain NaN; quarantine rows with missing scores first")
    d = check_domain_idx(domain_idx, mapping.n_domains, q.shape[0])
    out = np.empty(q.shape[0], dtype=np.float64)
    for m in np.unique(d):
        sel = d == m
        knots, fracs = mapping.knots[m], mapping.fractions[m]
        if knots.size == 0:
            raise ValueError(f"domain {m} has no sample documents in the rank mapping")
        i = np.searchsorted(knots, q[sel], side="right") - 1
        out[sel] = fracs[np.maximum(i, 0)]
    return out
