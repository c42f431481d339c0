"""The ``gp`` surrogate family: a Gaussian process with an ARD Matérn kernel, for few runs.

The usual small-sample model of Bayesian optimisation: a smooth prior over the loss surface
whose length scales, one per feature (automatic relevance determination), are fitted to the runs
by maximum marginal likelihood, plus a noise term for the proxies' own noise. scikit-learn's
``GaussianProcessRegressor`` does the work, on standardised features and targets.

One length scale per feature costs n²·D per step of the optimiser, and with more features than
runs the runs cannot fix them all; ``ard="auto"`` keeps per-feature scales where there are more
runs than features and n²·D ≤ 250,000 (e.g. 64 runs over 18 features, 100 over 24), and shares one
scale over all features beyond that (benchmarks/surrogates.py, a loaded 2-core machine: fit and
cross-validation on 512 runs × 8 domains took 95 s with per-feature scales and 13 s with one, at
the same test Spearman, 0.996). The optimiser (L-BFGS-B)
stops after ``max_iter`` iterations, from one deterministic start unless ``n_restarts`` asks for
more. Cross-validation refits each fold from that same start: a fold never starts from a kernel
fitted on the runs it is scored on.

``kernel="additive"`` replaces the Matérn kernel by a first-order additive one: the loss as a sum
of smooth functions of one feature each, one shared length scale (:class:`AdditiveRBF`). On the
synthetic swarms of benchmarks/surrogates.py at 32–64 runs it raised this family's own mean test
Spearman by 0.03–0.08 (most on sparse mixtures), but not ``auto``'s regret at both seeds, so it is
not the default (docs/benchmarks.md, Surrogates). It costs n²·D per kernel evaluation at any n.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import (
    ConstantKernel,
    Hyperparameter,
    Kernel,
    Matern,
    NormalizedKernelMixin,
    StationaryKernelMixin,
    WhiteKernel,
)

from quadmix_spark.search.regressors import Interval, Mode, Regressor, register, standard_scale

__all__ = ["AdditiveRBF", "GaussianProcess"]

ARD_BUDGET = 250_000  # n²·D above which ard="auto" shares one length scale


@register
class GaussianProcess(Regressor):
    """GP regression: constant × Matérn(ν) + white noise, hyperparameters by marginal likelihood.

    Parameters
    ----------
    mode, feature_names, seed : see :class:`~quadmix_spark.search.regressors.Regressor`;
        ``seed`` draws the optimiser's restarts.
    nu : float
        Matérn smoothness (0.5, 1.5, 2.5 or inf).
    ard : True | False | ``"auto"``
        One length scale per feature; ``"auto"``: see the module docstring.
    n_restarts : int ≥ 0
        Extra optimiser starts from random hyperparameters.
    max_iter : int ≥ 1
        L-BFGS-B iterations per start.
    kernel : ``"matern"`` | ``"additive"``
        ``"additive"``: the mean of one-dimensional squared-exponential kernels, one per feature,
        with one shared length scale, instead of the Matérn kernel (``nu`` and ``ard`` unused);
        see the module docstring.

    Attributes
    ----------
    model_ : the fitted ``GaussianProcessRegressor``; length_scales_ : (D,) on the standardised
    scale (one repeated value without ARD, or with the additive kernel)
    """

    name = "gp"
    constraints = {
        "nu": Interval(float, 0.0, None, "neither"),
        "n_restarts": Interval(int, 0),
        "max_iter": Interval(int, 1),
    }

    def __init__(
        self,
        mode: Mode = "quadmix",
        feature_names: Sequence[str] | None = None,
        *,
        nu: float = 2.5,
        ard: bool | Literal["auto"] = "auto",
        n_restarts: int = 0,
        max_iter: int = 100,
        kernel: Literal["matern", "additive"] = "matern",
        seed: int = 0,
    ) -> None:
        super().__init__(mode, feature_names, seed)
        self.nu = nu
        self.ard = ard
        self.n_restarts = n_restarts
        self.max_iter = max_iter
        self.kernel = kernel

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.ard not in (True, False, "auto"):
            raise ValueError(f"ard must be True, False or 'auto', got {self.ard!r}")
        if self.kernel not in ("matern", "additive"):
            raise ValueError(f"kernel must be 'matern' or 'additive', got {self.kernel!r}")

    def _fit(self, X: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        self.mean_, self.sd_ = standard_scale(X)
        n, d = X.shape
        if self.kernel == "additive":
            kernel = ConstantKernel(1.0, (1e-3, 1e3)) * AdditiveRBF(1.0)
        else:
            ard = self.ard if self.ard != "auto" else n > d and n * n * d <= ARD_BUDGET
            scales = np.ones(d) * np.sqrt(d) if ard else float(np.sqrt(d))
            kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(scales, (1e-2, 1e4), nu=self.nu)
        kernel = kernel + WhiteKernel(0.1, (1e-6, 1e1))
        model = GaussianProcessRegressor(
            kernel,
            optimizer=partial(_lbfgs, max_iter=self.max_iter),
            normalize_y=True,
            n_restarts_optimizer=self.n_restarts,
            random_state=self.seed,
        )
        with warnings.catch_warnings():  # a length scale at its bound means: feature irrelevant
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_ = model.fit((X - self.mean_) / self.sd_, y)
        fitted = self.model_.kernel_.k1.k2.length_scale
        self.length_scales_ = np.broadcast_to(np.asarray(fitted, np.float64), (d,)).copy()

    def _predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.model_.predict((X - self.mean_) / self.sd_)


class AdditiveRBF(StationaryKernelMixin, NormalizedKernelMixin, Kernel):
    """The mean over features of one-dimensional squared-exponential kernels, one length scale.

    A first-order additive prior: the loss is a sum of smooth functions of one feature each.
    """

    def __init__(self, length_scale: float = 1.0, length_scale_bounds: tuple[float, float] = (1e-2, 1e3)):
        self.length_scale = length_scale
        self.length_scale_bounds = length_scale_bounds

    @property
    def hyperparameter_length_scale(self) -> Hyperparameter:
        return Hyperparameter("length_scale", "numeric", self.length_scale_bounds)

    def __call__(self, X, Y=None, eval_gradient=False):
        X = np.atleast_2d(X)
        Z = X if Y is None else np.atleast_2d(Y)
        K = np.zeros((X.shape[0], Z.shape[0]))
        grad = np.zeros_like(K) if eval_gradient else None
        for j in range(X.shape[1]):  # one feature at a time: memory n × m, never n × m × D
            sq = (X[:, j, None] - Z[None, :, j]) ** 2 / self.length_scale**2
            term = np.exp(-0.5 * sq)
            K += term
            if eval_gradient:
                grad += term * sq  # d term / d log(length_scale)
        K /= X.shape[1]
        if not eval_gradient:
            return K
        if self.hyperparameter_length_scale.fixed:
            return K, np.empty((K.shape[0], K.shape[0], 0))
        return K, (grad / X.shape[1])[:, :, None]


def _lbfgs(obj_func, initial_theta, bounds, max_iter: int):
    """scikit-learn's optimiser contract: minimise the negative log marginal likelihood."""
    result = minimize(
        obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": max_iter}
    )
    return result.x, result.fun
