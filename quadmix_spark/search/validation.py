"""Choosing a surrogate by cross-validation over the proxy runs.

At 64–128 runs a single 10–20% hold-out scores a regressor on a dozen runs: a figure too noisy
to choose by. Here every run is scored once per repeat, by a model that never saw it:

- **folds**: K folds (default 5), repeated (default 3); in repeat r a run's fold follows the
  order of ``hash_uniform(text_keys(run_id), seed, CV_FOLD_STREAM + r)``, so the folds depend on
  the run ids and the seed only, never on the order of the rows;
- **scores**: per repeat, the Spearman correlation (the search needs the order of the runs) and
  the mean absolute error of the pooled out-of-fold predictions; the table reports the mean and
  the standard deviation over the repeats, and the mean seconds per fit. The Spearman is taken
  after each fold's predictions are shifted by the mean loss of the runs that fold was trained on:
  a fold whose held-out runs are high has a low training mean, so pooled predictions of a model
  that leans on the mean anti-correlate with the truth (the constant predictor scores about −1).
  That shift says nothing about the one model the search uses to order candidates, and it
  penalised exactly the cautious families (a Gaussian process, ridge) at 32–64 runs;
- **choice** (``auto``): among the families whose MAE is at most three times that of the
  constant predictor (each fold predicted by the mean loss of the others; its row is in the table
  as the floor), the one with the best mean Spearman (equal to three decimals: the
  lower MAE), or the mean of the two or three best families' predictions when that mean,
  scored on the same out-of-fold predictions, has a higher Spearman. The mean of predictions
  orders candidates as a rank average of calibrated members would, and stays in loss units, so
  it can be compared with the runs' observed losses. The chosen model is refitted on all runs.

A family whose fit fails on a fold (too few runs for its own split, say) is reported with its
error and is never chosen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import clone

from quadmix_spark.core.sampling import CV_FOLD_STREAM, hash_uniform, text_keys
from quadmix_spark.search.regressors import REGRESSORS, Mode, Regressor, evaluate_predictions, make_regressor

__all__ = [
    "CVScore",
    "Choice",
    "MeanEnsemble",
    "choose_regressor",
    "cross_validate",
    "cv_folds",
    "fold_offsets",
]

ENSEMBLE_SIZES = (2, 3)
MAX_MAE_RATIO = 3.0  # a family whose CV MAE exceeds this × the constant predictor's is not chosen
CONSTANT = "constant (the mean)"


def cv_folds(run_ids: Sequence[str], k: int = 5, repeats: int = 3, seed: int = 0) -> NDArray[np.int64]:
    """Fold of each run in each repeat, shape (repeats, n), values 0..k−1, sizes differing by ≤ 1."""
    n = len(run_ids)
    if len(set(run_ids)) != n:
        raise ValueError("run ids must be unique")
    if not 2 <= k <= n:
        raise ValueError(f"k must be in [2, {n}] for {n} runs, got {k}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    keys = text_keys(run_ids)
    ids = np.asarray(run_ids, dtype=object)
    folds = np.empty((repeats, n), dtype=np.int64)
    for r in range(repeats):
        u = hash_uniform(keys, seed, CV_FOLD_STREAM + r)
        order = np.lexsort((ids, u))  # ties on u (never seen) fall back to the id
        folds[r, order] = np.arange(n) % k
    return folds


@dataclass(frozen=True)
class CVScore:
    """One row of the cross-validation table.

    ``oof`` (repeats, n) holds the out-of-fold predictions in the order of the runs given;
    ``spearman`` / ``mae`` are means over the repeats, ``spearman_sd`` their standard deviation;
    ``seconds`` is the wall time of the family's fits (all folds, and the fit on all runs).
    ``error`` names why a family failed.
    """

    family: str
    spearman: float
    spearman_sd: float
    mae: float
    seconds: float
    oof: NDArray[np.float64] = field(repr=False)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        row = {
            "family": self.family,
            "spearman": round(self.spearman, 4),
            "spearman_sd": round(self.spearman_sd, 4),
            "mae": round(self.mae, 5),
            "seconds": round(self.seconds, 2),
        }
        return row if self.ok else {**row, "error": self.error}


def fold_offsets(y: NDArray[np.float64], folds: NDArray[np.int64]) -> NDArray[np.float64]:
    """Mean of ``y`` over the runs each run's fold was trained on, shape (repeats, n)."""
    offsets = np.empty(folds.shape)
    for r, fold in enumerate(folds):
        for f in np.unique(fold):
            offsets[r, fold == f] = y[fold != f].mean()
    return offsets


