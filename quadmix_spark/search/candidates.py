"""Surrogate search for θ*: score fresh random candidates, average the best (quadmix.md §4).

QuaDMix: 100,000 candidates from Algorithm 1 (the sampler the proxy runs used, so the regressor
is only asked about the region it was trained on), sort by predicted loss, θ* = the mean of the
top 10 vectors. RegMix: the same over Dirichlet draws of domain weights (official code: 100k
draws, top 128).

The mean of vectors whose α rows (or mixtures) sum to 1 sums to 1 again up to float rounding;
the result is checked against gross drift (a layout bug) and renormalised exactly. A mean the
surrogate predicts worse than every one of the top k has left the region they were found in (θ
is not a convex world: the mean of two good ω can select badly); θ* is then the best candidate.

Two options keep the search where the surrogate has evidence: a ``features`` map (what the
surrogate reads may be features of θ rather than θ itself: the candidates are mapped before they
are scored) and a :class:`RunRegion` (candidates farther from every run than the runs are from
each other are not ranked: a surrogate fitted on a few dozen runs extrapolates badly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quadmix_spark.core.param_sampler import ParamSampler
from quadmix_spark.core.params import QuadMixParams, _names

__all__ = [
    "DirichletSampler",
    "FeatureMap",
    "RegMixSampler",
    "RunRegion",
    "SearchResult",
    "search_mixture",
    "search_theta",
    "theta_to_params",
]

_DRIFT_TOL = 1e-9  # a mean of simplex points can only drift by rounding, far below this


class _Predictor(Protocol):
    def predict(self, X: ArrayLike) -> NDArray[np.float64]: ...


class FeatureMap(Protocol):
    """What the surrogate reads, computed from θ: ``transform(theta (n, D)) -> (n, F)``."""

    names: list[str]

    def transform(self, theta: NDArray[np.float64]) -> NDArray[np.float64]: ...


class RunRegion:
    """The region the runs cover, in the surrogate's feature space.

    Features are standardised by the runs' own spread; ``radius`` is the largest distance from a
    run to its nearest other run. A point is inside when some run lies within ``radius`` of it.
    ``X_runs`` (n_runs, F), n_runs ≥ 2.
    """

    def __init__(self, X_runs: ArrayLike) -> None:
        runs = np.asarray(X_runs, dtype=np.float64)
        if runs.ndim != 2 or len(runs) < 2:
            raise ValueError(f"X_runs must be 2-D with at least 2 runs, got shape {runs.shape}")
        self.mean = runs.mean(axis=0)
        sd = runs.std(axis=0)
        self.scale = np.where(sd > 0, sd, 1.0)
        self.runs = (runs - self.mean) / self.scale
        gaps = self._squared_distances(self.runs)
        np.fill_diagonal(gaps, np.inf)
        self.radius = float(np.sqrt(gaps.min(axis=1).max()))

    def _squared_distances(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        runs = self.runs
        d2 = (z * z).sum(axis=1)[:, None] + (runs * runs).sum(axis=1)[None, :] - 2.0 * z @ runs.T
        return np.maximum(d2, 0.0)

    def nearest(self, X: ArrayLike, batch_size: int = 10_000) -> NDArray[np.float64]:
        """Distance of each row of X (n, F) to its nearest run, shape (n,)."""
        z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        out = np.empty(len(z))
        for start in range(0, len(z), batch_size):
            out[start : start + batch_size] = np.sqrt(
                self._squared_distances(z[start : start + batch_size]).min(axis=1)
            )
        return out

    def inside(self, X: ArrayLike) -> NDArray[np.bool_]:
        return self.nearest(X) <= self.radius * (1 + 1e-9)


class DirichletSampler:
    """RegMix candidates: mixtures over M domains ~ Dirichlet(concentration).

    ``concentration`` is a positive scalar (the same for every domain; 1 = uniform on the
    simplex) or one positive value per domain, e.g. RegMix's natural token distribution.
    ``sample(n, seed)`` returns (n, M) rows, each ≥ 0 and summing to 1.
    """

    def __init__(self, domains: Sequence[str], concentration: float | ArrayLike = 1.0) -> None:
        self.domains = _names(domains, "domains")
        conc = np.broadcast_to(np.asarray(concentration, dtype=np.float64), (len(self.domains),)).copy()
        if not np.all(np.isfinite(conc) & (conc > 0)):
            raise ValueError(f"concentration must be finite and > 0 for every domain, got {conc}")
        self.concentration = conc

    @property
    def names(self) -> list[str]:
        return list(self.domains)

    @property
    def n_params(self) -> int:
        return len(self.domains)

    def sample(self, n: int, seed: int) -> NDArray[np.float64]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return np.random.default_rng(seed).dirichlet(self.concentration, size=n)


class RegMixSampler(DirichletSampler):
    """RegMix's candidate mixtures around a prior, usually the pool's natural token shares.

    The prior raised to ``temperature`` and renormalised is the centre; each draw picks a
    strength from ``strengths`` (by default 15 log-spaced values in [0.1, 5]) and samples
    ``Dirichlet(strength · centre)``: small strengths give sparse mixtures, large ones stay near
    the centre. A draw with a share above ``min(max_usage · prior_i, 1)`` is rejected
    (MAXIMUM_USAGE: no domain used for more than ``max_usage`` epochs when the run's tokens are
    about the pool's). ``sample(n, seed)`` returns (n, M) accepted rows, ≥ 0, summing to 1.
    """

    def __init__(
        self,
        domains: Sequence[str],
        prior: ArrayLike,
        *,
        temperature: float = 0.5,
        strengths: ArrayLike | None = None,
        max_usage: float | None = 15.0,
    ) -> None:
        p = np.asarray(prior, dtype=np.float64)
        if p.shape != (len(domains),) or not np.all(np.isfinite(p) & (p > 0)):
            raise ValueError(f"prior must hold one share > 0 per domain ({len(domains)}), got {p}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        centre = p**temperature
        super().__init__(domains, centre / centre.sum())
        self.prior = p / p.sum()
        self.temperature = float(temperature)
        default = np.logspace(np.log10(0.1), np.log10(5.0), 15)
        self.strengths = np.asarray(default if strengths is None else strengths, dtype=np.float64)
        if self.strengths.ndim != 1 or not np.all(self.strengths > 0):
            raise ValueError(f"strengths must be > 0, got {self.strengths}")
        if max_usage is not None and not max_usage > 0:
            raise ValueError(f"max_usage must be > 0 or None, got {max_usage}")
        self.max_usage = max_usage
        self.ceiling = np.ones_like(p) if max_usage is None else np.minimum(max_usage * self.prior, 1.0)

    def sample(self, n: int, seed: int) -> NDArray[np.float64]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        kept: list[NDArray[np.float64]] = []
        have, drawn = 0, 0
        while have < n:
            batch = max(1_000, 2 * (n - have))
            alpha = rng.choice(self.strengths, size=(batch, 1)) * self.concentration
            gamma = rng.gamma(alpha)  # Dirichlet rows, one strength per row
            sums = gamma.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore"):
                rows = gamma / sums
            ok = (sums[:, 0] > 0) & np.all(rows <= self.ceiling, axis=1)
            kept.append(rows[ok])
            have += int(ok.sum())
            drawn += batch
            if drawn >= 1_000 * max(n, 1_000) and have < n:
                raise ValueError(
                    f"max_usage={self.max_usage} rejects almost every draw ({have} of {drawn} kept): "
                    "raise it or lower the temperature"
                )
        return np.concatenate(kept)[:n]


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a search.

    Attributes
    ----------
    theta_star : (D,) mean of the top-k candidates, simplex blocks renormalised (or the best
        candidate, when the mean is predicted worse than all of them: ``candidate_stats["averaged"]``)
    top_candidates : (k, D) the best candidates, best first
    top_predicted : (k,) their predicted losses, ascending
    names : D feature names (``param_names`` layout, or domain names for mixtures)
    domains, scorers : the sampler's names; ``scorers`` is None for a mixture search
    n_candidates, seed : how the candidates were drawn
    predicted_loss_of_mean : θ*'s own predicted loss
    proposals : (P, D) the best P candidates (inside the runs' region when it holds enough), best
        first: where the next round of runs goes (P = 0 unless asked for)
    """

    theta_star: NDArray[np.float64]
    predicted_loss_of_mean: float
    top_candidates: NDArray[np.float64]
    top_predicted: NDArray[np.float64]
    names: tuple[str, ...]
    domains: tuple[str, ...]
    scorers: tuple[str, ...] | None
    n_candidates: int
    seed: int
    candidate_stats: dict[str, float] = field(default_factory=dict)
    proposals: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))

    def to_params(self) -> QuadMixParams:
        """θ* as validated :class:`QuadMixParams`, ready for ``save_params`` / ``quadmix select``."""
        if self.scorers is None:
            raise ValueError("a mixture search has no QuaDMix params; use to_mixture()")
        return QuadMixParams.from_vector(self.theta_star, self.domains, self.scorers)

    def to_mixture(self) -> dict[str, float]:
        """Domain -> weight of a mixture search's θ*."""
        if self.scorers is not None:
            raise ValueError("a QuaDMix search has no mixture; use to_params()")
        return {d: float(w) for d, w in zip(self.domains, self.theta_star, strict=True)}


