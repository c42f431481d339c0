"""The surrogate interface: one small estimator per family of regressors, found by name.

A surrogate maps what a proxy run was trained on (a θ vector, a domain mixture, or features of
what θ selects) to its target loss. Every family is a scikit-learn estimator::

    model = make_regressor("loglinear", mode="regmix", feature_names=domains, seed=0)
    model.fit(X, y)            # X (n_runs, n_features), y (n_runs,) losses; returns model
    model.predict(X_new)       # (n,) predicted losses
    model.get_params()         # the constructor's arguments (scikit-learn's BaseEstimator)

``__init__`` only stores its arguments; ``fit`` checks them against the class's declared
``constraints`` and the data, then calls the family's ``_fit``; learned attributes end in ``_``.

Adding a family
---------------
Write one subclass of :class:`Regressor` with a ``name``, an ``__init__`` that lists and stores its
parameters (``mode``, ``feature_names`` and ``seed`` among them), its ``constraints``, ``_fit(X, y)``
and ``_predict(X)``, and decorate it with :func:`register`. ``search.regressor`` then accepts the
name, and ``auto`` cross-validates it beside the others (:mod:`quadmix_spark.search.validation`).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from quadmix_spark.core.registry import Registry

__all__ = [
    "REGRESSORS",
    "Interval",
    "Regressor",
    "evaluate_predictions",
    "make_regressor",
    "register",
    "regressor_from_bytes",
    "standard_scale",
]

Mode = Literal["quadmix", "regmix"]
SIMPLEX_TOL = 1e-6


@dataclass(frozen=True)
class Interval:
    """A numeric parameter's declared range: ``kind`` (int or float), bounds (None = unbounded)."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"
    allow_none: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.allow_none:
            return
        kinds = (int, np.integer) if self.kind is int else (int, float, np.number)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite {self.kind.__name__}, got {value!r}")
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        low_ok = self.low is None or (value >= self.low if left else value > self.low)
        high_ok = self.high is None or (value <= self.high if right else value < self.high)
        if not (low_ok and high_ok):
            low = "-inf" if self.low is None else self.low
            high = "inf" if self.high is None else self.high
            bounds = f"{'[' if left else '('}{low}, {high}{']' if right else ')'}"
            raise ValueError(f"{name} must be in {bounds}, got {value!r}")


def evaluate_predictions(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float | int]:
    """Spearman ρ, Pearson r, mean absolute error and row count of predictions against targets.

    A constant prediction orders nothing: its Spearman and Pearson are 0, not NaN.
    """
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values, y_pred {p.size}")
    if t.size < 2:
        raise ValueError("need at least 2 values to evaluate")
    constant = np.ptp(p) == 0 or np.ptp(t) == 0
    return {
        "spearman": 0.0 if constant else float(stats.spearmanr(t, p).statistic),
        "pearson": 0.0 if constant else float(stats.pearsonr(t, p).statistic),
        "mae": float(np.mean(np.abs(t - p))),
        "n": int(t.size),
    }


