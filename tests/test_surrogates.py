"""The surrogate families, their registry and the cross-validation that chooses among them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process.kernels import RBF

from quadmix_spark.search import REGRESSORS, Regressor, make_regressor, register
from quadmix_spark.search.gaussian_process import AdditiveRBF
from quadmix_spark.search.regressors import evaluate_predictions, regressor_from_bytes
from quadmix_spark.search.validation import (
    MeanEnsemble,
    choose_regressor,
    cross_validate,
    cv_folds,
    fold_offsets,
)


def law_runs(n: int, m: int, seed: int, noise: float = 0.002, regmix: bool = True):
    """Runs whose loss follows L(x) = 2.5 + 0.8·exp(x·t) exactly, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.full(m, 0.5), size=n) if regmix else rng.normal(0.0, 1.0, (n, m))
    t = np.linspace(-1.5, 1.5, m)
    y = 2.5 + 0.8 * np.exp(x @ t) + rng.normal(0.0, noise, n)
    return x, y, t


def test_registry_holds_the_four_families() -> None:
    assert {"lightgbm", "loglinear", "gp", "linear"} <= set(REGRESSORS)
    with pytest.raises(
        ValueError, match=r"unknown regressor family 'forest' \(gp, linear, loglinear, lightgbm\)"
    ):
        make_regressor("forest")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['depth'\]"):
        make_regressor("linear", depth=3)


def test_loglinear_recovers_a_known_law() -> None:
    x, y, t = law_runs(60, 5, seed=1, noise=0.0005, regmix=False)
    law = make_regressor("loglinear", alpha=0.0).fit(x, y)
    assert law.intercept_ == pytest.approx(2.5, abs=0.01)
    assert law.scale_ == pytest.approx(0.8, rel=0.02)
    np.testing.assert_allclose(law.coef_, t, atol=0.01)


def test_loglinear_on_mixtures_recovers_the_law_up_to_its_common_shift() -> None:
    # Shares sum to 1, so t + s and k·exp(-s) give the same law: the contrasts are what is fixed.
    x, y, t = law_runs(64, 6, seed=2, noise=0.0005)
    law = make_regressor("loglinear", mode="regmix", alpha=1e-6).fit(x, y)
    np.testing.assert_allclose(law.coef_ - law.coef_.mean(), t - t.mean(), atol=0.03)
    assert law.intercept_ == pytest.approx(2.5, abs=0.02)
    probe = np.random.default_rng(3).dirichlet(np.ones(6), size=50)
    np.testing.assert_allclose(law.predict(probe), 2.5 + 0.8 * np.exp(probe @ t), rtol=2e-3)


@pytest.mark.parametrize("family", ["lightgbm", "loglinear", "gp", "linear"])
def test_every_family_is_a_deterministic_scikit_learn_estimator(family: str) -> None:
    x, y, _ = law_runs(48, 4, seed=4)
    model = make_regressor(family, mode="regmix", seed=1)
    assert model.get_params()["seed"] == 1
    assert clone(model).get_params() == model.get_params()
    a = model.fit(x, y)
    assert a is model and a.n_features_in_ == 4
    b = clone(model).fit(x, y)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    again = regressor_from_bytes(a.to_bytes())
    np.testing.assert_array_equal(again.predict(x), a.predict(x))
    with pytest.raises(ValueError, match="regmix rows"):
        a.predict(np.full((1, 4), 0.3))


def test_parameters_are_checked_by_fit_against_declared_ranges() -> None:
    x, y, _ = law_runs(30, 3, seed=5)
    for family, params, match in [
        ("lightgbm", {"num_leaves": 1}, r"num_leaves must be in \[2, inf\]"),
        ("loglinear", {"alpha": -1.0}, "alpha"),
        ("gp", {"n_restarts": -1}, "n_restarts"),
        ("gp", {"ard": "yes"}, "ard"),
        ("gp", {"kernel": "rbf"}, "kernel must be 'matern' or 'additive'"),
        ("linear", {"alphas": [0.0]}, "alphas"),
    ]:
        model = make_regressor(family, **params)  # stores only
        with pytest.raises(ValueError, match=match):
            model.fit(x, y)


def test_the_additive_gp_beats_matern_and_ridge_on_few_runs_of_an_additive_loss() -> None:
    # A loss that is a sum of one bowl per feature: 40 runs over 12 features cannot fix a
    # Matérn kernel's 12 length scales, but one shared scale of an additive kernel they can.
    rng = np.random.default_rng(0)
    optimum, weight = np.linspace(0.2, 0.8, 12), np.linspace(0.5, 2.0, 12)

    def loss(x: np.ndarray) -> np.ndarray:
        return ((x - optimum) ** 2 * weight).sum(axis=1)

    x, x_test = rng.random((40, 12)), rng.random((500, 12))
    y = loss(x) + rng.normal(0.0, 0.02, 40)

    def test_spearman(family: str, **params) -> float:
        return make_regressor(family, **params).fit(x, y).evaluate(x_test, loss(x_test))["spearman"]

    additive = test_spearman("gp", kernel="additive")
    assert additive > 0.98
    assert additive > test_spearman("gp") + 0.15  # the default Matérn kernel
    assert additive > test_spearman("linear") + 0.3


