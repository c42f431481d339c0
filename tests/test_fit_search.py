"""fit-search on imported proxy runs: the regressor learns a known loss surface and θ* beats the runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.pipeline.fit_search import run_fit_search, run_targets
from quadmix_spark.pipeline.import_runs import import_runs
from quadmix_spark.proxy.runs import load_runs as load_proxy_runs

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
    runs = write_runs(tmp_path / "runs.parquet")
    summary = run_fit_search(make_config(tmp_path, weights={"target": 1.0}))
    assert summary["runs"] == 300 and summary["held_out"] > 10
    assert summary["metrics"]["spearman"] > 0.8
    theta_star = core.load_params(tmp_path / "theta_star.yaml")  # a file quadmix select accepts
    true_star = true_loss(theta_star.to_vector()[None, :])[0]
    final = runs[(runs.step_tokens == 2_000_000) & (runs.eval_set == "target")]
    assert true_star < final["loss"].quantile(0.05)  # better than 95% of the proxy runs
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
    assert import_runs(spark, config) == 60
    assert import_runs(spark, config) == 60  # a repeated import changes nothing
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
