"""The mixture a fitted BiMix law predicts best: minimise Σ_i w_i L_i(r_i, s_target) over the simplex.

With ``K_i = B_i s^-β_i + C_i`` each term is ``c_i r_i^-α_i`` (``c_i = w_i A_i K_i ≥ 0``), convex
in r_i for α_i ≥ 0, and the sum is separable: the KKT conditions with one multiplier λ for
Σ r_i = 1 and box bounds l_i ≤ r_i ≤ u_i give (mixing_laws.md §1)::

    r_i(λ) = clip((α_i c_i / λ)^{1/(α_i+1)}, l_i, u_i)

and Σ r_i(λ) falls monotonically in λ, so a 1-D root search on log λ (Brent) finds the optimum; no
starting point, no local minima. The upper bounds are where the data runs out:
:func:`share_caps` (``max_repeats × available_i / budget``, as ``select`` caps a domain).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

from quadmix_spark.core import Mixture

from .bimix import COEFFICIENTS, BiMixLaw

__all__ = ["BiMixOptimum", "optimal_mixture", "share_caps"]


def share_caps(available_tokens: ArrayLike, budget: float, max_repeats: float) -> NDArray[np.float64]:
    """Largest share each domain can fill: ``min(1, max_repeats × available_i / budget)``, shape (M,)."""
    tokens = np.asarray(available_tokens, dtype=np.float64)
    if not (math.isfinite(budget) and budget > 0 and math.isfinite(max_repeats) and max_repeats > 0):
        raise ValueError(f"budget and max_repeats must be > 0, got {budget!r} and {max_repeats!r}")
    if tokens.ndim != 1 or not np.all(np.isfinite(tokens)) or (tokens < 0).any():
        raise ValueError("available_tokens must be a 1-D array of token counts >= 0")
    return np.minimum(1.0, max_repeats * tokens / budget)


@dataclass(frozen=True)
class BiMixOptimum:
    """The optimal mixture of a law at ``s_target``, arrays of shape (M,) in ``domains`` order.

    ``objective``: Σ w_i L_i(r_i, s_target) (nats per token, weighted); ``losses``: each L_i;
    ``multiplier``: λ at the root; ``at_lower`` / ``at_upper``: domains held by a bound.
    """

    domains: list[str]
    r: NDArray[np.float64]
    objective: float
    losses: NDArray[np.float64]
    weights: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    s_target: float
    multiplier: float
    iterations: int
    at_lower: list[str]
    at_upper: list[str]
    coefficients: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def shares(self) -> dict[str, float]:
        return dict(zip(self.domains, map(float, self.r), strict=True))

    def to_mixture(self, fit: Mapping[str, Any] | None = None, **provenance: Any) -> Mixture:
        """The mixture (method ``bimix``), with the target, the predicted losses, the bounds that
        bind, the coefficients and ``fit`` (the law's fit metrics) in its provenance."""
        prov: dict[str, Any] = {
            "method": "bimix",
            "s_target": self.s_target,
            "objective": self.objective,
            "predicted_loss": dict(zip(self.domains, map(float, self.losses), strict=True)),
            "at_lower": self.at_lower,
            "at_upper": self.at_upper,
            "coefficients": self.coefficients,
        }
        if not np.all(self.weights == 1.0):
            prov["weights"] = dict(zip(self.domains, map(float, self.weights), strict=True))
        if fit is not None:
            prov["fit"] = dict(fit)
        prov.update(provenance)
        return Mixture.from_shares(self.shares, prov)


def _per_domain(name: str, value: Any, domains: list[str], default: float) -> NDArray[np.float64]:
    """A scalar, a mapping domain → value (others get ``default``), or an (M,) array in domain order."""
    m = len(domains)
    if value is None:
        out = np.full(m, default)
    elif isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - set(domains))
        if unknown:
            raise ValueError(f"{name} names domains the law does not have: {unknown}")
        out = np.array([float(value.get(d, default)) for d in domains])
    else:
        out = np.broadcast_to(np.asarray(value, dtype=np.float64), (m,)).copy()
    if not np.all(np.isfinite(out)) or (out < 0).any():
        raise ValueError(f"{name} must be finite and >= 0 for every domain")
    return out


