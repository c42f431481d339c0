"""BiMix: the law's fit on synthetic runs from known coefficients, its diagnostics and its optimal mixture."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from quadmix_spark.core import Mixture
from quadmix_spark.mixing.bimix import BiMixLaw, normalise_gauge, random_law, synthetic_runs
from quadmix_spark.mixing.bimix_diagnostics import (
    extrapolation_error,
    fit_summary,
    format_errors,
    mixture_groups,
    plot_fit,
    unseen_mixture_error,
)
from quadmix_spark.mixing.bimix_optimum import optimal_mixture, share_caps

S_END = 1e8  # tokens of the last checkpoint


def true_law(seed: int = 0, m: int = 4) -> BiMixLaw:
    """Coefficients in the ranges of the paper's fits: α small, β 0.25–0.6, a floor C of 50–85%."""
    return random_law([f"d{i}" for i in range(m)], S_END, seed=seed)


def make_runs(law: BiMixLaw, *, n_mix: int = 6, n_steps: int = 12, noise: float = 0.003, seed: int = 0):
    rng = np.random.default_rng(seed + 100)
    mixtures = rng.dirichlet(np.full(len(law.domains_), 3.0), n_mix)
    steps = np.arange(1, n_steps + 1) / n_steps * S_END
    return synthetic_runs(law, mixtures, steps, noise=noise, seed=seed), steps


def relative_coef_error(fitted: BiMixLaw, truth: BiMixLaw) -> pd.DataFrame:
    expected = normalise_gauge(truth.coef_, fitted.s_ref_)  # the fit's gauge: B s_ref^-β + C = 1
    return (fitted.coef_ - expected).abs() / expected


# -- part 1: the law -------------------------------------------------------------------------------
def test_noise_free_runs_give_back_the_coefficients():
    truth = true_law()
    runs, _ = make_runs(truth, noise=0.0)
    law = BiMixLaw().fit(runs)
    assert law.domains_ == truth.domains_
    assert relative_coef_error(law, truth).to_numpy().max() < 1e-6
    assert (law.diagnostics_["r2_log"] > 1 - 1e-9).all()


def test_noisy_runs_recover_the_coefficients_and_extrapolate_to_the_last_checkpoint():
    truth = true_law()
    runs, steps = make_runs(truth, noise=0.003)  # 0.3% lognormal noise on every loss
    err = relative_coef_error(BiMixLaw().fit(runs), truth).max()
    # B = (1 − C) s_ref^β carries β's error times log(s_ref) ≈ 18, so B is checked through C and β
    assert err["A"] < 0.01 and err["alpha"] < 0.06 and err["beta"] < 0.06 and err["C"] < 0.04, err.to_dict()

    last = runs["step_tokens"] == steps[-1]
    law = BiMixLaw().fit(runs[~last])
    held = runs[last]
    rel = np.abs(law.predict_runs(held) - held["loss"]) / held["loss"]
    noise_only = np.abs(truth.predict_runs(held) - held["loss"]) / held["loss"]  # the true law's own error
    assert rel.mean() < 0.004 and rel.max() < 0.015, (rel.mean(), rel.max())
    assert rel.mean() < 1.5 * noise_only.mean()


def test_rows_with_a_zero_share_are_excluded_and_counted_never_clamped():
    truth = true_law()
    runs, steps = make_runs(truth, noise=0.003)
    # a run without domain d2: its loss there is finite (the model saw none of it), but the law has no
    # value at r = 0; a fit that clamped r to a tiny share would be pulled far off by these rows
    zero = runs[runs["run_id"] == "run000"].copy()
    zero["run_id"] = "no_d2"
    zero.loc[zero["domain"] == "d2", "r"] = 0.0
    zero.loc[zero["domain"] == "d2", "loss"] = 9.0
    law = BiMixLaw().fit(pd.concat([runs, zero], ignore_index=True))
    counts = law.diagnostics_["n_zero_share"]
    assert counts["d2"] == len(steps) and counts.drop("d2").eq(0).all()
    assert law.diagnostics_.loc["d2", "n_points"] == 6 * len(steps)

    without = BiMixLaw().fit(pd.concat([runs, zero[zero["domain"] != "d2"]], ignore_index=True))
    pd.testing.assert_frame_equal(law.coef_, without.coef_)
    assert np.isinf(law.predict(np.array([0.5, 0.5, 0.0, 0.0]), S_END)[2:]).all()


