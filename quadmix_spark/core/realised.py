"""What a θ actually selects, per domain, estimated from a sample: features for the surrogate.

θ has (N + 4)·M numbers, and at 64 runs a surrogate cannot learn which of them matter. What a
proxy trains on is summarised by a few numbers per domain m, computed here for any θ from a
per-domain sample of (σ, tokens) without touching the corpus (Eq. 1–3 on the sample):

- ``share``: the domain's share of the selected tokens, Σ_m t·S / Σ t·S over all domains, with
  each domain's sample tokens scaled up to its tokens in the pool;
- ``kept``: the token-weighted share of the domain's documents that get at least one copy,
  Σ t·min(c·S, 1) / Σ t (a document's copies are floor(c·S) + 1[u < frac(c·S)]);
- ``copies``: mean copies of a kept token, Σ t·c·S / Σ t·min(c·S, 1);
- ``quality[n]``: the mean σ of scorer n over the selected tokens, Σ t·S·σ_n / Σ t·S
  (smaller = better, as σ is oriented).

c is the budget scale the proxy datasets use: ``aim_tokens`` / (expected selected tokens of the
pool at c = 1); without an aim, c = 1. With fixed domain ``shares`` (a mixture composed with θ),
each domain has its own scale, aim · share / (its expected tokens at c = 1), and ``share`` is the
mixture's. The rank of a sample document is its token-weighted rank
among the domain's sample documents (Eq. 2 on the sample, ties counted whole), which is what the
rank mapping fitted on a larger sample gives it up to the sample's resolution.

Candidates are evaluated in chunks, domain by domain: memory is bounded by ``chunk`` × the
largest domain sample × N, whatever the number of candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .merging import check_domain_idx
from .sampling import sampling_function

__all__ = ["DomainSample", "realised_feature_names"]

PER_DOMAIN = ("share", "kept", "copies")


def realised_feature_names(domains: Sequence[str], scorers: Sequence[str]) -> list[str]:
    """Feature names in the order :meth:`DomainSample.features` returns them: per domain,
    ``share[d]``, ``kept[d]``, ``copies[d]``, then ``quality[d,scorer]`` for each scorer."""
    names = []
    for d in domains:
        names += [f"{kind}[{d}]" for kind in PER_DOMAIN]
        names += [f"quality[{d},{s}]" for s in scorers]
    return names


@dataclass(frozen=True)
class DomainSample:
    """Sample documents of every domain and each domain's tokens in the pool.

    Attributes
    ----------
    domains, scorers : the θ layout's names (M domains, N scorers)
    sigma : (n, N) normalised scores σ ∈ [0, 1], smaller = better
    domain_idx : (n,) domain of each sample document, in [0, M)
    tokens : (n,) int tokens of each sample document, ≥ 1
    pool_tokens : (M,) tokens of each domain in the pool the sample was drawn from
    """

    domains: tuple[str, ...]
    scorers: tuple[str, ...]
    sigma: NDArray[np.float64]
    domain_idx: NDArray[np.int64]
    tokens: NDArray[np.int64]
    pool_tokens: NDArray[np.float64]

    def __post_init__(self) -> None:
        m, n = len(self.domains), len(self.scorers)
        sigma = np.asarray(self.sigma, dtype=np.float64)
        if sigma.ndim != 2 or sigma.shape[1] != n:
            raise ValueError(f"sigma must have shape (n, {n}), got {sigma.shape}")
        d = check_domain_idx(self.domain_idx, m, sigma.shape[0])
        t = np.asarray(self.tokens, dtype=np.int64)
        if t.shape != d.shape or (t.size and t.min() < 1):
            raise ValueError("tokens must hold one count >= 1 per sample document")
        pool = np.asarray(self.pool_tokens, dtype=np.float64)
        if pool.shape != (m,) or np.any(pool < 0):
            raise ValueError(f"pool_tokens must hold {m} counts >= 0")
        missing = [self.domains[i] for i in range(m) if pool[i] > 0 and not np.any(d == i)]
        if missing:
            raise ValueError(f"domains with tokens in the pool but no sample documents: {missing}")
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "domain_idx", d)
        object.__setattr__(self, "tokens", t)
        object.__setattr__(self, "pool_tokens", pool)

    @property
    def names(self) -> list[str]:
        return realised_feature_names(self.domains, self.scorers)

    def features(
        self,
        theta: ArrayLike,
        aim_tokens: float | None = None,
        chunk: int = 2_000,
        shares: ArrayLike | None = None,
    ) -> NDArray[np.float64]:
        """Realised features of K θ vectors (K, (N + 4)·M, ``ParamSampler``'s layout) → (K, M·(3 + N));
        ``shares`` (M,): a fixed domain mixture (needs ``aim_tokens``)."""
        th = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        m, n = len(self.domains), len(self.scorers)
        if th.shape[1] != m * (n + 4):
            raise ValueError(f"theta must have {m * (n + 4)} entries per row, got {th.shape[1]}")
        fixed = None
        if shares is not None:
            fixed = np.asarray(shares, dtype=np.float64)
            if fixed.shape != (m,) or not aim_tokens:
                raise ValueError(f"shares must hold {m} domain shares, with aim_tokens")
        out = np.empty((len(th), m * (3 + n)))
        for start in range(0, len(th), chunk):
            out[start : start + chunk] = self._chunk(th[start : start + chunk], aim_tokens, fixed)
        return out

    def _chunk(
        self, theta: NDArray[np.float64], aim_tokens: float | None, shares: NDArray[np.float64] | None
    ) -> NDArray[np.float64]:
        m, n = len(self.domains), len(self.scorers)
        blocks = theta.reshape(len(theta), m, n + 4)
        parts = [self._domain(blocks[:, i, :], i) for i in range(m)]
        mass = np.stack([p.mass for p in parts], axis=1)  # (K, M): Σ t·S over the sample
        weight = np.divide(self.pool_tokens, self._totals, out=np.zeros(m), where=self._totals > 0)
        pool_mass = mass * weight
        total = pool_mass.sum(axis=1)
        if shares is not None:  # one scale per domain: aim · share over the domain's expected tokens
            c = np.divide(
                aim_tokens * shares[None, :], pool_mass, out=np.zeros_like(pool_mass), where=pool_mass > 0
            )
            share = np.broadcast_to(shares, pool_mass.shape)
        else:
            scale = aim_tokens / np.maximum(total, 1e-300) if aim_tokens else np.ones(len(theta))
            c = np.repeat(scale[:, None], m, axis=1)
            share = pool_mass / np.maximum(total[:, None], 1e-300)
        kept_tokens = np.stack([p.kept_tokens(c[:, i]) for i, p in enumerate(parts)], axis=1)
        kept = kept_tokens / np.maximum(self._totals, 1e-300)
        copies = c * mass / np.maximum(kept_tokens, 1e-300)
        quality = np.stack([p.quality for p in parts], axis=1)  # (K, M, N)
        per = np.concatenate([share[..., None], kept[..., None], copies[..., None], quality], axis=2)
        return per.reshape(len(theta), m * (3 + n))

    @property
    def _totals(self) -> NDArray[np.float64]:
        return np.bincount(self.domain_idx, self.tokens, minlength=len(self.domains)).astype(np.float64)

    def _domain(self, block: NDArray[np.float64], i: int) -> _DomainPart:
        """Eq. 1–3 for one domain's sample documents under each θ's block (K, N + 4).

        Only documents ranked within ω get more than ε copies (S = ε past the cutoff), so the
        documents are partitioned first and only the best ``k`` are sorted, with ``k`` large
        enough that any ``k`` documents hold ω's share of the domain's tokens; the rest count as
        ε each. Where some row's k-th and (k+1)-th merged scores tie, the rows are sorted whole (a
        tie group straddling the cut is ranked at its end)."""
        n = len(self.scorers)
        rows = self.domain_idx == i
        sigma, t = self.sigma[rows], self.tokens[rows].astype(np.float64)
        if not rows.any():
            return _DomainPart.empty(len(block), n)
        alpha, lam, omega, eta, eps = (block[:, :n], *(block[:, n + j, None] for j in range(4)))
        q = alpha @ sigma.T  # Eq. 1 for every θ: (K, n_m)
        total = t.sum()
        # the fewest documents that always cover ω·T tokens: the smallest ones, counted up
        smallest = np.cumsum(np.sort(t))
        k = int(np.searchsorted(smallest, float(omega.max()) * total, side="left")) + 1
        order = _best_first(q, k)
        qs = np.take_along_axis(q, order, axis=1)
        ts = t[order]
        cum = np.cumsum(ts, axis=1)
        ends = np.ones_like(qs, dtype=bool)
        ends[:, :-1] = qs[:, 1:] != qs[:, :-1]
        if not ends.all():  # Eq. 2 counts a tie group whole: rank = tokens up to the group's end
            at_end = np.where(ends, cum, np.inf)
            cum = np.minimum.accumulate(at_end[:, ::-1], axis=1)[:, ::-1]
        S = sampling_function(cum / total, lam, omega, eta, eps)
        sigma_in = sigma[order]  # (K, k, N)
        rest = total - ts.sum(axis=1)  # tokens past the sorted ones, each at S = ε
        rest_sigma = (t @ sigma)[None, :] - np.einsum("kj,kjn->kn", ts, sigma_in)
        mass = (S * ts).sum(axis=1) + eps[:, 0] * rest
        quality = (np.einsum("kj,kj,kjn->kn", S, ts, sigma_in) + eps * rest_sigma) / np.maximum(
            mass[:, None], 1e-300
        )
        return _DomainPart(mass, quality, S, ts, eps[:, 0], rest)


def _best_first(q: NDArray[np.float64], k: int) -> NDArray[np.intp]:
    """Per row, the indices of the k smallest values in ascending order; every index, sorted,
    where k covers the row or, in some row, the k-th and (k+1)-th values tie."""
    n = q.shape[1]
    if k >= n:
        return np.argsort(q, axis=1)
    part = np.argpartition(q, k, axis=1)
    inside, boundary = part[:, :k], np.take_along_axis(q, part[:, k : k + 1], axis=1)
    q_in = np.take_along_axis(q, inside, axis=1)
    order = np.take_along_axis(inside, np.argsort(q_in, axis=1), axis=1)
    if np.any(q_in.max(axis=1) >= boundary[:, 0]):  # a tie group across the cut: rank it whole
        return np.argsort(q, axis=1)
    return order


@dataclass(frozen=True)
class _DomainPart:
    """One domain's sums under K θ: Σ t·S (K,), the selected mean σ (K, N), and what ``kept``
    needs once the budget scale is known: S and t of the sorted documents (K, k), ε and the
    tokens of the rest (K,)."""

    mass: NDArray[np.float64]
    quality: NDArray[np.float64]
    S: NDArray[np.float64]
    t: NDArray[np.float64]
    eps: NDArray[np.float64]
    rest: NDArray[np.float64]

    @classmethod
    def empty(cls, k: int, n: int) -> _DomainPart:
        zeros = np.zeros(k)
        return cls(zeros, np.zeros((k, n)), np.zeros((k, 0)), np.zeros((k, 0)), zeros, zeros)

    def kept_tokens(self, c: NDArray[np.float64]) -> NDArray[np.float64]:
        """Σ t·min(c·S, 1) at scales c (K,)."""
        inside = (np.minimum(c[:, None] * self.S, 1.0) * self.t).sum(axis=1)
        return inside + np.minimum(c * self.eps, 1.0) * self.rest