def _score(
    family: str,
    oof: NDArray[np.float64],
    y: NDArray[np.float64],
    offsets: NDArray[np.float64],
    seconds: float,
) -> CVScore:
    """Spearman of the fold-centred predictions (``oof − offsets``), MAE of the raw ones."""
    rho = np.array([evaluate_predictions(y, row)["spearman"] for row in oof - offsets])
    mae = np.array([evaluate_predictions(y, row)["mae"] for row in oof])
    sd = float(rho.std(ddof=1)) if rho.size > 1 else 0.0
    return CVScore(family, float(rho.mean()), sd, float(mae.mean()), seconds, oof)


def _constant(y: NDArray[np.float64], offsets: NDArray[np.float64]) -> CVScore:
    """The floor: each fold predicted by the mean loss of the runs it was not in (its Spearman
    is that of all-equal predictions: 0)."""
    return _score(CONSTANT, offsets, y, offsets, 0.0)


def _failed(family: str, n: int, repeats: int, err: Exception) -> CVScore:
    nan = float("nan")
    return CVScore(family, nan, nan, nan, nan, np.full((repeats, n), nan), f"{type(err).__name__}: {err}")


def cross_validate(
    model: Regressor, X: ArrayLike, y: ArrayLike, folds: NDArray[np.int64], family: str | None = None
) -> CVScore:
    """Out-of-fold predictions of clones of ``model`` over ``folds`` (from :func:`cv_folds`)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    family = family or type(model).name
    oof = np.empty(folds.shape)
    started = time.perf_counter()
    try:
        for r, fold in enumerate(folds):
            for f in np.unique(fold):
                test = fold == f
                oof[r, test] = clone(model).fit(X[~test], y[~test]).predict(X[test])
    except (ValueError, np.linalg.LinAlgError) as err:
        return _failed(family, len(y), folds.shape[0], err)
    return _score(family, oof, y, fold_offsets(y, folds), time.perf_counter() - started)


class MeanEnsemble(Regressor):
    """The mean of several fitted families' predictions (what ``auto`` may choose).

    ``members`` are unfitted regressors; ``fit`` fits a clone of each on the same rows.
    """

    name = "mean"

    def __init__(
        self,
        mode: Mode = "quadmix",
        feature_names: Sequence[str] | None = None,
        *,
        members: Sequence[Regressor] = (),
        seed: int = 0,
    ) -> None:
        super().__init__(mode, feature_names, seed)
        self.members = members

    def _validate_params(self) -> None:
        super()._validate_params()
        if len(self.members) < 2 or not all(isinstance(m, Regressor) for m in self.members):
            raise ValueError("members must be two or more Regressor instances")

    def _fit(self, X: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        self.members_ = [clone(m).fit(X, y) for m in self.members]

    @classmethod
    def of_fitted(cls, members: Sequence[Regressor]) -> MeanEnsemble:
        """The ensemble of members already fitted on the same rows (no second fit)."""
        first = members[0]
        model = cls(first.mode, first.feature_names, members=[clone(m) for m in members], seed=first.seed)
        model._validate_params()
        model.members_ = list(members)
        model.n_features_in_ = first.n_features_in_
        return model

    def _predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.mean([m.predict(X) for m in self.members_], axis=0)


@dataclass(frozen=True)
class Choice:
    """What :func:`choose_regressor` found: the CV table (families, then the ensembles tried,
    best first), the chosen row's name, the chosen model fitted on all runs, and ``models``:
    every family that could be fitted, fitted on all runs (by family name)."""

    table: list[CVScore]
    chosen: str
    model: Regressor
    k: int
    repeats: int
    models: Mapping[str, Regressor] = field(default_factory=dict, repr=False)

    @property
    def score(self) -> CVScore:
        return next(row for row in self.table if row.family == self.chosen)

    def as_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "k": self.k,
            "repeats": self.repeats,
            "table": [row.as_dict() for row in self.table],
        }


def _rank_key(row: CVScore) -> tuple:
    return (not row.ok, -round(row.spearman, 3) if row.ok else 0.0, row.mae if row.ok else 0.0)


def choose_regressor(
    families: Sequence[str],
    X: ArrayLike,
    y: ArrayLike,
    run_ids: Sequence[str],
    *,
    mode: Mode = "quadmix",
    feature_names: Sequence[str] | None = None,
    seed: int = 0,
    k: int = 5,
    repeats: int = 3,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    ensembles: bool = True,
) -> Choice:
    """Cross-validate ``families`` (registered names) on the runs and fit the best on all of them.

    ``X`` (n_runs, D) and ``y`` (n_runs,) in the order of ``run_ids`` (the result does not depend
    on that order); ``params`` holds extra
    constructor arguments per family. With ``ensembles`` and two or more families that fit, the
    means of the best two and three are scored on the same out-of-fold predictions.
    """
    if not families:
        raise ValueError("no regressor families to choose from")
    unknown = [f for f in families if f not in REGRESSORS]
    if unknown:
        raise ValueError(
            f"unknown regressor families {unknown} (registered: {', '.join(sorted(REGRESSORS))})"
        )
    # Runs in the order of their ids: the fits see the same rows in the same order, whatever
    # the order they came in, so the table is identical to the last bit.
    order = np.argsort(np.asarray(run_ids, dtype=object), kind="stable")
    X = np.asarray(X, dtype=np.float64)[order]
    y = np.asarray(y, dtype=np.float64)[order]
    folds = cv_folds([run_ids[i] for i in order], min(k, len(run_ids)), repeats, seed)
    params = params or {}

    def build(family: str) -> Regressor:
        base = {"mode": mode, "feature_names": feature_names, "seed": seed}
        return make_regressor(family, **base, **params.get(family, {}))

    fitted, table = _validate(families, build, X, y, folds)
    offsets = fold_offsets(y, folds)
    constant = _constant(y, offsets)
    chosen, ensembles_tried = _choose(table, constant, y, offsets, ensembles)
    if chosen.family in fitted:
        model = fitted[chosen.family]
    else:
        model = MeanEnsemble.of_fitted([fitted[f] for f in chosen.family[5:-1].split("+")])
    back = np.argsort(order)  # out-of-fold predictions in the order the runs came in
    shown = table + ensembles_tried + [constant]
    rows = sorted((replace(row, oof=row.oof[:, back]) for row in shown), key=_rank_key)
    return Choice(rows, chosen.family, model, int(folds.max()) + 1, repeats, fitted)


def _validate(families, build, X, y, folds) -> tuple[dict[str, Regressor], list[CVScore]]:
    """Each family fitted on all runs and cross-validated (every fold fitted from scratch)."""
    fitted, table = {}, []
    for family in dict.fromkeys(families):
        started = time.perf_counter()
        try:
            fitted[family] = build(family).fit(X, y)
        except (ValueError, np.linalg.LinAlgError) as err:
            table.append(_failed(family, len(y), folds.shape[0], err))
            continue
        seconds = time.perf_counter() - started
        row = cross_validate(build(family), X, y, folds, family)
        table.append(replace(row, seconds=row.seconds + seconds))
    table.sort(key=_rank_key)
    if not any(row.ok for row in table):
        errors = "; ".join(f"{r.family}: {r.error}" for r in table)
        raise ValueError(f"no regressor family could be fitted: {errors}")
    return fitted, table


def _choose(
    table: list[CVScore],
    constant: CVScore,
    y: NDArray[np.float64],
    offsets: NDArray[np.float64],
    ensembles: bool,
) -> tuple[CVScore, list[CVScore]]:
    """The chosen row (a family, or the mean of the best two or three), and the ensembles tried."""
    # A family that orders the runs but misses their losses by far more than their mean does
    # extrapolates wildly (an exponent gone astray): it would rank absurd candidates first, and
    # its error would swamp the comparison with the best run. It stays in the table, unchosen.
    ok = [row for row in table if row.ok and row.mae <= MAX_MAE_RATIO * constant.mae]
    if not ok:
        ok = [min((row for row in table if row.ok), key=lambda row: row.mae)]
    tried = []
    for size in ENSEMBLE_SIZES if ensembles else ():
        if len(ok) >= size:
            top = ok[:size]
            oof = np.mean([row.oof for row in top], axis=0)
            name = "mean(" + "+".join(row.family for row in top) + ")"
            tried.append(_score(name, oof, y, offsets, sum(row.seconds for row in top)))
    better = [row for row in tried if row.spearman > ok[0].spearman]
    return (max(better, key=lambda row: row.spearman) if better else ok[0]), tried
