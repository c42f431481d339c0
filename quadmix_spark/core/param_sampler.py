"""Algorithm 1 of QuaDMix: random θ for proxy runs and for the regressor search.

For each draw (quadmix.md §3):

1. global criterion weights a_n ~ U, ã = a / Σ a (shared by every domain);
2. per domain m: b_{n,m} ~ U, α_{n,m} = ã_n b_{n,m} / Σ_i ã_i b_{i,m};
   λ, ω, η, ε ~ U rescaled to their ranges (paper: [0,1000], [0,0.1], [0,1], [0,1e-3]);
3. θ in the flat layout of :mod:`.params`.

The proxy runs and the search must use the same sampler settings: the regressor is only
trusted on this distribution.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from .params import BETA_KEYS, BETA_MAX, ParamsError, QuadMixParams, _names, param_names

__all__ = ["ParamSampler"]


class ParamSampler:
    """Vectorised Algorithm 1.

    Parameters
    ----------
    domains, scorers : sequences of names (M and N of them)
    lam_scale, omega_scale, eta_scale, eps_scale : float
        Upper ends of the β ranges; β = scale · U.
    ranges : mapping of ``"lambda" | "omega" | "eta" | "epsilon"`` -> (low, high), optional
        Overrides the scale of that component: β = low + (high − low) · U.
    exclude_scorers : iterable of scorer names, optional
        Scorers forced to weight 0 in every domain (the paper's filter ablations).

    Notes
    -----
    Each draw consumes one row of ``rng.random((n, N + M·N + 4·M))`` from
    ``np.random.default_rng(seed)``: columns [0, N) are a, then b in (domain, scorer)
    order, then (λ, ω, η, ε) per domain. Hence ``sample(n, s)[:k] == sample(k, s)``.
    a and b use 1 − U ∈ (0, 1] so no weight sum can be zero.
    """

    def __init__(
        self,
        domains: Sequence[str],
        scorers: Sequence[str],
        lam_scale: float = 1000.0,
        omega_scale: float = 0.1,
        eta_scale: float = 1.0,
        eps_scale: float = 1e-3,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        exclude_scorers: Iterable[str] = (),
    ) -> None:
        self.domains = _names(domains, "domains")
        self.scorers = _names(scorers, "scorers")
        scales = (lam_scale, omega_scale, eta_scale, eps_scale)
        bounds = {key: (0.0, float(x)) for key, x in zip(BETA_KEYS, scales, strict=True)}
        for key, rng in (ranges or {}).items():
            if key not in bounds:
                raise ParamsError(f"ranges: unknown key {key!r} (expected {', '.join(BETA_KEYS)})")
            bounds[key] = (float(rng[0]), float(rng[1]))
        for key, (low, high) in bounds.items():
            if not (0.0 <= low <= high < float("inf")):
                raise ParamsError(f"range of {key} is ({low}, {high}); need 0 <= low <= high")
            if key in BETA_MAX and high > BETA_MAX[key][0]:
                top, meaning = BETA_MAX[key]
                raise ParamsError(f"range of {key} is ({low}, {high}); {meaning}, at most {top:g}")
        self.bounds: dict[str, tuple[float, float]] = bounds
        excluded = set(exclude_scorers)
        unknown = sorted(excluded - set(self.scorers))
        if unknown:
            raise ParamsError(f"exclude_scorers: unknown scorer(s) {unknown}")
        if excluded >= set(self.scorers):
            raise ParamsError("exclude_scorers excludes every scorer")
        self.scorer_mask = np.array([s not in excluded for s in self.scorers])

    @property
    def n_params(self) -> int:
        """(N + 4)·M."""
        return (len(self.scorers) + 4) * len(self.domains)

    @property
    def names(self) -> list[str]:
        """Names of the vector entries (see :func:`param_names`)."""
        return param_names(self.domains, self.scorers)

    def sample(self, n: int, seed: int) -> NDArray[np.float64]:
        """Draw ``n`` parameter vectors, shape (n, (N + 4)·M), deterministic in ``seed``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        m, k = len(self.domains), len(self.scorers)
        u = np.random.default_rng(seed).random((n, k + m * k + 4 * m))
        a = (1.0 - u[:, :k]) * self.scorer_mask
        a_tilde = a / a.sum(axis=1, keepdims=True)
        # Fill one preallocated output in place: at 100k draws the temporaries, not the
        # arithmetic, dominate the run time.
        out = np.empty((n, m, k + 4))
        alpha = out[:, :, :k]
        np.subtract(1.0, u[:, k : k + m * k].reshape(n, m, k), out=alpha)
        alpha *= a_tilde[:, None, :]
        alpha /= alpha.sum(axis=2, keepdims=True)
        low = np.array([self.bounds[key][0] for key in BETA_KEYS])
        width = np.array([self.bounds[key][1] - self.bounds[key][0] for key in BETA_KEYS])
        beta = out[:, :, k:]
        np.multiply(u[:, k + m * k :].reshape(n, m, 4), width, out=beta)
        beta += low
        return out.reshape(n, self.n_params)

    def sample_params(self, seed: int) -> QuadMixParams:
        """One draw as a validated :class:`QuadMixParams`."""
        return QuadMixParams.from_vector(self.sample(1, seed)[0], self.domains, self.scorers)