def theta_to_params(theta: ArrayLike, sampler: ParamSampler) -> QuadMixParams:
    """Flat θ (length (N + 4)·M) in ``sampler``'s layout -> :class:`QuadMixParams`."""
    return QuadMixParams.from_vector(theta, sampler.domains, sampler.scorers)


def _renormalise(theta: NDArray[np.float64], sampler: ParamSampler | DirichletSampler) -> NDArray[np.float64]:
    """Make every simplex block of θ sum to exactly 1 (α rows, or the whole mixture)."""
    out = theta.copy()
    if isinstance(sampler, ParamSampler):
        n = len(sampler.scorers)
        block = out.reshape(len(sampler.domains), n + 4)
        blocks = block[:, :n]  # a view: edits land in ``out``
    else:
        blocks = out.reshape(1, -1)
    sums = blocks.sum(axis=1, keepdims=True)
    drift = float(np.max(np.abs(sums - 1.0)))
    if drift > _DRIFT_TOL:
        raise RuntimeError(f"mean of the top candidates has a simplex block summing to 1 ± {drift:.3g}")
    blocks /= sums
    return out


def search_theta(
    regressor: _Predictor,
    sampler: ParamSampler | DirichletSampler,
    n_candidates: int = 100_000,
    top_k: int = 10,
    seed: int = 0,
    *,
    batch_size: int = 25_000,
    features: FeatureMap | None = None,
    region: RunRegion | None = None,
    propose: int = 0,
) -> SearchResult:
    """Draw ``n_candidates`` with ``sampler.sample(n_candidates, seed)``, keep the ``top_k`` lowest
    predicted losses and average them.

    ``regressor`` is anything with ``predict(X (n, F)) -> (n,)`` (a fitted surrogate); X is the
    candidates themselves or, with ``features``, ``features.transform(candidates)``. If it
    carries ``feature_names`` they must equal ``sampler.names`` (or ``features.names``): one
    layout for fit and search. With ``region``, only candidates inside it (in the same feature
    space) are ranked, unless fewer than ``top_k`` are. ``propose`` > 0 also returns that many of
    the best candidates themselves (``proposals``). Prediction runs in batches of ``batch_size``
    rows. Ties are broken by draw order, so the result is deterministic in ``seed``.
    """
    _check_search(regressor, sampler, n_candidates, top_k, batch_size, features)

    def scored(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        return theta if features is None else features.transform(theta)

    candidates = sampler.sample(int(n_candidates), seed)
    predicted, inside = _score(regressor, candidates, scored, region, batch_size)
    ranked = np.where(inside, predicted, np.inf) if inside.sum() >= max(top_k, propose) else predicted
    order = np.argsort(ranked, kind="stable")
    best = order[:top_k]
    top = candidates[best]
    theta_star = _renormalise(top.mean(axis=0), sampler)
    predicted_star = float(regressor.predict(scored(theta_star[None, :]))[0])
    averaged = predicted_star <= predicted[best[-1]]
    if not averaged:  # the mean left the region its members were predicted best in
        theta_star, predicted_star = top[0].copy(), float(predicted[best[0]])
    is_qm = isinstance(sampler, ParamSampler)
    return SearchResult(
        theta_star=theta_star,
        predicted_loss_of_mean=predicted_star,
        top_candidates=top,
        top_predicted=predicted[best],
        names=tuple(sampler.names),
        domains=tuple(sampler.domains),
        scorers=tuple(sampler.scorers) if is_qm else None,
        n_candidates=int(n_candidates),
        seed=int(seed),
        candidate_stats={
            "min": float(predicted.min()),
            "median": float(np.median(predicted)),
            "mean": float(predicted.mean()),
            "inside_region": int(inside.sum()),
            "averaged": bool(averaged),
        },
        proposals=candidates[order[:propose]],
    )


def _check_search(regressor, sampler, n_candidates: int, top_k: int, batch_size: int, features) -> None:
    for name, value, low in (
        ("n_candidates", n_candidates, 1),
        ("top_k", top_k, 1),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if top_k > n_candidates:
        raise ValueError(f"top_k={top_k} exceeds n_candidates={n_candidates}")
    if not isinstance(sampler, ParamSampler | DirichletSampler):
        raise TypeError(f"sampler must be a ParamSampler or DirichletSampler, got {type(sampler).__name__}")
    if not callable(getattr(regressor, "predict", None)):
        raise TypeError("regressor must have a predict(X) method")
    names = getattr(regressor, "feature_names", None)
    layout = features.names if features is not None else sampler.names
    if names is not None and list(names) != list(layout):
        raise ValueError(
            "regressor feature_names differ from the sampler's parameter layout "
            f"({len(names)} vs {len(layout)} features); fit and search must use the same sampler"
        )
    mode = getattr(regressor, "mode", None)
    expected_mode = "quadmix" if isinstance(sampler, ParamSampler) else "regmix"
    if mode is not None and mode != expected_mode:
        raise ValueError(f"a {mode}-mode regressor cannot score {type(sampler).__name__} candidates")


def _score(regressor, candidates, scored, region: RunRegion | None, batch_size: int):
    """Predicted loss (n,) of every candidate, and whether each lies inside ``region`` (n,)."""
    predicted = np.empty(len(candidates))
    inside = np.ones(len(candidates), dtype=bool)
    for start in range(0, len(candidates), batch_size):
        x = scored(candidates[start : start + batch_size])
        predicted[start : start + batch_size] = regressor.predict(x)
        if region is not None:
            inside[start : start + batch_size] = region.inside(x)
    if not np.all(np.isfinite(predicted)):
        raise ValueError("regressor returned non-finite predictions")
    return predicted, inside


def search_mixture(
    regressor: _Predictor,
    domains: Sequence[str],
    n_candidates: int = 100_000,
    top_k: int = 128,
    seed: int = 0,
    *,
    concentration: float | ArrayLike = 1.0,
    batch_size: int = 25_000,
) -> SearchResult:
    """RegMix search: Dirichlet(concentration) mixtures over ``domains``; θ* = mean of the top k.

    Defaults follow RegMix's released code (100k draws, top 128); pass the natural token
    distribution as ``concentration`` to draw around it.
    """
    sampler = DirichletSampler(domains, concentration)
    return search_theta(regressor, sampler, n_candidates, top_k, seed, batch_size=batch_size)