def test_the_additive_kernel_is_the_mean_of_one_dimensional_kernels_with_their_gradient() -> None:
    x = np.random.default_rng(2).random((6, 3))
    kernel = AdditiveRBF(0.7)
    gram, grad = kernel(x, eval_gradient=True)
    expected = np.mean([RBF(0.7)(x[:, [j]]) for j in range(3)], axis=0)
    np.testing.assert_allclose(gram, expected, atol=1e-15)
    np.testing.assert_allclose(kernel.diag(x), 1.0)
    step = 1e-6  # the gradient is with respect to log(length_scale)
    numeric = (AdditiveRBF(0.7 * np.exp(step))(x) - gram) / step
    np.testing.assert_allclose(grad[:, :, 0], numeric, atol=1e-5)


def test_folds_follow_the_run_ids_not_the_row_order() -> None:
    ids = [f"run-{i:03d}" for i in range(37)]
    folds = cv_folds(ids, k=5, repeats=3, seed=7)
    assert folds.shape == (3, 37)
    for row in folds:
        sizes = np.bincount(row, minlength=5)
        assert sizes.max() - sizes.min() <= 1
    assert not np.array_equal(folds[0], folds[1])  # repeats differ
    order = np.random.default_rng(0).permutation(37)
    shuffled = cv_folds([ids[i] for i in order], k=5, repeats=3, seed=7)
    np.testing.assert_array_equal(shuffled, folds[:, order])
    assert not np.array_equal(cv_folds(ids, k=5, repeats=3, seed=8), folds)


def test_the_cv_table_does_not_depend_on_row_order() -> None:
    x, y, _ = law_runs(40, 4, seed=6, noise=0.02)
    ids = [f"r{i}" for i in range(40)]
    order = np.random.default_rng(1).permutation(40)
    a = choose_regressor(["linear", "loglinear"], x, y, ids, mode="regmix")
    b = choose_regressor(["linear", "loglinear"], x[order], y[order], [ids[i] for i in order], mode="regmix")
    rows = [[(r.family, r.spearman, r.mae) for r in c.table] for c in (a, b)]
    assert rows[0] == rows[1]
    np.testing.assert_array_equal(a.table[0].oof[:, order], b.table[0].oof)


def test_auto_picks_the_true_family_on_a_clear_case() -> None:
    x, y, _ = law_runs(64, 8, seed=0)
    choice = choose_regressor(sorted(REGRESSORS), x, y, [f"r{i}" for i in range(64)], mode="regmix")
    assert choice.chosen == "loglinear"
    rows = {r.family: r for r in choice.table}
    assert rows["loglinear"].spearman > 0.99
    assert rows["loglinear"].spearman > rows["lightgbm"].spearman + 0.05
    assert rows["loglinear"].mae < rows["lightgbm"].mae / 10
    assert len(rows) == 7  # four families, the two ensembles of the best, the constant floor
    assert rows["constant (the mean)"].mae > 10 * rows["loglinear"].mae
    assert choice.model.intercept_ == pytest.approx(2.5, abs=0.05)  # refitted on all runs
    assert choice.table[0].family == "loglinear"  # best first


def test_an_ensemble_is_chosen_when_its_out_of_fold_order_is_better() -> None:
    # A log-linear law in 6 features plus a step in a 7th that only the trees see: neither
    # family alone orders the runs as well as the mean of their predictions.
    rng = np.random.default_rng(0)
    x = rng.random((80, 7))
    y = np.exp(x[:, :6] @ np.linspace(-0.8, 0.8, 6)) + 0.5 * (x[:, 6] > 0.5) + rng.normal(0, 0.02, 80)
    choice = choose_regressor(["loglinear", "lightgbm"], x, y, [f"r{i}" for i in range(80)])
    rows = {r.family: r for r in choice.table}
    assert choice.chosen == "mean(loglinear+lightgbm)"
    assert rows[choice.chosen].spearman > rows["loglinear"].spearman + 0.01
    assert rows["loglinear"].spearman > rows["lightgbm"].spearman
    assert isinstance(choice.model, MeanEnsemble)
    expected = np.mean([m.predict(x[:5]) for m in choice.model.members_], axis=0)
    np.testing.assert_allclose(choice.model.predict(x[:5]), expected)


