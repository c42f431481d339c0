"""LossRegressor and the θ / mixture search on functions with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from quadmix_spark.core import ParamSampler, load_params, save_params
from quadmix_spark.search.candidates import DirichletSampler, search_mixture, search_theta, theta_to_params
from quadmix_spark.search.regression import LossRegressor, evaluate_predictions, plot_predicted_vs_actual

DOMAINS, SCORERS = ["News", "Science"], ["dclm", "edu"]
SAMPLER = ParamSampler(DOMAINS, SCORERS)
# Layout per domain: alpha[dclm], alpha[edu], lambda, omega, eta, epsilon -> 12 entries.
IDX = {name: i for i, name in enumerate(SAMPLER.names)}
BOWL_DIMS = [IDX["alpha[News,dclm]"], IDX["omega[News]"], IDX["lambda[Science]"]]
BOWL_SCALE = np.array([1.0, 0.1, 1000.0])  # the Alg. 1 range of each, to compare in unit terms
BOWL_MIN = np.array([0.7, 0.06, 300.0])


def bowl(theta: np.ndarray) -> np.ndarray:
    """Quadratic bowl in 3 of the 12 entries (unit-scaled), minimum 2.0 at BOWL_MIN."""
    z = (theta[:, BOWL_DIMS] - BOWL_MIN) / BOWL_SCALE
    return 2.0 + (z**2 * np.array([1.0, 1.5, 0.8])).sum(axis=1)


def unit_distance(theta: np.ndarray) -> np.ndarray:
    return np.linalg.norm((np.atleast_2d(theta)[:, BOWL_DIMS] - BOWL_MIN) / BOWL_SCALE, axis=1)


@pytest.fixture(scope="module")
def bowl_regressor() -> LossRegressor:
    x = SAMPLER.sample(2_000, seed=1)
    y = bowl(x) + np.random.default_rng(2).normal(0.0, 0.005, len(x))
    return LossRegressor(feature_names=SAMPLER.names, seed=3).fit(x, y)


class ExactBowl:
    """A 'regressor' that is the true function: isolates the search from the fit."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return bowl(np.asarray(x))


def test_regression_recovers_a_smooth_5d_function() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((900, 5))
    f = np.sin(3 * x[:, 0]) + x[:, 1] ** 2 + 0.5 * x[:, 2] * x[:, 3] - 0.3 * x[:, 4]
    y = f + rng.normal(0.0, 0.02, len(x))
    reg = LossRegressor(seed=0).fit(x[:600], y[:600])
    metrics = reg.evaluate(x[600:], y[600:])
    assert metrics["n"] == 300
    assert metrics["spearman"] >= 0.9
    assert metrics["pearson"] >= 0.9
    assert metrics["mae"] < 0.25 * f.std()  # well under the target's spread
    assert reg.validation_ is not None and reg.validation_["n"] == 60
    assert 1 <= reg.best_iteration_ <= 1000


def test_fit_is_deterministic(bowl_regressor: LossRegressor) -> None:
    x = SAMPLER.sample(2_000, seed=1)
    y = bowl(x) + np.random.default_rng(2).normal(0.0, 0.005, len(x))
    again = LossRegressor(feature_names=SAMPLER.names, seed=3).fit(x, y)
    probe = SAMPLER.sample(500, seed=9)
    np.testing.assert_array_equal(again.predict(probe), bowl_regressor.predict(probe))


def test_feature_importance_names_the_bowl_dimensions(bowl_regressor: LossRegressor) -> None:
    top3 = list(bowl_regressor.feature_importance())[:3]
    assert set(top3) == {"alpha[News,dclm]", "omega[News]", "lambda[Science]"}


@pytest.mark.parametrize("regressor", ["fitted", "exact"])
def test_search_finds_the_bowl_minimum(regressor: str, bowl_regressor: LossRegressor) -> None:
    model = bowl_regressor if regressor == "fitted" else ExactBowl()
    result = search_theta(model, SAMPLER, n_candidates=20_000, top_k=10, seed=5)
    random_mean = unit_distance(SAMPLER.sample(20_000, seed=5)).mean()
    dist = unit_distance(result.theta_star)[0]
    assert dist < 0.05
    assert dist < random_mean / 4
    assert result.top_candidates.shape == (10, SAMPLER.n_params)
    assert np.all(np.diff(result.top_predicted) >= 0)
    assert result.top_predicted[0] == pytest.approx(result.candidate_stats["min"])
    assert result.predicted_loss_of_mean == pytest.approx(2.0, abs=0.03)
    np.testing.assert_allclose(result.theta_star, result.top_candidates.mean(axis=0), rtol=0, atol=1e-12)