def optimal_mixture(
    law: BiMixLaw,
    s_target: float,
    *,
    weights: ArrayLike | Mapping[str, float] | None = None,
    lower: ArrayLike | Mapping[str, float] | None = None,
    upper: ArrayLike | Mapping[str, float] | None = None,
) -> BiMixOptimum:
    """Minimise ``Σ_i w_i L_i(r_i, s_target)`` over the simplex with ``lower ≤ r ≤ upper``.

    Parameters
    ----------
    law : a fitted :class:`BiMixLaw` (or one from coefficients)
    s_target : tokens of the run the mixture is for (> 0)
    weights : w_i ≥ 0 (default 1): a scalar, domain → weight, or (M,) in ``law.domains_`` order
    lower, upper : share bounds, same forms (defaults 0 and 1); need Σ lower ≤ 1 ≤ Σ upper

    Domains with w_i α_i = 0 gain nothing from a larger share and stay at their lower bound.
    """
    if not law.is_fitted:
        raise RuntimeError("the law is not fitted")
    if not (isinstance(s_target, int | float | np.number) and math.isfinite(s_target) and s_target > 0):
        raise ValueError(f"s_target must be a number of tokens > 0, got {s_target!r}")
    domains = list(law.domains_)
    w = _per_domain("weights", weights, domains, 1.0)
    lo = _per_domain("lower", lower, domains, 0.0)
    hi = _per_domain("upper", upper, domains, 1.0)
    hi = np.minimum(hi, 1.0)
    if (lo > hi).any():
        bad = [d for d, a, b in zip(domains, lo, hi, strict=True) if a > b]
        raise ValueError(f"lower > upper for {bad}")
    if lo.sum() > 1.0 + 1e-12 or hi.sum() < 1.0 - 1e-12:
        raise ValueError(f"no mixture fits the bounds: Σ lower = {lo.sum():.6g}, Σ upper = {hi.sum():.6g}")

    coef = law.coef_
    A, alpha, B, beta, C = (coef[c].to_numpy(dtype=np.float64) for c in COEFFICIENTS)
    k = B * float(s_target) ** -beta + C
    drive = alpha * w * A * k  # α_i c_i: the pull of domain i; 0 = indifferent to its share
    active = drive > 0
    log_drive = np.log(np.where(active, drive, 1.0))
    expo = 1.0 / (alpha + 1.0)

    def shares(t: float) -> NDArray[np.float64]:
        free = np.where(active, np.exp(expo * (log_drive - t)), 0.0)
        return np.clip(free, lo, hi)

    def excess(t: float) -> float:
        return math.fsum(shares(t)) - 1.0

    iterations = 0
    if abs(lo.sum() - 1.0) <= 1e-12:
        t_star, r = math.inf, lo.copy()
    elif abs(hi.sum() - 1.0) <= 1e-12:
        t_star, r = -math.inf, hi.copy()
    else:
        if not active.any() or hi[active].sum() + lo[~active].sum() < 1.0:
            raise ValueError(
                "the domains whose loss falls with their share (w_i α_i > 0) cannot fill the mixture "
                "within their upper bounds"
            )
        # λ small enough that every active share sits at its cap, large enough that Σ r < 1
        t_lo = float(np.min(log_drive[active] - (alpha[active] + 1.0) * np.log(hi[active]))) - 1.0
        delta = (1.0 - lo.sum()) / (2 * len(domains))
        floor = np.maximum(lo, delta)
        t_hi = float(np.max(log_drive[active] - (alpha[active] + 1.0) * np.log(floor[active]))) + 1.0
        t_star, info = brentq(excess, t_lo, t_hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, full_output=True)
        iterations = info.iterations
        r = shares(t_star)
        # the root is exact to ~1e-15 in Σ r; put the last bit on the shares inside their bounds
        inside = (r > lo) & (r < hi)
        if inside.any():
            r[inside] += (1.0 - math.fsum(r)) * r[inside] / r[inside].sum()
    with np.errstate(divide="ignore"):
        losses = A * r**-alpha * k
    tol = 1e-12
    return BiMixOptimum(
        domains=domains,
        r=r,
        objective=float(np.sum(w[w > 0] * losses[w > 0])),  # a weight of 0 ignores an infinite loss
        losses=losses,
        weights=w,
        lower=lo,
        upper=hi,
        s_target=float(s_target),
        multiplier=math.exp(t_star) if math.isfinite(t_star) else (0.0 if t_star < 0 else math.inf),
        iterations=iterations,
        at_lower=[d for d, x, b in zip(domains, r, lo, strict=True) if x <= b + tol],
        at_upper=[d for d, x, b in zip(domains, r, hi, strict=True) if x >= b - tol],
        coefficients={d: {c: float(coef.loc[d, c]) for c in COEFFICIENTS} for d in domains},
    )
