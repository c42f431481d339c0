"""K parameter vectors evaluated together: σ once, then Eq.1–3 for every θ_k.

Proxy datasets (quadmix.md §4) need the same pool selected under thousands of θ. σ depends only
on the scorers' references, so it is shared; q̄, r̄ and S differ per θ, each θ with its own rank
mapping (q̄ depends on α). Each row of the result is exactly what the single-θ core gives for
that θ: the same functions are called in the same order, so a proxy dataset equals the
selection ``quadmix select`` makes with that θ, mapping, scale and seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .merging import merge_scores
from .params import ParamsError, QuadMixParams
from .ranking import RankMapping, apply_rank_mapping, fit_rank_mapping
from .sampling import expected_copies_to_copies, sampling_function

__all__ = ["ThetaSet"]


@dataclass(frozen=True)
class ThetaSet:
    """K validated θ over the same domains and scorers, each with its rank mapping.

    Attributes
    ----------
    params : tuple of K :class:`QuadMixParams`
    mappings : tuple of K :class:`RankMapping` (q̄ → r̄ per domain, fitted per θ)
    """

    params: tuple[QuadMixParams, ...]
    mappings: tuple[RankMapping, ...]

    def __post_init__(self) -> None:
        if not self.params:
            raise ParamsError("a ThetaSet needs at least one θ")
        if len(self.mappings) != len(self.params):
            raise ParamsError(f"{len(self.params)} θ but {len(self.mappings)} rank mappings")
        first = self.params[0]
        for k, p in enumerate(self.params):
            if p.domains != first.domains or p.scorers != first.scorers:
                raise ParamsError(f"θ[{k}] names other domains or scorers than θ[0]")

    @classmethod
    def fit(
        cls,
        params: Sequence[QuadMixParams],
        sample_sigma: ArrayLike,
        sample_domain_idx: ArrayLike,
        sample_tokens: ArrayLike,
    ) -> ThetaSet:
        """Fit every θ's rank mapping on one sample: σ (n, N), domain index (n,), tokens (n,)."""
        n_domains = len(params[0].domains) if params else 0
        mappings = tuple(
            fit_rank_mapping(
                merge_scores(sample_sigma, sample_domain_idx, p.alpha),
                sample_domain_idx,
                sample_tokens,
                n_domains,
            )
            for p in params
        )
        return cls(tuple(params), mappings)

    def __len__(self) -> int:
        return len(self.params)

    def expected_copies(self, sigma: ArrayLike, domain_idx: ArrayLike) -> NDArray[np.float64]:
        """S of every document under every θ: σ (n, N), domain index (n,) → (K, n)."""
        d = np.asarray(domain_idx, dtype=np.int64)
        out = np.empty((len(self.params), d.shape[0]), dtype=np.float64)
        for k, (p, mapping) in enumerate(zip(self.params, self.mappings, strict=True)):
            rank = apply_rank_mapping(mapping, merge_scores(sigma, d, p.alpha), d)
            out[k] = sampling_function(rank, p.lam[d], p.omega[d], p.eta[d], p.eps[d])
        return out

    def expected_tokens(
        self, sigma: ArrayLike, domain_idx: ArrayLike, tokens: ArrayLike
    ) -> NDArray[np.float64]:
        """Σ tokens · S per θ, shape (K,): the expected size of each dataset at scale 1."""
        return self.expected_copies(sigma, domain_idx) @ np.asarray(tokens, dtype=np.float64)

    def copies(
        self, sigma: ArrayLike, domain_idx: ArrayLike, u: ArrayLike, scales: ArrayLike
    ) -> NDArray[np.int64]:
        """Integer copies per θ and document, (K, n): floor(c_k·S) + 1[u < frac(c_k·S)].

        ``u`` (n,) is shared by every θ (common random numbers: two runs differ because their
        θ differ, not because their coin flips do); ``scales`` (K,) are the budget scales c_k, or
        (K, M) one per θ and domain (a domain mixture composed with θ).
        """
        c = np.asarray(scales, dtype=np.float64)
        m = len(self.params[0].domains)
        if c.shape not in ((len(self.params),), (len(self.params), m)):
            raise ValueError(
                f"scales must have shape ({len(self.params)},) or ({len(self.params)}, {m}), got {c.shape}"
            )
        expected = self.expected_copies(sigma, domain_idx)
        per_doc = c[:, None] if c.ndim == 1 else c[:, np.asarray(domain_idx, dtype=np.int64)]
        return np.stack([expected_copies_to_copies(per_doc[k] * expected[k], u) for k in range(len(c))])
