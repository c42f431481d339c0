"""LightGBM surrogate of the proxy loss: θ (QuaDMix) or domain weights (RegMix) -> loss.

QuaDMix mode: one row = the flat (N + 4)·M vector of :meth:`QuadMixParams.to_vector`, exactly as
:class:`ParamSampler` draws it (raw, unscaled: trees do not care about scale, and fit and search
must share one layout, quadmix.md §6.6). RegMix mode: one row = a mixture on the simplex over M
domains; rows are checked to be non-negative and to sum to 1.

Defaults follow the unofficial QuaDMix implementation (quadmix.md §7): 1000 trees, learning rate
0.05, 31 leaves, row/column subsampling 0.8, L1 = L2 = 0.1, early stopping after 50 rounds on an
internal validation split. The booster kept is the one trained on the non-validation rows, cut
at its best iteration.

Threads: LightGBM's OpenMP workers spin while waiting by default. On a shared 2-core machine
that turns a 4 s fit into minutes (measured: 185 s wall with 2 threads at load 6, 4.7 s with
passive waiting), so this module sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already
sets it. It only takes effect if no OpenMP library was loaded before this module is imported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before lightgbm loads libgomp

import lightgbm as lgb  # noqa: E402

__all__ = ["LossRegressor", "evaluate_predictions", "plot_predicted_vs_actual"]

Mode = Literal["quadmix", "regmix"]
_SIMPLEX_TOL = 1e-6


def _check_number(
    name: str, value: float, low: float, high: float, *, low_open: bool, high_open: bool
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def evaluate_predictions(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float | int]:
    """Spearman ρ, Pearson r, mean absolute error and row count of predictions against targets."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values, y_pred {p.size}")
    if t.size < 2:
        raise ValueError("need at least 2 values to evaluate")
    return {
        "spearman": float(stats.spearmanr(t, p).statistic),
        "pearson": float(stats.pearsonr(t, p).statistic),
        "mae": float(np.mean(np.abs(t - p))),
        "n": int(t.size),
    }