def test_the_fit_is_deterministic_and_independent_of_row_order():
    runs, _ = make_runs(true_law(1), noise=0.01)
    first = BiMixLaw().fit(runs)
    again = BiMixLaw().fit(runs.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(first.coef_, again.coef_, check_exact=True)
    pd.testing.assert_frame_equal(first.diagnostics_, again.diagnostics_, check_exact=True)


def test_predict_shapes_and_score():
    truth = true_law()
    runs, _ = make_runs(truth, noise=0.0)
    law = BiMixLaw().fit(runs)
    r = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    assert law.predict(r, [1e7, 1e8]).shape == (2, 4)
    assert law.predict(r[0], 1e8).shape == (4,)
    np.testing.assert_allclose(law.predict(r, 1e8), truth.predict(r, 1e8), rtol=1e-6)
    assert law.score(runs) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="4 columns"):
        law.predict(np.ones((2, 3)) / 3, 1e8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns="loss"), "lacks columns"),
        (lambda t: t.assign(r=t["r"] * 2), r"shares in \[0, 1\]"),
        (lambda t: t.assign(loss=-t["loss"]), "loss must be > 0"),
        (lambda t: pd.concat([t, t.iloc[:1]]), "repeated"),
        (lambda t: t.assign(r=np.where(t["step_tokens"] == S_END, 0.9, t["r"])), "different shares"),
        (lambda t: t[t["run_id"] == "run000"], "fewer than 2 distinct shares"),
    ],
)
def test_bad_runs_are_rejected_with_the_reason(change, message):
    runs, _ = make_runs(true_law(), noise=0.0)
    with pytest.raises(ValueError, match=message):
        BiMixLaw().fit(change(runs))


# -- part 2: diagnostics ---------------------------------------------------------------------------
def test_extrapolation_error_is_measured_on_checkpoints_left_out_of_the_fit():
    truth = true_law()
    runs, steps = make_runs(truth, noise=0.003)
    errors = extrapolation_error(runs)
    assert list(errors.per_domain.index) == truth.domains_
    assert errors.per_domain["n"].eq(6).all()  # one last checkpoint per run and domain
    assert errors.mean["mean_rel_error"] < 0.004
    # 5% more loss at the last checkpoint only: a law fitted on the others cannot know it
    bumped = runs.assign(loss=np.where(runs["step_tokens"] == steps[-1], runs["loss"] * 1.05, runs["loss"]))
    assert extrapolation_error(bumped).mean["mean_rel_error"] == pytest.approx(0.05 / 1.05, abs=0.006)


def test_unseen_mixture_error_holds_out_whole_mixtures():
    truth = true_law()
    runs, _ = make_runs(truth, noise=0.003)
    seed_twin = runs[runs["run_id"] == "run001"].assign(run_id="run001_seed2")  # same mixture, another seed
    runs = pd.concat([runs, seed_twin], ignore_index=True)
    groups = mixture_groups(runs)
    assert len(groups) == 6 and ["run001", "run001_seed2"] in groups

    errors = unseen_mixture_error(runs, k=2)
    assert errors.n_fits == 3
    assert errors.per_domain["n"].eq(7 * 12).all()  # every row predicted once, by a law that never saw it
    assert errors.mean["r2_log"] > 0.99 and errors.mean["mean_rel_error"] < 0.004
    # one mixture's losses 4% off at every step: only a held-out fit shows it as error
    off = runs.assign(loss=np.where(runs["run_id"] == "run003", runs["loss"] * 1.04, runs["loss"]))
    assert unseen_mixture_error(off, k=1).mean["mean_rel_error"] > 1.5 * errors.mean["mean_rel_error"]
    with pytest.raises(ValueError, match="fewer than 2"):
        unseen_mixture_error(runs, k=5)


