"""Proxy runs trained elsewhere, as a new user brings them: import-runs, fit-search, predict-mixture
and bimix without workarounds; every config or input mistake named before Spark starts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_fit_search import regmix_config, write_mixture_runs

from quadmix_spark.cli import main
from quadmix_spark.pipeline.fit_search import run_fit_search


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
