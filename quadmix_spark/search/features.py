"""What the surrogate reads in QuaDMix mode: θ itself, what θ selects, or both.

``theta`` is the raw (N + 4)·M vector; ``realised`` the per-domain features of what θ selects,
estimated from a sample (:class:`quadmix_spark.core.realised.DomainSample`): the shares of
selected tokens, the kept fractions, the mean copies and the mean σ of the selected tokens;
``both`` puts the two side by side. Each is a small map with ``names`` and ``transform(theta)``
that fit-search applies to the runs and the search applies to every candidate, so fit and search
read the same layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quadmix_spark.core.realised import DomainSample

__all__ = ["FEATURE_MODES", "ThetaFeatures", "RealisedFeatures", "feature_map"]

FEATURE_MODES = ("theta", "realised", "both")


class ThetaFeatures:
    """θ as it is: ``transform`` returns its input (n, D)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)

    def transform(self, theta: ArrayLike) -> NDArray[np.float64]:
        return np.asarray(theta, dtype=np.float64)


class RealisedFeatures:
    """What each θ selects from ``sample`` at ``aim_tokens`` (the proxies' budget), with the domain
    ``shares`` fixed when a mixture is composed with θ: (n, M·(3 + N))."""

    def __init__(
        self, sample: DomainSample, aim_tokens: float | None, shares: ArrayLike | None = None
    ) -> None:
        self.sample = sample
        self.aim_tokens = aim_tokens
        self.shares = shares
        self.names = sample.names

    def transform(self, theta: ArrayLike) -> NDArray[np.float64]:
        return self.sample.features(theta, self.aim_tokens, shares=self.shares)


class BothFeatures:
    """θ followed by its realised features: (n, D + M·(3 + N))."""

    def __init__(self, theta: ThetaFeatures, realised: RealisedFeatures) -> None:
        self.parts = (theta, realised)
        self.names = theta.names + realised.names

    def transform(self, theta: ArrayLike) -> NDArray[np.float64]:
        return np.hstack([part.transform(theta) for part in self.parts])


def feature_map(
    mode: str,
    theta_names: Sequence[str],
    sample: DomainSample | None = None,
    aim_tokens: float | None = None,
    shares: ArrayLike | None = None,
) -> ThetaFeatures | RealisedFeatures | BothFeatures:
    """The map of ``mode`` (one of :data:`FEATURE_MODES`); realised features need ``sample``
    (and, at a fixed mixture, its ``shares`` in θ's domain order)."""
    if mode not in FEATURE_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}, got {mode!r}")
    theta = ThetaFeatures(theta_names)
    if mode == "theta":
        return theta
    if sample is None:
        raise ValueError(f"{mode} features need a sample of the pool (DomainSample)")
    realised = RealisedFeatures(sample, aim_tokens, shares)
    return realised if mode == "realised" else BothFeatures(theta, realised)
