"""The ``lightgbm`` surrogate family: gradient-boosted trees from θ or a mixture to the loss.

QuaDMix mode: one row = the flat (N + 4)·M vector of :meth:`QuadMixParams.to_vector`, exactly as
:class:`ParamSampler` draws it (raw, unscaled: trees do not care about scale, and fit and search
must share one layout, quadmix.md §6.6), or the realised features of what θ selects. RegMix mode:
one row = a mixture on the simplex over M domains.

Defaults follow the unofficial QuaDMix implementation (quadmix.md §7): 1000 trees, learning rate
0.05, 31 leaves, row/column subsampling 0.8, L1 = L2 = 0.1, early stopping after 50 rounds on an
internal validation split. The booster kept is the one trained on the non-validation rows, cut
at its best iteration. The leaf size follows the number of runs unless set: LightGBM's default
(20) leaves one split per tree on a few dozen runs.

Threads: LightGBM's OpenMP workers spin while waiting by default. On a shared 2-core machine
that turns a 4 s fit into minutes (measured: 185 s wall with 2 threads at load 6, 4.7 s with
passive waiting), so this module sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already
sets it. It only takes effect if no OpenMP library was loaded before this module is imported.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quadmix_spark.search.regressors import Interval, Mode, Regressor, evaluate_predictions, register

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before lightgbm loads libgomp

import lightgbm as lgb  # noqa: E402

__all__ = ["LossRegressor", "evaluate_predictions", "few_runs_leaf", "plot_predicted_vs_actual"]

SMALL_FIT_ROWS = 10_000  # fits on fewer rows use one LightGBM thread (see num_threads)


def few_runs_leaf(n_rows: int) -> int:
    """LightGBM's ``min_data_in_leaf`` for ``n_rows`` fit rows: min(20, max(5, n / 10))."""
    return min(20, max(5, n_rows // 10))


@register
class LossRegressor(Regressor):
    """Gradient-boosted regression from parameter vectors to a proxy loss (family ``lightgbm``).

    Parameters
    ----------
    mode, feature_names, seed : see :class:`Regressor`; ``seed`` also seeds the split, bagging
        and column sampling; with row-wise histograms the fit is bit-for-bit repeatable.
    n_estimators, learning_rate, num_leaves, subsample, colsample_bytree, reg_alpha, reg_lambda :
        LightGBM booster settings (``subsample`` is bagging with frequency 1).
    min_child_samples : int or None
        ``min_data_in_leaf``; None: :func:`few_runs_leaf` of the fit rows.
    early_stopping_rounds : int or None
        Stop when the validation L2 has not improved for this many rounds; None = train all trees.
    validation_fraction : float in [0, 1)
        Share of the rows held out (at random, by ``seed``) for early stopping; 0 disables it.
    num_threads : int
        LightGBM threads (default 2: the target machine's core count) for predictions and for fits
        on ``SMALL_FIT_ROWS`` rows or more; smaller fits use one thread, whose histograms cost less
        than waking a second (512 runs × 64 domains: 0.53 → 0.28 CPU-s per fit, the same trees,
        since ``deterministic`` makes them independent of the thread count).
    """

    name = "lightgbm"
    constraints = {
        "n_estimators": Interval(int, 1),
        "learning_rate": Interval(float, 0.0, None, "neither"),
        "num_leaves": Interval(int, 2),
        "subsample": Interval(float, 0.0, 1.0, "right"),
        "colsample_bytree": Interval(float, 0.0, 1.0, "right"),
        "reg_alpha": Interval(float, 0.0),
        "reg_lambda": Interval(float, 0.0),
        "min_child_samples": Interval(int, 1, allow_none=True),
        "early_stopping_rounds": Interval(int, 1, allow_none=True),
        "validation_fraction": Interval(float, 0.0, 1.0, "left"),
        "num_threads": Interval(int, 1),
    }

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
        min_child_samples: int | None = None,
        early_stopping_rounds: int | None = 50,
        validation_fraction: float = 0.1,
        num_threads: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(mode, feature_names, seed)
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.num_threads = num_threads

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

    def _fit(self, X: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        """Sets ``booster_``, ``best_iteration_`` (trees kept) and ``validation_`` (metrics on the
        internal split, or None without one)."""
        n = X.shape[0]
        use_val = self.early_stopping_rounds is not None and self.validation_fraction > 0
        n_val = math.ceil(self.validation_fraction * n) if use_val else 0
        if n_val and (n_val < 2 or n - n_val < 2):
            raise ValueError(
                f"{n} rows are too few for validation_fraction={self.validation_fraction}; "
                "pass more rows or validation_fraction=0"
            )
        order = np.random.default_rng(self.seed).permutation(n)
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        params = self._params()
        if self.min_child_samples is None:
            params["min_data_in_leaf"] = few_runs_leaf(train_idx.size)
        if train_idx.size < SMALL_FIT_ROWS:
            params["num_threads"] = 1
        # LightGBM rejects JSON-special characters ("alpha[News,dclm]") in feature names, so it
        # gets positional names; ours are mapped back in feature_importance().
        train_set = lgb.Dataset(X[train_idx], y[train_idx], free_raw_data=True)
        kwargs: dict[str, object] = {}
        if n_val:
            val_set = lgb.Dataset(X[val_idx], y[val_idx], reference=train_set)
            kwargs = {
                "valid_sets": [val_set],
                "callbacks": [lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            }
        booster = lgb.train(params, train_set, num_boost_round=self.n_estimators, **kwargs)
        self.booster_ = booster
        self.best_iteration_ = (
            booster.best_iteration if n_val and booster.best_iteration > 0 else booster.num_trees()
        )
        self.validation_ = evaluate_predictions(y[val_idx], self._predict(X[val_idx])) if n_val else None

    def _predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.booster_.predict(X, num_iteration=self.best_iteration_, num_threads=self.num_threads)

    def feature_importance(self, kind: Literal["gain", "split"] = "gain") -> dict[str, float]:
        """Total gain (or split count) per feature, by name, largest first."""
        if not self.is_fitted:
            raise RuntimeError("LossRegressor is not fitted; call fit() first")
        values = self.booster_.feature_importance(importance_type=kind, iteration=self.best_iteration_)
        names = self.feature_names or [f"x{i}" for i in range(self.n_features_in_)]
        return dict(sorted(zip(names, map(float, values), strict=True), key=lambda kv: -kv[1]))


def plot_predicted_vs_actual(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    path: str | Path,
    *,
    title: str = "Predicted vs actual loss",
    table: Sequence[Mapping[str, object]] = (),
) -> Path:
    """Scatter of predicted against actual loss with the y = x line (quadmix paper Fig. 3) as PNG;
    ``table`` rows (family, spearman, spearman_sd, mae, seconds) are printed below the plot."""
    # Figure + Agg canvas directly: no pyplot, so no global figure registry or GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    metrics = evaluate_predictions(t, p)
    rows = [r for r in table if "error" not in r]
    fig = Figure(figsize=(6, 6 + 0.22 * len(rows)), dpi=100)
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
    if rows:
        text = ["family                      Spearman  ± sd     MAE   seconds"]
        for r in rows:
            scores = f"{r['spearman']:>7.3f} {r['spearman_sd']:>6.3f} {r['mae']:>8.4f} {r['seconds']:>7.2f}"
            text.append(f"{r['family']:<27} {scores}")
        fig.text(0.02, 0.01, "\n".join(text), family="monospace", fontsize=8, va="bottom")
        fig.subplots_adjust(bottom=0.12 + 0.03 * len(rows))
    path = Path(path)
    fig.savefig(path, format="png")
    return path