def test_a_family_that_cannot_fit_is_reported_and_never_chosen() -> None:
    x, y, _ = law_runs(24, 3, seed=3)  # 19 runs per training fold: too few for LightGBM's split
    choice = choose_regressor(
        ["lightgbm", "linear"],
        x,
        y,
        [f"r{i}" for i in range(24)],
        mode="regmix",
        params={"lightgbm": {"validation_fraction": 0.05}},
    )
    rows = {r.family: r for r in choice.table}
    assert not rows["lightgbm"].ok and "too few" in rows["lightgbm"].error
    assert choice.chosen == "linear"
    assert rows["lightgbm"].as_dict()["error"].startswith("ValueError")


class Quadratic(Regressor):
    """A family added from this module alone: least squares on the features and their squares."""

    name = "test-quadratic"

    def _fit(self, X, y):
        design = np.hstack([np.ones((len(X), 1)), X, X**2])
        self.coef_ = np.linalg.lstsq(design, y, rcond=None)[0]

    def _predict(self, X):
        return np.hstack([np.ones((len(X), 1)), X, X**2]) @ self.coef_


def test_a_family_added_by_one_class_and_one_registration_is_cross_validated() -> None:
    register(Quadratic)
    try:
        rng = np.random.default_rng(5)
        x = rng.random((50, 3))
        y = 1.0 + (x[:, 0] - 0.4) ** 2 + 0.5 * (x[:, 1] - 0.7) ** 2 + rng.normal(0, 0.001, 50)
        choice = choose_regressor(["linear", "test-quadratic"], x, y, [f"r{i}" for i in range(50)])
        assert choice.chosen == "test-quadratic"
        assert {r.family for r in choice.table} >= {"linear", "test-quadratic"}
        with pytest.raises(ValueError, match="registered already"):

            @register
            class Other(Quadratic):
                name = "test-quadratic"

    finally:
        REGRESSORS.unregister("test-quadratic")


class Exaggerated(Regressor):
    """Orders the runs perfectly (it is told the truth) but misses their losses a thousandfold."""

    name = "test-exaggerated"

    def _fit(self, X, y):
        self.centre_ = float(y.mean())

    def _predict(self, X):
        return self.centre_ + 1000.0 * (
            2.5 + 0.8 * np.exp(X @ np.linspace(-1.5, 1.5, X.shape[1])) - self.centre_
        )


def test_a_family_far_off_the_losses_is_never_chosen() -> None:
    register(Exaggerated)
    try:
        x, y, _ = law_runs(48, 4, seed=8, noise=0.01)
        choice = choose_regressor(
            ["linear", "test-exaggerated"], x, y, [f"r{i}" for i in range(48)], mode="regmix"
        )
        rows = {r.family: r for r in choice.table}
        assert rows["test-exaggerated"].spearman > rows["linear"].spearman  # the better order
        assert rows["test-exaggerated"].mae > 3 * rows["constant (the mean)"].mae
        assert choice.chosen == "linear"
    finally:
        REGRESSORS.unregister("test-exaggerated")


class Cautious(Regressor):
    """Orders the runs as the law does but stays close to the mean loss it was fitted on, as a
    Gaussian process or ridge does on few runs."""

    name = "test-cautious"

    def _fit(self, X, y):
        self.centre_ = float(y.mean())

    def _predict(self, X):
        law = 2.5 + 0.8 * np.exp(X @ np.linspace(-1.5, 1.5, X.shape[1]))
        return self.centre_ + 0.002 * (law - 3.3)


def test_the_cv_spearman_is_not_fooled_by_each_folds_mean() -> None:
    # Pooled out-of-fold predictions of a model that leans on its training mean anti-correlate
    # with the runs (a fold of high losses is trained on low ones), whatever order it gives
    # inside a fold. Shifted by that mean, the cautious family scores as its order deserves.
    x, y, _ = law_runs(40, 6, seed=3, noise=0.0)
    ids = [f"r{i}" for i in range(40)]
    folds = cv_folds(ids, 5, 3, seed=0)
    row = cross_validate(Cautious("regmix"), x, y, folds)
    assert row.spearman > 0.99
    pooled = np.mean([evaluate_predictions(y, oof)["spearman"] for oof in row.oof])
    assert pooled < 0.5  # what the table showed before the shift
    offsets = fold_offsets(y, folds)
    for r, fold in enumerate(folds):
        for f in range(5):
            assert offsets[r, fold == f] == pytest.approx(y[fold != f].mean())
    choice = choose_regressor(["linear"], x, y, ids, mode="regmix")
    constant = next(r for r in choice.table if r.family == "constant (the mean)")
    assert constant.spearman == 0.0  # all-equal after the shift, where pooled it scored ≈ −1
