"""BiMix at one step: runs that log only their final loss get L_i = A_i / r_i^α_i per domain."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quadmix_spark import cli, core
from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.mixing.bimix import BiMixLaw, single_step, synthetic_runs
from quadmix_spark.mixing.bimix_diagnostics import extrapolation_error, unseen_mixture_error
from quadmix_spark.mixing.bimix_optimum import optimal_mixture
from quadmix_spark.pipeline.bimix import run_bimix

STEP = 1_000_000
#: domain → (A, α): the loss at r = 1 and the exponent, at the swarm's one step
POWER = {"arts": (3.6, 0.05), "code": (2.4, 0.15), "news": (3.2, 0.08), "science": (3.0, 0.2)}
TRUE = BiMixLaw.from_coefficients({d: (a, alpha, 0.0, 0.0, 1.0) for d, (a, alpha) in POWER.items()})
NOISE = 0.002  # lognormal sd of each loss: 0.2%, a seed-to-seed spread of proxy runs


def one_step_runs(n_mixtures: int = 40, noise: float = NOISE, seed: int = 0) -> pd.DataFrame:
    mixtures = np.random.default_rng(seed).dirichlet(np.ones(len(POWER)), n_mixtures)
    return synthetic_runs(TRUE, mixtures, [STEP], noise=noise, seed=seed)


def test_the_fixed_step_fit_recovers_a_known_power_law():
    exact = BiMixLaw(fixed_step=True).fit(one_step_runs(noise=0.0))
    for d, (a, alpha) in POWER.items():
        assert exact.coef_.loc[d, "A"] == pytest.approx(a, rel=1e-12)
        assert exact.coef_.loc[d, "alpha"] == pytest.approx(alpha, abs=1e-12)
    # with 0.2% noise on 40 mixtures the standard error of α is ≈ 3e-4: 0.005 is over 10 of them
    law = BiMixLaw(fixed_step=True).fit(one_step_runs())
    for d, (a, alpha) in POWER.items():
        assert law.coef_.loc[d, "alpha"] == pytest.approx(alpha, abs=0.005)
        assert law.coef_.loc[d, "A"] == pytest.approx(a, rel=0.01)
    assert list(law.coef_.loc["news", ["B", "beta", "C"]]) == [0.0, 0.0, 1.0]  # K_i(s) = 1 at the step
    assert law.s_ref_ == STEP and (law.diagnostics_["n_points"] == 40).all()
    assert law.diagnostics_["mean_rel_error"].max() < 2 * NOISE
    # the unseen-mixture error refits the fixed-step law per fold
    unseen = unseen_mixture_error(one_step_runs(), 8, law)
    assert unseen.n_fits == 5 and unseen.mean["mean_rel_error"] < 2 * NOISE
    with pytest.raises(ValueError, match="nothing to extrapolate"):
        extrapolation_error(one_step_runs(), law)


def test_the_full_law_refuses_one_step_and_the_fixed_law_needs_two_shares():
    runs = one_step_runs()
    assert single_step(runs) == STEP
    with pytest.raises(ValueError, match="fewer than 3 distinct steps"):
        BiMixLaw().fit(runs)
    same_share = runs.assign(r=0.25)
    with pytest.raises(ValueError, match="fewer than 2 distinct shares"):
        BiMixLaw(fixed_step=True).fit(same_share)


def test_on_runs_of_several_steps_the_fixed_law_is_the_bimix_law_at_the_largest_one():
    """At s_ref the BiMix law is A_i K_i(s_ref) / r^α_i: the fixed-step fit at that step gives it back."""
    s_ref = 300_000
    full = BiMixLaw.from_coefficients(
        {d: (a, alpha, 0.4 * s_ref**0.5, 0.5, 0.6) for d, (a, alpha) in POWER.items()}
    )
    mixtures = np.random.default_rng(3).dirichlet(np.ones(len(POWER)), 12)
    runs = synthetic_runs(full, mixtures, [75_000, 150_000, s_ref])
    assert single_step(runs) is None
    law = BiMixLaw(fixed_step=True).fit(runs)
    assert (law.diagnostics_["n_other_step"] == 24).all() and (law.diagnostics_["n_points"] == 12).all()
    np.testing.assert_allclose(law.coef_["A"], full.coef_["A"], rtol=1e-12)  # K_i(s_ref) = 1 in the gauge
    np.testing.assert_allclose(law.coef_["alpha"], full.coef_["alpha"], atol=1e-12)
    np.testing.assert_allclose(optimal_mixture(law, s_ref).r, optimal_mixture(full, s_ref).r, atol=1e-12)


def config_dict(tmp_path, runs: pd.DataFrame, **bimix) -> dict:
    runs.to_parquet(tmp_path / "runs.parquet")
    return {
        "warehouse": str(tmp_path / "warehouse"),
        "search": {"domains": list(POWER)},
        "proxy": {"token_budget": STEP},
        "bimix": {
            "runs_path": str(tmp_path / "runs.parquet"),
            "output_dir": str(tmp_path / "bimix"),
            "output_mixture": str(tmp_path / "bimix" / "r_star.yaml"),
            **bimix,
        },
    }


def write_config(tmp_path, runs: pd.DataFrame, **bimix) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_dict(tmp_path, runs, **bimix)))
    return str(path)


def no_spark(*args, **kwargs):
    raise AssertionError("the SparkSession started")


def test_the_job_on_one_step_runs_fits_the_fixed_step_law_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_session", no_spark)  # a local runs file without stats needs no Spark
    assert main(["bimix", "--config", write_config(tmp_path, one_step_runs())]) == 0
    out = capsys.readouterr().out
    assert (
        "fixed-step law L_i = A_i / r_i^α_i at 1,000,000 tokens: the runs have one step per domain "
        "(bimix.fixed_step: null)"
    ) in out
    summary = json.loads((tmp_path / "bimix" / "bimix_summary.json").read_text())
    assert summary["fixed_step"] == {"step": STEP, "automatic": True, "rows_other_steps": 0}
    assert summary["fit"]["fixed_step"] is True and summary["s_target"] == STEP
    assert "nothing to extrapolate" in summary["extrapolation_skipped"]
    assert summary["unseen"]["split"] == "leave-2-mixtures-out over 40 mixtures"  # ⌈40 / 20⌉
    assert summary["unseen"]["mean_rel_error"] < 2 * NOISE
    for d, (a, alpha) in POWER.items():
        assert summary["coefficients"][d]["alpha"] == pytest.approx(alpha, abs=0.005)
        assert summary["coefficients"][d]["A"] == pytest.approx(a, rel=0.01)
    r_star = core.Mixture.from_file(tmp_path / "bimix" / "r_star.yaml")
    truth = optimal_mixture(TRUE, STEP)
    assert dict(r_star.shares) == pytest.approx(truth.shares, abs=0.01)
    found = TRUE.predict(np.array([r_star.shares[d] for d in TRUE.domains_]), STEP).sum()
    assert found == pytest.approx(truth.objective, rel=1e-4)
    assert r_star.provenance["fit"]["fixed_step"] is True


def test_fixed_step_false_keeps_the_refusal_and_names_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_session", no_spark)
    assert main(["bimix", "--config", write_config(tmp_path, one_step_runs(), fixed_step=False)]) == 2
    err = capsys.readouterr().err
    assert "bimix.runs_path: " in err and "domain 'arts' cannot be fitted: " in err
    assert "fewer than 3 distinct steps (β and C are not determined)" in err
    assert "(bimix.fixed_step: false; null fits L_i = A_i / r_i^α_i to runs with one step)" in err
    assert not (tmp_path / "bimix").exists()


def test_fixed_step_true_fits_the_largest_step_and_refuses_another_target(tmp_path):
    runs = one_step_runs(n_mixtures=10)
    early = runs.assign(step_tokens=STEP // 4, loss=runs["loss"] * 1.3)
    both = pd.concat([early, runs], ignore_index=True)
    config = from_dict(PipelineConfig, config_dict(tmp_path, both, fixed_step=True))
    summary = run_bimix(config)
    assert summary["fixed_step"] == {"step": STEP, "automatic": False, "rows_other_steps": 40}
    assert summary["rows"] == 40
    alone = BiMixLaw(fixed_step=True).fit(runs)
    for d in POWER:
        assert summary["coefficients"][d]["alpha"] == pytest.approx(alpha := alone.coef_.loc[d, "alpha"])
        assert alpha == pytest.approx(POWER[d][1], abs=0.01)
    config.bimix.s_target = 2.0 * STEP
    with pytest.raises(ConfigError, match=r"bimix.s_target: 2,000,000, but the fixed-step law holds only"):
        run_bimix(config)
