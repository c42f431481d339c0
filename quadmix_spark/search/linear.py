"""The ``linear`` surrogate family: ridge regression on standardised features, the floor.

A family that cannot beat a linear model in cross-validation has learned nothing the runs did
not already say in a straight line. The ridge weight is chosen among ``alphas`` by efficient
leave-one-out error (scikit-learn's ``RidgeCV``), so it needs no split of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import RidgeCV

from quadmix_spark.search.regressors import Mode, Regressor, register, standard_scale

__all__ = ["RidgeRegressor"]


@register
class RidgeRegressor(Regressor):
    """Ridge regression with the weight chosen by leave-one-out error.

    Parameters
    ----------
    mode, feature_names, seed : see :class:`~quadmix_spark.search.regressors.Regressor`.
    alphas : sequence of float > 0
        Candidate ridge weights on the standardised features.

    Attributes
    ----------
    coef_ : (D,) per unit of each feature; intercept_ : float; alpha_ : the weight chosen
    """

    name = "linear"

    def __init__(
        self,
        mode: Mode = "quadmix",
        feature_names: Sequence[str] | None = None,
        *,
        alphas: Sequence[float] = tuple(np.logspace(-3, 4, 15)),
        seed: int = 0,
    ) -> None:
        super().__init__(mode, feature_names, seed)
        self.alphas = alphas

    def _validate_params(self) -> None:
        super()._validate_params()
        if not len(self.alphas) or not all(np.isfinite(a) and a > 0 for a in self.alphas):
            raise ValueError(f"alphas must be finite numbers > 0, got {self.alphas!r}")

    def _fit(self, X: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        mean, sd = standard_scale(X)
        model = RidgeCV(alphas=list(self.alphas)).fit((X - mean) / sd, y)
        self.coef_ = model.coef_ / sd
        self.intercept_ = float(model.intercept_ - self.coef_ @ mean)
        self.alpha_ = float(model.alpha_)

    def _predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return X @ self.coef_ + self.intercept_
