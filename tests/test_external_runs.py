"""Proxy runs trained elsewhere, as a new user brings them: import-runs, fit-search, predict-mixture
and bimix without workarounds; every config or input mistake named before Spark starts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_fit_search import make_config, regmix_config, write_mixture_runs, write_runs

from quadmix_spark import cli, core
from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError
from quadmix_spark.pipeline.fit_search import run_fit_search
from quadmix_spark.pipeline.import_runs import format_summary, import_runs
from quadmix_spark.proxy.runs import load_runs as load_proxy_runs


def test_predict_mixture_finds_the_regressor_without_fit_searchs_output_dir(tmp_path, monkeypatch, capsys):
    write_mixture_runs(tmp_path / "runs.parquet", n_runs=60)
    config = regmix_config(tmp_path, n_candidates=2_000)
    summary = run_fit_search(config)
    monkeypatch.chdir(tmp_path)  # predict-mixture's defaults (data/search/...) hold nothing here
    r_star = str(tmp_path / "r_star.yaml")
    capsys.readouterr()
    # r*'s provenance names the regressor fit-search saved
    plain = {"search": {"mode": "regmix"}}
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    assert main(["predict-mixture", "--config", "plain.json", "--mixture", r_star]) == 0
    predicted = float(capsys.readouterr().out.split()[0])
    assert predicted == pytest.approx(summary["theta_star_predicted_loss"], abs=1e-4)
    # uniform names no file: --regressor takes fit-search's summary JSON (or the pickle, or its folder)
    summary_json = str(tmp_path / "search" / "search_summary.json")
    args = ["predict-mixture", "--config", "plain.json"]
    for regressor in (summary_json, str(tmp_path / "search"), str(tmp_path / "search" / "regressor.pkl")):
        assert main([*args, "--mixture", "uniform", "--regressor", regressor]) == 0
        assert np.isfinite(float(capsys.readouterr().out.split()[0]))
    # nowhere to be found: the message lists every place looked and the ways to name it
    assert main([*args, "--mixture", "uniform"]) == 2
    err = capsys.readouterr().err
    assert "no fitted surrogate (regressor.pkl) found; looked at:\n  data/search/regressor.pkl\n" in err
    assert "data/search/mixture_star.yaml" in err and "--regressor" in err


def no_spark(*args, **kwargs):
    raise AssertionError("the SparkSession started before the error")


def test_import_runs_refuses_mixtures_in_quadmix_mode_before_spark(tmp_path, monkeypatch, capsys):
    """RegMix-shaped runs without search.mode=regmix were stored as θ; now the mode is checked
    against the vectors (a `theta` column of mixtures, or a `mixture` column) before Spark."""
    runs = write_mixture_runs(tmp_path / "runs.parquet", n_runs=30)
    monkeypatch.setattr(cli, "_session", no_spark)
    config = [
        "--set",
        f"search.runs_path={tmp_path / 'runs.parquet'}",
        "--set",
        f"warehouse={tmp_path / 'wh'}",
    ]
    assert main(["import-runs", "--config", str(write_plain(tmp_path)), *config]) == 2
    err = capsys.readouterr().err
    assert "search.mode: quadmix stores θ, but the 30 runs at" in err
    assert "carry mixtures (5 shares ≥ 0 summing to 1" in err and "set search.mode=regmix" in err
    runs.rename(columns={"theta": "mixture"}).to_parquet(tmp_path / "runs.parquet")
    assert main(["import-runs", "--config", str(write_plain(tmp_path)), *config]) == 2
    assert "carry a `mixture` column (RegMix runs), not θ: set search.mode=regmix" in capsys.readouterr().err
    # θ runs in RegMix mode: refused the other way round
    write_runs(tmp_path / "runs.parquet", n_runs=30)
    assert main(["import-runs", "--config", str(write_plain(tmp_path, mode="regmix")), *config]) == 2
    assert "search.mode: regmix stores mixtures, but 30 of the 30 runs" in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()


def write_plain(tmp_path, **search):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"search": search}))
    return path


def test_fit_search_names_runs_imported_in_the_other_mode(spark, tmp_path):
    write_runs(tmp_path / "runs.parquet", n_runs=30)  # θ runs, imported as θ
    config = make_config(tmp_path)
    config.warehouse = str(tmp_path / "warehouse")
    import_runs(spark, config)
    config = regmix_config(tmp_path)
    config.warehouse = str(tmp_path / "warehouse")
    config.search.runs_path, config.search.runs_format = config.table_path("proxy_runs"), "delta"
    with pytest.raises(ConfigError) as err:
        run_fit_search(config, spark)
    assert "search.mode: none of the 30 ok runs in " in str(err.value)
    assert "has a mixture vector (regmix mode reads it); 30 carry a theta vector" in str(err.value)
    assert "set search.mode=quadmix, or import the runs again with the right search.mode" in str(err.value)


def test_reimport_counts_inserted_updated_unchanged_and_refuses_changed_losses(spark, tmp_path):
    runs = write_mixture_runs(tmp_path / "runs.parquet", n_runs=30).rename(columns={"theta": "mixture"})
    runs.to_parquet(tmp_path / "runs.parquet")  # a `mixture` column, RegMix mode
    config = regmix_config(tmp_path)
    config.warehouse = str(tmp_path / "warehouse")
    table = config.table_path("proxy_runs")
    first = import_runs(spark, config)
    assert (first.runs, first.inserted, first.updated, first.unchanged) == (30, 30, 0, 0)
    again = import_runs(spark, config)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 30)
    assert format_summary(again).endswith(": 0 inserted, 0 updated, 30 unchanged")
    runs.loc[runs.run_id.isin(["m0003", "m0011"]), "loss"] += 0.25  # corrected losses for two ok runs
    runs.to_parquet(tmp_path / "runs.parquet")
    version = spark.sql(f"DESCRIBE HISTORY delta.`{table}`").count()
    with pytest.raises(
        ConfigError, match=r"import-runs: 2 run\(s\) recorded ok .* \(e.g. m0003, m0011\).*--replace"
    ):
        import_runs(spark, config)
    assert spark.sql(f"DESCRIBE HISTORY delta.`{table}`").count() == version  # nothing written
    replaced = import_runs(spark, config, replace=True)
    assert (replaced.inserted, replaced.updated, replaced.unchanged) == (0, 2, 28)
    row = load_proxy_runs(spark, table).set_index("run_id").loc["m0003"]
    assert row["losses"][0]["loss"] == pytest.approx(runs.set_index("run_id").loc["m0003", "loss"])


def test_regmix_fit_search_on_external_runs_needs_no_stats_and_names_missing_domains_before_spark(
    tmp_path, monkeypatch, capsys
):
    write_mixture_runs(tmp_path / "runs.parquet", n_runs=60)
    monkeypatch.setattr(cli, "_session", no_spark)
    search = {
        "mode": "regmix",  # prior: natural, the default
        "runs_path": str(tmp_path / "runs.parquet"),
        "template_params": str(tmp_path / "no-template.yaml"),
        "output_dir": str(tmp_path / "search"),
        "output_mixture": str(tmp_path / "r_star.yaml"),
        "n_candidates": 2_000,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"warehouse": str(tmp_path / "warehouse"), "search": search}))
    assert main(["fit-search", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "search.domains: RegMix mode needs the order of the runs' mixture vectors (the domain of each entry)"
        in err
    )
    assert "set search.domains=[dom1,dom2,...]" in err and "(search.prior=natural names none)" in err
    # with the domains named, natural has no stats table to read: uniform, said once
    domains = "search.domains=[web,code,books,wiki,news]"
    assert main(["fit-search", "--config", str(path), "--set", domains]) == 0
    captured = capsys.readouterr()
    note = "search.prior: natural reads the pool's token shares, and there is no stats table at "
    assert (captured.out + captured.err).count(note) == 1 and note in captured.out
    r_star = core.Mixture.from_file(tmp_path / "r_star.yaml")
    assert r_star.provenance["inputs"]["prior"] == "uniform"


def test_the_warning_compares_the_best_run_predicted_as_well_as_observed(tmp_path):
    runs = write_mixture_runs(tmp_path / "runs.parquet", n_runs=60)
    runs.loc[runs.run_id == "m0005", "loss"] = 1.0  # one lucky run no smooth surrogate reaches
    runs.to_parquet(tmp_path / "runs.parquet")
    summary = run_fit_search(regmix_config(tmp_path, regressor=["linear"], n_candidates=2_000))
    predicted, star = summary["best_run_predicted_loss"], summary["theta_star_predicted_loss"]
    assert summary["best_observed_run"] == "m0005" and predicted > star  # the surrogate prefers r*
    # The run is far below what the surrogate reaches: counted as the run's own, beyond the noise.
    estimate = summary["best_run_estimate"]
    assert estimate == pytest.approx(1.0 + 2 * summary["cv_error"], abs=1e-4) and estimate < star
    warning = summary["warning"]
    assert "not better than the best run m0005 by more than" in warning
    assert (
        f"the same surrogate predicts that run at {predicted:.4f} (observed {1.0:.4f}; {estimate:.4f}"
        in warning
    )
    assert "the run's observed loss is below what the surrogate reaches" in warning