class Regressor(BaseEstimator):
    """Base of every surrogate family (see the module docstring).

    Parameters shared by all families
    ---------------------------------
    mode : ``"quadmix"`` | ``"regmix"``
        RegMix rows are domain mixtures and are checked to be ≥ 0 and sum to 1.
    feature_names : sequence of str, optional
        One per column; checked against X's width; the search checks its layout against them.
    seed : int
        Every random choice of the fit derives from it: the same data and seed, the same model.
    """

    name: ClassVar[str] = ""
    constraints: ClassVar[dict[str, Interval]] = {}

    def __init__(self, mode: Mode = "quadmix", feature_names: Sequence[str] | None = None, seed: int = 0):
        self.mode = mode
        self.feature_names = feature_names
        self.seed = seed

    # -- what the families implement ---------------------------------------------------------
    def _fit(self, X: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        raise NotImplementedError

    def _predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    # -- the shared contract --------------------------------------------------------------------
    def _validate_params(self) -> None:
        if self.mode not in ("quadmix", "regmix"):
            raise ValueError(f"mode must be 'quadmix' or 'regmix', got {self.mode!r}")
        if self.feature_names is not None:
            names = list(self.feature_names)
            if not names or not all(isinstance(x, str) and x for x in names):
                raise ValueError("feature_names must be a non-empty list of non-empty strings")
            if len(set(names)) != len(names):
                raise ValueError("feature_names must be unique")
        Interval(int, 0).check("seed", self.seed)
        for key, interval in self.constraints.items():
            interval.check(key, getattr(self, key))

    def _features(self, X: ArrayLike, what: str = "X") -> NDArray[np.float64]:
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError(f"{what} must be 2-D (n_rows, n_features), got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} contains NaN or infinite values")
        width = getattr(self, "n_features_in_", None) or (
            len(self.feature_names) if self.feature_names is not None else None
        )
        if width is not None and arr.shape[1] != width:
            raise ValueError(f"{what} has {arr.shape[1]} features, expected {width}")
        if self.mode == "regmix":
            sums = arr.sum(axis=1)
            bad = np.flatnonzero((arr < 0).any(axis=1) | (np.abs(sums - 1.0) > SIMPLEX_TOL))
            if bad.size:
                raise ValueError(
                    f"{what}: regmix rows must be mixtures (>= 0, sum 1); "
                    f"row {bad[0]} sums to {sums[bad[0]]:.6g}"
                )
        return arr

    def fit(self, X: ArrayLike, y: ArrayLike) -> Regressor:
        """Fit on X (n_runs, n_features) and losses y (n_runs,); returns ``self``."""
        self._validate_params()
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)  # a refit starts from nothing
        arr = self._features(X)
        target = np.asarray(y, dtype=np.float64)
        if target.ndim != 1 or target.size != arr.shape[0]:
            raise ValueError(f"y must be 1-D with {arr.shape[0]} values, got shape {target.shape}")
        if not np.all(np.isfinite(target)):
            raise ValueError("y contains NaN or infinite values")
        if arr.shape[0] < 2:
            raise ValueError(f"need at least 2 rows to fit, got {arr.shape[0]}")
        # One BLAS thread: these matrices are small, and on a loaded machine BLAS threads that
        # wait for a core cost far more than they save (measured: a 6 s fit took 375 s at load 14).
        with threadpool_limits(1, user_api="blas"):
            self._fit(arr, target)
        self.n_features_in_ = arr.shape[1]
        return self

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_features_in_")

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predicted loss for each row of X (n, n_features), shape (n,)."""
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        arr = self._features(X)
        if arr.shape[0] == 0:
            return np.zeros(0)
        with threadpool_limits(1, user_api="blas"):
            return np.asarray(self._predict(arr), dtype=np.float64).reshape(-1)

    def evaluate(self, X_test: ArrayLike, y_test: ArrayLike) -> dict[str, float | int]:
        """``{"spearman", "pearson", "mae", "n"}`` of the predictions on a held-out set."""
        return evaluate_predictions(y_test, self.predict(X_test))

    def to_bytes(self) -> bytes:
        """The fitted estimator as bytes (pickle); :func:`regressor_from_bytes` reads them back."""
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)


def standard_scale(X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Column means and standard deviations of X (n, D); a constant column gets scale 1.

    "Constant" is relative: a column whose spread is a billionth of its size (a realised share
    fixed by a mixture, up to rounding) would otherwise be blown up into noise of unit variance,
    and a new row's rounding difference into a huge standardised value."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    return mean, np.where(scale > 1e-9 * np.maximum(1.0, np.abs(mean)), scale, 1.0)


def regressor_from_bytes(data: bytes) -> Regressor:
    """A fitted surrogate from :meth:`Regressor.to_bytes` (a file this project wrote: pickle)."""
    model = pickle.loads(data)
    if not isinstance(model, Regressor) or not model.is_fitted:
        raise ValueError("not a fitted quadmix surrogate")
    return model


#: family name → class; filled by :func:`register` as the family modules are imported.
REGRESSORS = Registry("regressor family")

R = TypeVar("R", bound=type[Regressor])


def register(cls: R) -> R:
    """Class decorator: make a :class:`Regressor` family available under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Regressor)) or not cls.name:
        raise TypeError(f"{cls!r} is not a Regressor subclass with a name")
    return REGRESSORS.register(cls.name, cls)


def make_regressor(name: str, **params: Any) -> Regressor:
    """A new, unfitted regressor of the family ``name`` with ``params``."""
    cls = REGRESSORS.get(name)
    known = set(cls().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"regressor {name}: unknown parameter(s) {unknown} (known: {sorted(known)})")
    return cls(**params)