class LossRegressor:
    """Gradient-boosted regression from parameter vectors to a proxy loss.

    Parameters
    ----------
    mode : ``"quadmix"`` | ``"regmix"``
        Feature kind (see the module docstring); RegMix rows are validated to lie on the simplex.
    feature_names : sequence of str, optional
        One name per column, e.g. :func:`param_names` / ``ParamSampler.names`` or domain names;
        checked against the width of X and used by :meth:`feature_importance` and the search.
    n_estimators, learning_rate, num_leaves, subsample, colsample_bytree, reg_alpha, reg_lambda,
    min_child_samples : LightGBM booster settings (``subsample`` is bagging with frequency 1).
    early_stopping_rounds : int or None
        Stop when the validation L2 has not improved for this many rounds; None = train all trees.
    validation_fraction : float in [0, 1)
        Share of the rows held out (at random, by ``seed``) for early stopping; 0 disables it.
    num_threads : int
        LightGBM threads (default 2: the target machine's core count).
    seed : int
        Seeds the split, bagging and column sampling; with ``deterministic=True`` and row-wise
        histograms the fit is bit-for-bit repeatable.
    """

    def __init__(
        self,
        mode: Mode = "quadmix",
        feature_names: Sequence[str] | None = None,
        *,
        n_estimators: int = 1000,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_alpha: float = 0.1,
        reg_lambda: float = 0.1,
        min_child_samples: int = 20,
        early_stopping_rounds: int | None = 50,
        validation_fraction: float = 0.1,
        num_threads: int = 2,
        seed: int = 0,
    ) -> None:
        if mode not in ("quadmix", "regmix"):
            raise ValueError(f"mode must be 'quadmix' or 'regmix', got {mode!r}")
        self.mode: Mode = mode
        if feature_names is not None:
            names = list(feature_names)
            if not names or not all(isinstance(x, str) and x for x in names):
                raise ValueError("feature_names must be a non-empty list of non-empty strings")
            if len(set(names)) != len(names):
                raise ValueError("feature_names must be unique")
            self.feature_names: list[str] | None = names
        else:
            self.feature_names = None
        self.n_estimators = _check_int("n_estimators", n_estimators, 1)
        self.learning_rate = _check_number(
            "learning_rate", learning_rate, 0.0, math.inf, low_open=True, high_open=True
        )
        self.num_leaves = _check_int("num_leaves", num_leaves, 2)
        self.subsample = _check_number("subsample", subsample, 0.0, 1.0, low_open=True, high_open=False)
        self.colsample_bytree = _check_number(
            "colsample_bytree", colsample_bytree, 0.0, 1.0, low_open=True, high_open=False
        )
        self.reg_alpha = _check_number("reg_alpha", reg_alpha, 0.0, math.inf, low_open=False, high_open=True)
        self.reg_lambda = _check_number(
            "reg_lambda", reg_lambda, 0.0, math.inf, low_open=False, high_open=True
        )
        self.min_child_samples = _check_int("min_child_samples", min_child_samples, 1)
        self.early_stopping_rounds = (
            None
            if early_stopping_rounds is None
            else _check_int("early_stopping_rounds", early_stopping_rounds, 1)
        )
        self.validation_fraction = _check_number(
            "validation_fraction", validation_fraction, 0.0, 1.0, low_open=False, high_open=True
        )
        self.num_threads = _check_int("num_threads", num_threads, 1)
        self.seed = _check_int("seed", seed, 0)

    # -- input checks ----------------------------------------------------------------------
    def _features(self, X: ArrayLike, what: str = "X") -> NDArray[np.float64]:
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError(f"{what} must be 2-D (n_rows, n_features), got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} contains NaN or infinite values")
        width = getattr(self, "n_features_", None) or (
            len(self.feature_names) if self.feature_names else None
        )
        if width is not None and arr.shape[1] != width:
            raise ValueError(f"{what} has {arr.shape[1]} features, expected {width}")
        if self.mode == "regmix":
            sums = arr.sum(axis=1)
            bad = np.flatnonzero((arr < 0).any(axis=1) | (np.abs(sums - 1.0) > _SIMPLEX_TOL))
            if bad.size:
                raise ValueError(
                    f"{what}: regmix rows must be mixtures (>= 0, sum 1); "
                    f"row {bad[0]} sums to {sums[bad[0]]:.6g}"
                )
        return arr

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "booster_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("LossRegressor is not fitted; call fit() first")

    # -- fit / predict -----------------------------------------------------------------------
    def _params(self) -> dict[str, object]:
        return {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1.0 else 0,
            "feature_fraction": self.colsample_bytree,
            "lambda_l1": self.reg_alpha,
            "lambda_l2": self.reg_lambda,
            "min_data_in_leaf": self.min_child_samples,
            "num_threads": self.num_threads,
            "seed": self.seed,
            # deterministic needs a fixed histogram layout; row-wise also suits few, wide rows.
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def fit(self, X: ArrayLike, y: ArrayLike) -> LossRegressor:
        """Fit on X (n_runs, n_features) and losses y (n_runs,); returns ``self``.

        Sets ``booster_``, ``n_features_``, ``best_iteration_`` (trees kept) and ``validation_``
        (metrics on the internal split, or None without one).
        """
        arr = self._features(X)
        target = np.asarray(y, dtype=np.float64)
        if target.ndim != 1 or target.size != arr.shape[0]:
            raise ValueError(f"y must be 1-D with {arr.shape[0]} values, got shape {target.shape}")
        if not np.all(np.isfinite(target)):
            raise ValueError("y contains NaN or infinite values")
        n = arr.shape[0]
        use_val = self.early_stopping_rounds is not None and self.validation_fraction > 0
        n_val = math.ceil(self.validation_fraction * n) if use_val else 0
        if n_val and (n_val < 2 or n - n_val < 2):
            raise ValueError(
                f"{n} rows are too few for validation_fraction={self.validation_fraction}; "
                "pass more rows or validation_fraction=0"
            )
        if n < 2:
            raise ValueError(f"need at least 2 rows to fit, got {n}")
        order = np.random.default_rng(self.seed).permutation(n)
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        # LightGBM rejects JSON-special characters ("alpha[News,dclm]") in feature names, so it
        # gets positional names; ours are mapped back in feature_importance().
        train_set = lgb.Dataset(arr[train_idx], target[train_idx], free_raw_data=True)
        kwargs: dict[str, object] = {}
        if n_val:
            val_set = lgb.Dataset(arr[val_idx], target[val_idx], reference=train_set)
            kwargs = {
                "valid_sets": [val_set],
                "callbacks": [lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            }
        booster = lgb.train(self._params(), train_set, num_boost_round=self.n_estimators, **kwargs)
        self.booster_ = booster
        self.n_features_ = arr.shape[1]
        self.best_iteration_ = (
            booster.best_iteration if n_val and booster.best_iteration > 0 else booster.num_trees()
        )
        self.validation_ = self.evaluate(arr[val_idx], target[val_idx]) if n_val else None
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predicted loss for each row of X (n, n_features), shape (n,)."""
        self._check_fitted()
        arr = self._features(X)
        if arr.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(
            self.booster_.predict(arr, num_iteration=self.best_iteration_, num_threads=self.num_threads),
            dtype=np.float64,
        )

    def evaluate(self, X_test: ArrayLike, y_test: ArrayLike) -> dict[str, float | int]:
        """``{"spearman", "pearson", "mae", "n"}`` of the predictions on a held-out set."""
        return evaluate_predictions(y_test, self.predict(X_test))

    def save(self, path: str | Path) -> Path:
        """LightGBM's own model text at ``path`` and the estimator's settings beside it (``.json``)."""
        self._check_fitted()
        path = Path(path)
        self.booster_.save_model(str(path), num_iteration=self.best_iteration_)
        meta = {
            "mode": self.mode,
            "feature_names": self.feature_names,
            "n_features": self.n_features_,
            "num_threads": self.num_threads,
            "validation": self.validation_,
        }
        path.with_suffix(path.suffix + ".json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LossRegressor:
        """A fitted regressor from :meth:`save`'s files, ready to ``predict``."""
        path = Path(path)
        meta_path = path.with_suffix(path.suffix + ".json")
        if not path.is_file() or not meta_path.is_file():
            raise FileNotFoundError(f"no saved regressor at {path} (and {meta_path.name})")
        meta = json.loads(meta_path.read_text())
        model = cls(meta["mode"], meta["feature_names"], num_threads=meta["num_threads"])
        model.booster_ = lgb.Booster(model_file=str(path))
        model.n_features_ = int(meta["n_features"])
        model.best_iteration_ = model.booster_.num_trees()
        model.validation_ = meta["validation"]
        return model

    def feature_importance(self, kind: Literal["gain", "split"] = "gain") -> dict[str, float]:
        """Total gain (or split count) per feature, by name, largest first."""
        self._check_fitted()
        values = self.booster_.feature_importance(importance_type=kind, iteration=self.best_iteration_)
        names = self.feature_names or [f"x{i}" for i in range(self.n_features_)]
        return dict(sorted(zip(names, map(float, values), strict=True), key=lambda kv: -kv[1]))


def plot_predicted_vs_actual(
    y_true: ArrayLike, y_pred: ArrayLike, path: str | Path, *, title: str = "Predicted vs actual loss"
) -> Path:
    """Scatter of predicted against actual loss with the y = x line (quadmix paper Fig. 3) as PNG."""
    # Figure + Agg canvas directly: no pyplot, so no global figure registry or GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    metrics = evaluate_predictions(t, p)
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(t, p, s=10, alpha=0.6, edgecolors="none")
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--", label="y = x")
    ax.set_xlabel("actual loss")
    ax.set_ylabel("predicted loss")
    ax.set_title(title)
    ax.text(
        0.03,
        0.97,
        f"Spearman {metrics['spearman']:.3f}\nPearson {metrics['pearson']:.3f}\n"
        f"MAE {metrics['mae']:.4g}\nn = {metrics['n']}",
        transform=ax.transAxes,
        va="top",
    )
    ax.legend(loc="lower right")
    path = Path(path)
    fig.savefig(path, format="png")
    return path
