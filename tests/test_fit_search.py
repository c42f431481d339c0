"""fit-search on imported proxy runs: the regressor learns a known loss surface and θ* beats the runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict, load_config
from quadmix_spark.pipeline.fit_search import best_run_estimate, run_fit_search, run_targets
from quadmix_spark.pipeline.import_runs import import_runs
from quadmix_spark.proxy.runs import load_runs as load_proxy_runs
from quadmix_spark.search import REGRESSORS, Regressor, register

DOMAINS, SCORERS = ("a", "b", "c"), ("s1", "s2")


def true_loss(theta: np.ndarray) -> np.ndarray:
    """A loss surface over θ: weight on s1 helps in domain a, and ω of domain b should be 0.08."""
    block = theta.reshape(len(theta), len(DOMAINS), len(SCORERS) + 4)
    return 3.0 - 0.3 * block[:, 0, 0] + 40.0 * (block[:, 1, len(SCORERS) + 1] - 0.08) ** 2


def write_runs(path, n_runs: int = 300, seed: int = 0) -> pd.DataFrame:
    sampler = core.ParamSampler(DOMAINS, SCORERS)
    theta = sampler.sample(n_runs, seed)
    loss = true_loss(theta)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_runs):
        for eval_set, offset in (("target", 0.0), ("heldout_web", 0.5)):
            for step, scale in ((1_000_000, 1.2), (2_000_000, 1.0)):
                noisy = (loss[i] + offset) * scale + rng.normal(0, 0.003)
                rows.append((f"run-{i:04d}", theta[i].tolist(), eval_set, step, noisy))
    runs = pd.DataFrame(rows, columns=["run_id", "theta", "eval_set", "step_tokens", "loss"])
    runs.to_parquet(path)
    return runs


def make_config(tmp_path, weights=None, **search) -> PipelineConfig:
    template = tmp_path / "template.yaml"
    core.save_params(core.uniform(DOMAINS, SCORERS), template)
    return from_dict(
        PipelineConfig,
        {
            "search": {
                "runs_path": str(tmp_path / "runs.parquet"),
                "template_params": str(template),
                "output_params": str(tmp_path / "theta_star.yaml"),
                "output_dir": str(tmp_path / "search"),
                "n_candidates": 20_000,
                **search,
            },
            "targets": {"weights": weights or {}},
        },
    )


def test_fit_search_finds_a_better_theta(tmp_path):
    runs = write_runs(tmp_path / "runs.parquet", n_runs=80)
    summary = run_fit_search(make_config(tmp_path, weights={"target": 1.0}))
    assert summary["runs"] == 80 and summary["held_out"] == 0  # 5-fold CV scores every run
    assert summary["cv"]["k"] == 5 and summary["cv"]["repeats"] == 3
    families = {row["family"] for row in summary["cv"]["table"]}
    assert {"lightgbm", "loglinear", "gp", "linear"} <= families and summary["regressor"] in families
    assert summary["metrics"]["spearman"] > 0.8 and summary["metrics"]["n"] == 80
    assert summary["output_source"] == "searched candidate" and "warning" not in summary
    # 4 families × 15 CV fits and the search ran on the driver: its CPU seconds are the cost.
    assert summary["cost"]["driver_cpu_s"] > 0.5 and summary["cost"]["tasks"] == 0
    theta_star = core.load_params(tmp_path / "theta_star.yaml")  # a file quadmix select accepts
    true_star = true_loss(theta_star.to_vector()[None, :])[0]
    final = runs[(runs.step_tokens == 2_000_000) & (runs.eval_set == "target")]
    assert true_star < final["loss"].min() - 0.01  # better than every proxy run
    assert abs(summary["theta_star_predicted_loss"] - true_star) < 0.05
    assert (tmp_path / "search" / "predicted_vs_actual.png").stat().st_size > 5_000


def test_layout_mismatch_and_missing_columns_are_config_errors(tmp_path):
    write_runs(tmp_path / "runs.parquet", n_runs=30)
    config = make_config(tmp_path)
    core.save_params(core.uniform(("a", "b"), SCORERS), config.search.template_params)
    with pytest.raises(ConfigError, match="θ vectors have 18 entries"):
        run_fit_search(config)
    with pytest.raises(ConfigError, match=r"targets.weights: \['other'\] not among"):
        run_fit_search(make_config(tmp_path, weights={"other": 1.0}))
    pd.DataFrame({"run_id": ["x"], "loss": [1.0]}).to_parquet(tmp_path / "runs.parquet")
    with pytest.raises(ConfigError, match=r"column\(s\) \['theta', 'eval_set', 'step_tokens'\] missing"):
        run_fit_search(make_config(tmp_path))


def test_weighted_target_combines_final_losses():
    runs = pd.DataFrame(
        [
            ("r1", [0.0], "a", 1, 9.0),
            ("r1", [0.0], "a", 2, 2.0),
            ("r1", [0.0], "b", 2, 4.0),
            ("r2", [1.0], "a", 5, 1.0),
            ("r2", [1.0], "b", 5, 3.0),
        ],
        columns=["run_id", "theta", "eval_set", "step_tokens", "loss"],
    )
    ids, X, y = run_targets(runs, {})
    assert ids == ["r1", "r2"] and X.tolist() == [[0.0], [1.0]] and y.tolist() == [3.0, 2.0]
    _, _, y = run_targets(runs, {"a": 3.0, "b": 1.0})
    assert y.tolist() == [2.5, 1.5]


def test_cli_csv_runs(tmp_path, capsys):
    runs = write_runs(tmp_path / "runs.parquet", n_runs=120)
    runs.assign(theta=runs["theta"].map(json.dumps)).to_csv(tmp_path / "runs.csv", index=False)
    config = tmp_path / "c.yaml"
    cfg = make_config(tmp_path)
    config.write_text(
        json.dumps(
            {"search": {**cfg.search.__dict__, "runs_path": str(tmp_path / "runs.csv"), "runs_format": "csv"}}
        )
    )
    assert main(["fit-search", "--config", str(config)]) == 0
    assert "fit-search: 120 runs" in capsys.readouterr().out


def test_external_runs_import_into_the_runs_table_and_fit(spark, tmp_path):
    runs = write_runs(tmp_path / "runs.parquet", n_runs=60)
    config = make_config(tmp_path, weights={"target": 1.0})
    config.warehouse = str(tmp_path / "warehouse")
    assert import_runs(spark, config).inserted == 60
    assert import_runs(spark, config).unchanged == 60  # a repeated import changes nothing
    table = load_proxy_runs(spark, config.table_path("proxy_runs"))
    assert len(table) == 60 and set(table["kind"]) == {"external"} and set(table["trainer"]) == {"external"}
    row = table.set_index("run_id").loc["run-0007"]
    mine = runs[runs.run_id == "run-0007"]
    assert row["theta"].tolist() == mine["theta"].iloc[0]
    assert sorted((x["eval_set"], x["step_tokens"], x["loss"]) for x in row["losses"]) == sorted(
        zip(mine.eval_set, mine.step_tokens, mine.loss, strict=True)
    )
    config.search.runs_path, config.search.runs_format = config.table_path("proxy_runs"), "delta"
    summary = run_fit_search(config, spark)  # fit-search reads the runs table as it is
    assert summary["runs"] == 60


# -- RegMix mode ---------------------------------------------------------------------------------

MIX_DOMAINS = ["web", "code", "books", "wiki", "news"]
NATURAL = np.array([0.5, 0.2, 0.15, 0.1, 0.05])


def mixture_loss(r: np.ndarray) -> np.ndarray:
    """Best near (0.35, 0.3, 0.15, 0.15, 0.05), with an interaction between code and books."""
    best = np.array([0.35, 0.3, 0.15, 0.15, 0.05])
    return 3.0 + 4.0 * ((r - best) ** 2).sum(axis=1) - 1.5 * r[:, 1] * r[:, 2]


def write_mixture_runs(path, n_runs: int = 200, seed: int = 0, decimals: int | None = 3) -> pd.DataFrame:
    """RegMix-shaped runs: mixtures drawn around the natural shares, published rounded."""
    from quadmix_spark.search.candidates import RegMixSampler

    r = RegMixSampler(MIX_DOMAINS, NATURAL).sample(n_runs, seed)
    loss = mixture_loss(r) + np.random.default_rng(seed).normal(0, 0.002, n_runs)
    shown = r.round(decimals) if decimals is not None else r
    rows = [(f"m{i:04d}", shown[i].tolist(), "target", 1_000_000, float(loss[i])) for i in range(n_runs)]
    runs = pd.DataFrame(rows, columns=["run_id", "theta", "eval_set", "step_tokens", "loss"])
    runs.to_parquet(path)
    return runs


def regmix_config(tmp_path, **search) -> PipelineConfig:
    prior = core.Mixture.from_shares(dict(zip(MIX_DOMAINS, NATURAL, strict=True)), {"method": "natural"})
    return from_dict(
        PipelineConfig,
        {
            "search": {
                "mode": "regmix",
                "runs_path": str(tmp_path / "runs.parquet"),
                "template_params": str(tmp_path / "no-template.yaml"),  # RegMix mode needs none
                "prior": str(prior.to_file(tmp_path / "prior.yaml")),
                "domains": MIX_DOMAINS,
                "output_mixture": str(tmp_path / "r_star.yaml"),
                "output_dir": str(tmp_path / "search"),
                "n_candidates": 20_000,
                **search,
            }
        },
    )


def test_regmix_mode_renormalises_rounded_mixtures_and_writes_a_mixture_file(tmp_path, capsys):
    runs = write_mixture_runs(tmp_path / "runs.parquet")
    sums = runs["theta"].map(sum)
    rounded = int((sums != 1.0).sum())
    assert rounded > 50  # three decimals: most rows do not sum to exactly 1
    summary = run_fit_search(regmix_config(tmp_path))
    assert summary["renormalised_runs"] == rounded
    assert summary["metrics"]["spearman"] > 0.8
    r_star = core.Mixture.from_file(tmp_path / "r_star.yaml")
    assert r_star.provenance["method"] == "regmix" and r_star.provenance["fit"]["runs"] == 200
    true_star = mixture_loss(r_star.as_vector(MIX_DOMAINS)[None, :])[0]
    assert true_star < mixture_loss(np.vstack(runs["theta"].map(np.asarray))).min()  # beats every run
    assert "warning" not in summary
    # the saved regressor scores mixture files later
    args = ["--config", str(write_config(tmp_path)), "--mixture", str(tmp_path / "r_star.yaml")]
    assert main(["predict-mixture", *args]) == 0
    predicted = float(capsys.readouterr().out.split()[0])
    assert predicted == pytest.approx(summary["theta_star_predicted_loss"], abs=1e-4)


def write_config(tmp_path):
    path = tmp_path / "config.json"
    cfg = regmix_config(tmp_path).search
    path.write_text(json.dumps({"search": cfg.__dict__}))
    return path


def test_regmix_candidates_stay_near_the_tempered_prior_and_under_the_usage_cap():
    from quadmix_spark.search.candidates import RegMixSampler

    sampler = RegMixSampler(MIX_DOMAINS, NATURAL, temperature=0.5, max_usage=2.0)
    draws = sampler.sample(5_000, seed=1)
    assert draws.shape == (5_000, 5)
    np.testing.assert_allclose(draws.sum(axis=1), 1.0)
    assert (draws <= np.minimum(2.0 * NATURAL, 1.0) + 1e-12).all()
    tempered = NATURAL**0.5 / (NATURAL**0.5).sum()
    np.testing.assert_allclose(sampler.concentration, tempered)
    np.testing.assert_array_equal(draws, sampler.sample(5_000, seed=1))
    # Without the cap, every strength's Dirichlet has the tempered prior as its mean.
    free = RegMixSampler(MIX_DOMAINS, NATURAL, temperature=0.5, max_usage=None).sample(40_000, seed=2)
    np.testing.assert_allclose(free.mean(axis=0), tempered, atol=0.01)
    assert tempered[4] > 2 * NATURAL[4]  # temperature 0.5 lifts the smallest domain


def test_regmix_mode_errors_name_the_key(tmp_path):
    write_mixture_runs(tmp_path / "runs.parquet", n_runs=40)
    with pytest.raises(ConfigError, match="search.domains: RegMix mode needs the order"):
        run_fit_search(regmix_config(tmp_path, domains=[], prior="uniform"))
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    runs["theta"] = [[0.5, 0.5, 0.5, 0.0, 0.0] if i == 3 else t for i, t in enumerate(runs["theta"])]
    runs.to_parquet(tmp_path / "runs.parquet")
    with pytest.raises(ConfigError, match=r"1 run\(s\) have no valid mixture .*m0003 \(sum 1\.5\)"):
        run_fit_search(regmix_config(tmp_path))


def test_named_holdout_runs_and_a_search_that_loses_to_its_best_run(tmp_path):
    runs = write_mixture_runs(tmp_path / "runs.parquet", n_runs=60)
    runs.loc[runs.run_id == "m0005", "loss"] = 1.0  # one lucky run no smooth surrogate reaches
    runs.to_parquet(tmp_path / "runs.parquet")
    named = tmp_path / "holdout.txt"
    named.write_text("m0001\nm0002\nm0003\n\nm0010\n")
    summary = run_fit_search(regmix_config(tmp_path, holdout_runs=str(named), regressor=["linear", "gp"]))
    assert summary["held_out"] == 4 and summary["held_out_metrics"]["n"] == 4
    assert summary["metrics"]["n"] == 56  # the held-out runs are kept out of the CV too
    assert summary["best_observed_run"] == "m0005"
    assert summary["theta_star_predicted_loss"] > 1.5
    # not predicted better than the best run: the best run's own mixture is written, with a warning
    assert summary["output_source"] == "best run m0005"
    assert "not better than the best run m0005" in summary["warning"]
    lucky = np.asarray(runs.set_index("run_id").loc["m0005", "theta"])
    r_star = core.Mixture.from_file(tmp_path / "r_star.yaml").as_vector(MIX_DOMAINS)
    np.testing.assert_allclose(r_star, lucky / lucky.sum(), atol=1e-12)
    kept = run_fit_search(
        regmix_config(tmp_path, holdout_runs=str(named), regressor=["linear", "gp"], keep_candidate=True)
    )
    assert kept["output_source"] == "searched candidate" and "keep_candidate" in kept["warning"]
    r_star = core.Mixture.from_file(tmp_path / "r_star.yaml").as_vector(MIX_DOMAINS)
    assert np.abs(r_star - lucky / lucky.sum()).max() > 0.01
    named.write_text("m0001\nnot-a-run\n")
    with pytest.raises(ConfigError, match=r"search.holdout_runs: 1 ids are not runs, e.g. \['not-a-run'\]"):
        run_fit_search(regmix_config(tmp_path, holdout_runs=str(named)))


def test_regmix_runs_import_then_fit_from_the_runs_table(spark, tmp_path):
    write_mixture_runs(tmp_path / "runs.parquet", n_runs=60)
    config = regmix_config(tmp_path)
    config.warehouse = str(tmp_path / "warehouse")
    assert import_runs(spark, config).inserted == 60
    table = load_proxy_runs(spark, config.table_path("proxy_runs"))
    assert all(len(m) == 5 for m in table["mixture"])
    # an experiment's evaluation runs share the table and carry no mixture: fit-search skips them
    from quadmix_spark.proxy.runs import RunSpec, record_runs

    ok = {"status": "ok", "error": None, "n_train_tokens": 10, "n_docs": 1, "attempt": 0, "seconds": 0.0}
    ok["losses"] = [{"eval_set": "target", "step_tokens": 10, "loss": 9.0}]
    record_runs(spark, config.table_path("proxy_runs"), [(RunSpec("eval-run", "eval"), ok)], trainer="ngram")
    config.search.runs_path, config.search.runs_format = config.table_path("proxy_runs"), "delta"
    summary = run_fit_search(config, spark)
    assert summary["runs"] == 60 and summary["renormalised_runs"] > 0


def test_regmix_inputs_and_outputs_at_file_uris_give_the_local_result(spark, tmp_path, capsys):
    """Runs, prior, held-out list and template read from URIs (a folder with spaces) through Spark's
    Hadoop FileSystem, outputs written there: the same r* and fit as from local paths."""
    local_dir, uri_dir = tmp_path / "local", tmp_path / "uri dir"
    for folder in (local_dir, uri_dir):
        folder.mkdir()
        write_mixture_runs(folder / "runs.parquet", n_runs=60)
        (folder / "holdout.txt").write_text("m0001\nm0002\nm0003\n")
    local = run_fit_search(regmix_config(local_dir, holdout_runs=str(local_dir / "holdout.txt")))

    def uri(name: str) -> str:
        return f"file://{uri_dir}/{name}"

    config = regmix_config(uri_dir)
    for key, name in [
        ("runs_path", "runs.parquet"),
        ("prior", "prior.yaml"),
        ("holdout_runs", "holdout.txt"),
        ("output_mixture", "out/r_star.yaml"),
        ("output_dir", "out/search"),
    ]:
        setattr(config.search, key, uri(name))
    remote = run_fit_search(config, spark)
    assert remote["held_out"] == local["held_out"] == 3
    assert remote["metrics"] == local["metrics"]
    r_star = core.Mixture.from_file(uri_dir / "out" / "r_star.yaml")
    assert r_star.shares == core.Mixture.from_file(local_dir / "r_star.yaml").shares
    assert (uri_dir / "out" / "search" / "regressor.pkl").is_file()
    # predict-mixture reads the regressor and the mixture file through the same URIs
    assert (
        main(
            [
                "predict-mixture",
                "--set",
                f"search.output_dir={uri('out/search')}",
                "--mixture",
                uri("out/r_star.yaml"),
            ]
        )
        == 0
    )
    assert float(capsys.readouterr().out.split()[0]) == pytest.approx(
        remote["theta_star_predicted_loss"], abs=1e-4
    )
    config.search.holdout_runs = uri("missing.txt")
    with pytest.raises(ConfigError, match="search.holdout_runs: file not found: file://"):
        run_fit_search(config, spark)


class Quadratic(Regressor):
    """A surrogate family added from this module alone: least squares on features and squares."""

    name = "test-fit-quadratic"

    def _fit(self, X, y):
        self.coef_ = np.linalg.lstsq(np.hstack([np.ones((len(X), 1)), X, X**2]), y, rcond=None)[0]

    def _predict(self, X):
        return np.hstack([np.ones((len(X), 1)), X, X**2]) @ self.coef_


def test_a_family_registered_in_a_test_module_is_used_by_fit_search(tmp_path):
    register(Quadratic)
    try:
        runs = write_runs(tmp_path / "runs.parquet", n_runs=80)
        summary = run_fit_search(
            make_config(tmp_path, weights={"target": 1.0}, regressor="test-fit-quadratic")
        )
        assert summary["regressor"] == "test-fit-quadratic"
        assert [
            row["family"] for row in summary["cv"]["table"] if row["family"] != "constant (the mean)"
        ] == ["test-fit-quadratic"]
        # the truth is quadratic in θ: the family ranks the runs almost perfectly
        assert summary["metrics"]["spearman"] > 0.95
        theta_star = core.load_params(tmp_path / "theta_star.yaml")
        final = runs[(runs.step_tokens == 2_000_000) & (runs.eval_set == "target")]
        assert true_loss(theta_star.to_vector()[None, :])[0] < final["loss"].min()
    finally:
        REGRESSORS.unregister("test-fit-quadratic")


def test_regressor_names_are_checked(tmp_path):
    write_runs(tmp_path / "runs.parquet", n_runs=30)
    with pytest.raises(
        ConfigError, match=r"search.regressor: \['forest'\] not among auto and the registered"
    ):
        run_fit_search(make_config(tmp_path, regressor=["linear", "forest"]))
    with pytest.raises(ConfigError, match="search.regressor_params.forest: not a registered family"):
        run_fit_search(make_config(tmp_path, regressor_params={"forest": {}}))
    path = tmp_path / "c.yaml"
    path.write_text("search:\n  regressor: gp\n")
    assert load_config(path).search.regressor == "gp"
    assert load_config(path, ["search.regressor=[gp, linear]"]).search.regressor == ["gp", "linear"]
    with pytest.raises(ConfigError, match="search.cv_folds must be at least 2"):
        load_config(path, ["search.cv_folds=1"])
    with pytest.raises(ConfigError, match="search.regressor: an empty list"):
        load_config(path, ["search.regressor=[]"])


def test_best_run_estimate_counts_only_the_residual_beyond_the_noise():
    assert best_run_estimate(observed=2.9, predicted=3.0, mae=0.1) == pytest.approx(3.0)  # within 2 MAE
    assert best_run_estimate(observed=1.0, predicted=2.0, mae=0.1) == pytest.approx(
        1.2
    )  # a run it can't reach
    assert best_run_estimate(observed=3.5, predicted=3.0, mae=0.1) == pytest.approx(3.3)


def test_the_candidate_is_judged_against_the_best_runs_prediction_and_the_margin(tmp_path):
    """40 runs of a quadratic law that ridge fits loosely: the lowest observed loss is 1.2 CV MAEs
    below ridge's prediction for that run (noise, to ridge), and r* is predicted 0.7 MAE below
    that prediction. Judged against the observed loss, r* would lose; against the prediction it
    wins by 0.7 MAE: written with a margin of 0.5 MAE, not with the default 1."""
    from quadmix_spark.search.candidates import RegMixSampler

    r = RegMixSampler(MIX_DOMAINS, NATURAL).sample(40, 0)
    loss = mixture_loss(r) + np.random.default_rng(0).normal(0, 0.01, 40)
    rows = [(f"m{i:04d}", r[i].round(3).tolist(), "target", 1_000_000, float(loss[i])) for i in range(40)]
    pd.DataFrame(rows, columns=["run_id", "theta", "eval_set", "step_tokens", "loss"]).to_parquet(
        tmp_path / "runs.parquet"
    )
    strict = run_fit_search(regmix_config(tmp_path, regressor=["linear"]))
    mae, predicted = strict["cv_error"], strict["best_run_predicted_loss"]
    assert strict["evidence_margin"] == pytest.approx(mae, abs=1e-5)  # the default: 1 MAE
    assert -2 * mae < strict["best_observed_loss"] - predicted < -mae  # lucky, within the noise
    assert strict["best_run_estimate"] == predicted
    gain = predicted - strict["theta_star_predicted_loss"]
    assert 0.5 * mae < gain < mae and strict["best_observed_loss"] < strict["theta_star_predicted_loss"]
    assert strict["output_source"] == f"best run {strict['best_observed_run']}"
    assert f"the same surrogate predicts that run at {predicted:.4f}" in strict["warning"]
    loose = run_fit_search(regmix_config(tmp_path, regressor=["linear"], evidence_margin=0.5))
    assert loose["output_source"] == "searched candidate" and "warning" not in loose