def test_theta_star_alpha_rows_sum_to_one_and_round_trip(bowl_regressor: LossRegressor, tmp_path) -> None:
    result = search_theta(bowl_regressor, SAMPLER, n_candidates=5_000, top_k=7, seed=11)
    params = result.to_params()
    np.testing.assert_allclose(params.alpha.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert params.domains == tuple(DOMAINS) and params.scorers == tuple(SCORERS)
    assert np.array_equal(theta_to_params(result.theta_star, SAMPLER).to_vector(), result.theta_star)
    save_params(params, tmp_path / "theta_star.yaml")
    assert load_params(tmp_path / "theta_star.yaml") == params
    with pytest.raises(ValueError, match="to_params"):
        result.to_mixture()


def test_search_keeps_excluded_scorers_at_zero() -> None:
    sampler = ParamSampler(DOMAINS, ["a", "b", "c"], exclude_scorers=["b"])
    result = search_theta(ExactFirst(), sampler, n_candidates=2_000, top_k=10, seed=0)
    params = result.to_params()
    assert np.all(params.alpha[:, 1] == 0.0)
    np.testing.assert_allclose(params.alpha.sum(axis=1), 1.0, atol=1e-15)


class ExactFirst:
    def predict(self, x: np.ndarray) -> np.ndarray:
        return -np.asarray(x)[:, 0]  # prefer a large alpha[News, a]


def test_search_is_deterministic(bowl_regressor: LossRegressor) -> None:
    a = search_theta(bowl_regressor, SAMPLER, n_candidates=3_000, seed=4)
    b = search_theta(bowl_regressor, SAMPLER, n_candidates=3_000, seed=4, batch_size=777)
    np.testing.assert_array_equal(a.theta_star, b.theta_star)
    assert a.predicted_loss_of_mean == b.predicted_loss_of_mean


def test_dirichlet_mixture_search_returns_a_point_on_the_simplex() -> None:
    domains = ["web", "code", "books", "wiki"]
    target = np.array([0.4, 0.3, 0.2, 0.1])
    x = DirichletSampler(domains).sample(1_500, seed=0)
    y = 3.0 + ((x - target) ** 2).sum(axis=1) + np.random.default_rng(1).normal(0, 0.002, len(x))
    reg = LossRegressor("regmix", feature_names=domains, seed=0).fit(x, y)
    result = search_mixture(reg, domains, n_candidates=20_000, top_k=50, seed=2)
    w = result.theta_star
    assert w.shape == (4,) and np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    assert np.abs(w - target).max() < 0.05
    mixture = result.to_mixture()
    assert list(mixture) == domains and mixture["web"] == pytest.approx(w[0])
    with pytest.raises(ValueError, match="to_mixture"):
        result.to_params()


def test_dirichlet_sampler_concentration() -> None:
    prior = np.array([0.7, 0.2, 0.1])
    draws = DirichletSampler(["a", "b", "c"], prior * 50).sample(4_000, seed=0)
    np.testing.assert_allclose(draws.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(draws.mean(axis=0), prior, atol=0.01)
    with pytest.raises(ValueError, match="concentration"):
        DirichletSampler(["a", "b"], [1.0, 0.0])
    with pytest.raises(ValueError, match="duplicate"):
        DirichletSampler(["a", "a"])


def test_evaluate_predictions_values() -> None:
    m = evaluate_predictions([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 3.0, 10.0])
    # Pearson by hand: deviations (-1.5, -.5, .5, 1.5) and (-2.625, -2.125, -1.125, 5.875);
    # r = Σ dt·dp / √(Σ dt² · Σ dp²) = 13.25 / √(5 · 47.1875) ≈ 0.8626.
    pearson = 13.25 / np.sqrt(5 * 47.1875)
    assert pearson == pytest.approx(np.corrcoef([1, 2, 3, 4], [1.5, 2, 3, 10])[0, 1])
    assert m == {"spearman": pytest.approx(1.0), "pearson": pytest.approx(pearson), "mae": 1.625, "n": 4}


def test_plot_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    t = rng.random(50)
    out = plot_predicted_vs_actual(t, t + rng.normal(0, 0.05, 50), tmp_path / "pva.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "doremi"}, "mode"),
        ({"n_estimators": 0}, "n_estimators"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"num_leaves": 1}, "num_leaves"),
        ({"subsample": 1.2}, "subsample"),
        ({"colsample_bytree": 0.0}, "colsample_bytree"),
        ({"reg_alpha": -0.1}, "reg_alpha"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"early_stopping_rounds": 0}, "early_stopping_rounds"),
        ({"num_threads": 0}, "num_threads"),
        ({"seed": -1}, "seed"),
        ({"feature_names": ["a", "a"]}, "unique"),
    ],
)
def test_bad_hyper_parameters(kwargs: dict, match: str) -> None:
    model = LossRegressor(**kwargs)  # __init__ only stores (scikit-learn's contract); fit checks
    x = np.random.default_rng(0).random((40, 2))
    with pytest.raises(ValueError, match=match):
        model.fit(x, x.sum(axis=1))