def test_the_plot_and_the_printed_table(tmp_path):
    truth = true_law()
    runs, _ = make_runs(truth, noise=0.003)
    law = BiMixLaw().fit(runs)
    path = plot_fit(law, runs, tmp_path / "fit.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    text = format_errors(extrapolation_error(runs), unseen_mixture_error(runs, k=2), law)
    assert all(domain in text for domain in truth.domains_)
    assert "extrapolation" in text and "unseen mixtures" in text
    summary = fit_summary(law)
    assert summary["n_points"] == 6 * 12 * 4 and summary["r2_log"] > 0.99


# -- part 3: the optimal mixture -------------------------------------------------------------------
def slsqp_optimum(law: BiMixLaw, s: float, w, lo, hi) -> tuple[np.ndarray, float]:
    """The same problem by SLSQP, the general-purpose reference."""

    def objective(r):
        return float(np.sum(w * law.predict(r, s)))

    res = minimize(
        objective,
        np.clip(np.full(len(lo), 1 / len(lo)), lo, hi),
        method="SLSQP",
        bounds=list(zip(lo, hi, strict=True)),
        constraints=[{"type": "eq", "fun": lambda r: r.sum() - 1.0}],
        options={"maxiter": 1000, "ftol": 1e-15},
    )
    assert res.success, res.message
    return res.x, float(res.fun)


def test_interior_optimum_satisfies_stationarity_and_matches_slsqp():
    law = true_law(2, m=8)
    w = np.linspace(0.5, 2.0, 8)
    opt = optimal_mixture(law, 2 * S_END, weights=w)
    assert not opt.at_lower and not opt.at_upper
    assert math.fsum(opt.r) == pytest.approx(1.0, abs=1e-14)
    # KKT: the marginal gain α_i w_i A_i K_i r_i^-(α_i+1) is the same λ for every domain
    c = law.coef_
    k = c["B"].to_numpy() * (2 * S_END) ** -c["beta"].to_numpy() + c["C"].to_numpy()
    alpha = c["alpha"].to_numpy()
    marginal = alpha * w * c["A"].to_numpy() * k * opt.r ** -(alpha + 1)
    np.testing.assert_allclose(marginal, opt.multiplier, rtol=1e-9)

    r_ref, f_ref = slsqp_optimum(law, 2 * S_END, w, np.zeros(8), np.ones(8))
    np.testing.assert_allclose(opt.r, r_ref, atol=1e-5)
    assert opt.objective <= f_ref + 1e-12


def test_bounds_are_respected_and_binding_ones_reported():
    law = true_law(2, m=8)
    plain = optimal_mixture(law, S_END)
    big, small = int(np.argmax(plain.r)), int(np.argmin(plain.r))
    available = np.full(8, 1e9)
    available[big] = plain.r[big] * 0.5 * 1e9 / 4  # the favourite domain holds half what it would take
    hi = share_caps(available, budget=1e9, max_repeats=4)
    assert hi[big] == pytest.approx(plain.r[big] / 2) and (np.delete(hi, big) == 1.0).all()
    lo = np.zeros(8)
    lo[small] = 0.2  # the least useful domain is forced up
    opt = optimal_mixture(law, S_END, lower=lo, upper=hi)
    assert (opt.r >= lo - 1e-12).all() and (opt.r <= hi + 1e-12).all()
    assert math.fsum(opt.r) == pytest.approx(1.0, abs=1e-14)
    assert opt.at_upper == [law.domains_[big]] and opt.at_lower == [law.domains_[small]]

    r_ref, f_ref = slsqp_optimum(law, S_END, np.ones(8), lo, hi)
    np.testing.assert_allclose(opt.r, r_ref, atol=1e-5)
    assert opt.objective <= f_ref + 1e-12
    assert opt.objective > plain.objective  # the bounds cost something

    with pytest.raises(ValueError, match="no mixture fits the bounds"):
        optimal_mixture(law, S_END, upper=0.1)
    with pytest.raises(ValueError, match="lower > upper"):
        optimal_mixture(law, S_END, lower={"d0": 0.5}, upper={"d0": 0.4})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_the_mixture_file_round_trips_with_the_fit_in_its_provenance(tmp_path, suffix):
    runs, _ = make_runs(true_law(), noise=0.003)
    law = BiMixLaw().fit(runs)
    opt = optimal_mixture(law, 2 * S_END, weights={"d0": 2.0})
    assert optimal_mixture(law, 2 * S_END, weights={"d0": 2.0}).r.tobytes() == opt.r.tobytes()
    mixture = opt.to_mixture(fit_summary(law), inputs={"runs": 6})
    back = Mixture.from_file(mixture.to_file(tmp_path / f"bimix{suffix}"))
    assert back == mixture
    assert back.as_vector(law.domains_) == pytest.approx(opt.r, abs=1e-15)
    prov = back.provenance
    assert prov["method"] == "bimix" and prov["s_target"] == 2 * S_END
    assert prov["weights"]["d0"] == 2.0 and prov["fit"]["r2_log"] > 0.99
    assert prov["coefficients"]["d1"]["alpha"] == pytest.approx(law.coef_.loc["d1", "alpha"])
    assert prov["inputs"] == {"runs": 6}
