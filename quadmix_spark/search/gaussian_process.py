"""The ``gp`` surrogate family: a Gaussian process with an ARD Matérn kernel, for few runs.

The usual small-sample model of Bayesian optimisation: a smooth prior over the loss surface
whose length scales, one per feature (automatic relevance determination), are fitted to the runs
by maximum marginal likelihood, plus a noise term for the proxies' own noise. scikit-learn's
``GaussianProcessRegressor`` does the work, on standardised features and targets.

One length scale per feature costs n²·D per step of the optimiser, and with more features than
runs the runs cannot fix them all; ``ard="auto"`` keeps per-feature scales where there are more
runs than features and n²·D ≤ 4·10⁶ (e.g. 128 runs over 64 features, 512 over 15), and shares one
scale over all features beyond that (measured: 410 runs × 64 features, 116 s with per-feature
scales against 1.9 s with one, on a loaded 2-core machine). Cross-validation folds start the
optimiser from the all-runs fit's kernel, without restarts.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, Matern, WhiteKernel

from quadmix_spark.search.regressors import Interval, Mode, Regressor, register, standard_scale

__all__ = ["GaussianProcess"]

ARD_BUDGET = 4_000_000  # n²·D above which ard="auto" shares one length scale


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
    start : a fitted kernel or None
        Kernel hyperparameters to start the optimiser from (the kernel's own structure kept).

    Attributes
    ----------
    model_ : the fitted ``GaussianProcessRegressor``; length_scales_ : (D,) on the standardised
    scale (one repeated value without ARD)
    """

    name = "gp"
    constraints = {"nu": Interval(float, 0.0, None, "neither"), "n_restarts": Interval(int, 0)}

    def __init__(
        self,
        mode: Mode = "quadmix",
        feature_names: Sequence[str] | None = None,
        *,
        nu: float = 2.5,
        ard: bool | Literal["auto"] = "auto",
        n_restarts: int = 1,
        start: Kernel | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(mode, feature_names, seed)
        self.nu = nu
        self.ard = ard
        self.n_restarts = n_restarts
        self.start = start

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.ard not in (True, False, "auto"):
            raise ValueError(f"ard must be True, False or 'auto', got {self.ard!r}")

    def _fit(self, X: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        self.mean_, self.sd_ = standard_scale(X)
        n, d = X.shape
        ard = self.ard if self.ard != "auto" else n > d and n * n * d <= ARD_BUDGET
        scales = np.ones(d) * np.sqrt(d) if ard else float(np.sqrt(d))
        kernel = self.start or ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
            length_scale=scales, length_scale_bounds=(1e-2, 1e4), nu=self.nu
        ) + WhiteKernel(0.1, (1e-6, 1e1))
        model = GaussianProcessRegressor(
            kernel, normalize_y=True, n_restarts_optimizer=self.n_restarts, random_state=self.seed
        )
        with warnings.catch_warnings():  # a length scale at its bound means: feature irrelevant
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_ = model.fit((X - self.mean_) / self.sd_, y)
        fitted = self.model_.kernel_.k1.k2.length_scale
        self.length_scales_ = np.broadcast_to(np.asarray(fitted, np.float64), (d,)).copy()

    def cv_estimator(self) -> GaussianProcess:
        return super().cv_estimator().set_params(start=self.model_.kernel_, n_restarts=0)

    def _predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.model_.predict((X - self.mean_) / self.sd_)
