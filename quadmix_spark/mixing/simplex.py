"""Euclidean projection onto the probability simplex, the Π_A of TANDEM's mixture update."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["project_simplex"]


def project_simplex(v: ArrayLike) -> NDArray[np.float64]:
    """argmin_{a ≥ 0, Σa = 1} ‖a − v‖² for ``v`` (M,), M ≥ 1.

    The solution is ``max(v − τ, 0)`` with τ chosen so the result sums to 1: sort v decreasingly,
    find the largest ρ with ``u_ρ − (Σ_{j≤ρ} u_j − 1)/ρ > 0`` and set τ to that fraction
    (Held, Wolfe & Crowder 1974; Duchi et al. 2008). O(M log M), exact up to rounding.
    """
    x = np.asarray(v, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"project_simplex needs a non-empty 1-D vector, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"project_simplex needs finite values, got {x}")
    u = np.sort(x)[::-1]
    cumulative = np.cumsum(u) - 1.0
    rho = np.arange(1, x.size + 1)
    active = np.flatnonzero(u - cumulative / rho > 0)[-1]  # the first entry is always active
    tau = cumulative[active] / (active + 1)
    out = np.maximum(x - tau, 0.0)
    return out / out.sum()  # removes the last rounding error: sums to 1 to the ulp