def test_bad_data(bowl_regressor: LossRegressor) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        LossRegressor().predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="12 features, expected 3"):
        LossRegressor(feature_names=["a", "b", "c"]).fit(np.zeros((30, 12)), np.zeros(30))
    with pytest.raises(ValueError, match="NaN"):
        LossRegressor().fit(np.ones((30, 2)), np.r_[np.zeros(29), np.nan])
    with pytest.raises(ValueError, match="1-D with 30"):
        LossRegressor().fit(np.ones((30, 2)), np.zeros(29))
    with pytest.raises(ValueError, match="too few"):
        LossRegressor().fit(np.ones((5, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="regmix rows"):
        LossRegressor("regmix").fit(np.full((30, 2), 0.4), np.zeros(30))
    with pytest.raises(ValueError, match="expected 12"):
        bowl_regressor.predict(np.zeros((2, 11)))


def test_bad_search_arguments(bowl_regressor: LossRegressor) -> None:
    with pytest.raises(ValueError, match="top_k"):
        search_theta(bowl_regressor, SAMPLER, n_candidates=5, top_k=10)
    with pytest.raises(ValueError, match="n_candidates"):
        search_theta(bowl_regressor, SAMPLER, n_candidates=0)
    with pytest.raises(ValueError, match="same sampler"):
        search_theta(bowl_regressor, ParamSampler(["News", "Sports"], SCORERS), n_candidates=100)
    with pytest.raises(ValueError, match="cannot score"):
        search_theta(LossRegressor("regmix"), SAMPLER, n_candidates=100)
    with pytest.raises(TypeError, match="predict"):
        search_theta(object(), SAMPLER, n_candidates=100)  # type: ignore[arg-type]


class TwoValleys:
    """Losses low near either corner of two domains, high in between: the mean of good mixtures is bad."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        r = np.asarray(x)[:, 0]
        return 3.0 - np.exp(-(((r - 0.1) / 0.05) ** 2)) - np.exp(-(((r - 0.9) / 0.05) ** 2))


def test_a_mean_that_leaves_the_good_region_gives_way_to_the_best_candidate() -> None:
    result = search_mixture(TwoValleys(), ["a", "b"], n_candidates=2_000, top_k=20, seed=3)
    near = np.abs(result.top_candidates[:, 0] - 0.5)
    assert (near > 0.3).all()  # every top candidate sits in a valley
    assert not result.candidate_stats["averaged"]
    np.testing.assert_array_equal(result.theta_star, result.top_candidates[0])
    assert result.predicted_loss_of_mean == pytest.approx(result.top_predicted[0])
    # one valley: the mean of its best candidates stays in it, and is θ*
    one = search_mixture(ExactValley(), ["a", "b"], n_candidates=2_000, top_k=20, seed=3)
    assert one.candidate_stats["averaged"]
    np.testing.assert_allclose(one.theta_star, one.top_candidates.mean(axis=0))


class ExactValley:
    def predict(self, x: np.ndarray) -> np.ndarray:
        return 3.0 - np.exp(-(((np.asarray(x)[:, 0] - 0.1) / 0.05) ** 2))
