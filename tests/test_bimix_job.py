"""The bimix job end to end: proxy runs whose losses follow a known BiMix law → fit → r* file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from quadmix_spark import cli, core
from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.mixing.bimix import BiMixLaw, synthetic_runs
from quadmix_spark.mixing.bimix_optimum import optimal_mixture, share_caps
from quadmix_spark.pipeline.bimix import domain_weights, run_bimix, runs_table_long
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.proxy.runs import RunSpec, record_runs

DOMAINS = ["news", "code", "arts", "science"]  # the runs' vector order (not sorted on purpose)
S_REF = 300_000
STEPS = [37_500, 75_000, 150_000, 300_000]  # proxy.n_checkpoints = 4 at token_budget 300k
BETA = {"news": 0.5, "code": 0.7, "arts": 0.4, "science": 0.6}
C = {"news": 0.6, "code": 0.5, "arts": 0.7, "science": 0.55}
TRUE = BiMixLaw.from_coefficients(
    {
        d: (a, alpha, (1 - C[d]) * S_REF ** BETA[d], BETA[d], C[d])
        for d, a, alpha in (
            ("news", 3.2, 0.08),
            ("code", 2.4, 0.15),
            ("arts", 3.6, 0.05),
            ("science", 3.0, 0.2),
        )
    }
)
POOL_TOKENS = {"news": 400_000, "code": 300_000, "arts": 350_000, "science": 5_000}  # science is scarce
NOISE = 0.001


def law_runs(n_mixtures: int = 10, seed: int = 0) -> pd.DataFrame:
    """Long table from the true law with lognormal noise, plus one run with no code at all."""
    rng = np.random.default_rng(seed)
    mixtures = rng.dirichlet(np.full(len(TRUE.domains_), 2.0), n_mixtures)  # in TRUE.domains_ order
    runs = synthetic_runs(TRUE, mixtures, STEPS, noise=NOISE, seed=seed)
    zero = {"news": 0.4, "code": 0.0, "arts": 0.3, "science": 0.3}
    r = np.array([zero[d] for d in TRUE.domains_])
    extra = synthetic_runs(TRUE, np.where(r > 0, r, 1.0), STEPS, noise=NOISE, seed=seed + 1)
    extra["run_id"] = "run-nocode"
    extra["r"] = extra["domain"].map(zero)
    extra.loc[extra["domain"] == "code", "loss"] = 9.0  # the law diverges at r = 0: left out
    return pd.concat([runs, extra], ignore_index=True)


def write_proxy_runs(spark, path: str, long: pd.DataFrame, prefix: str = "heldout:") -> None:
    """One proxy_runs row per run: the mixture in DOMAINS order, losses on heldout:<domain> (or
    `prefix` + domain) and a target set the job ignores; one failed run."""
    results = []
    for run_id, rows in long.groupby("run_id", sort=True):
        shares = rows.groupby("domain")["r"].first()
        losses = [
            {"eval_set": f"{prefix}{r.domain}", "step_tokens": int(r.step_tokens), "loss": float(r.loss)}
            for r in rows.itertuples()
        ] + [{"eval_set": "target", "step_tokens": s, "loss": 5.0} for s in STEPS]
        spec = RunSpec(str(run_id), "proxy", mixture=tuple(float(shares[d]) for d in DOMAINS))
        result = {"status": "ok", "error": None, "n_train_tokens": S_REF, "n_docs": 10, "losses": losses}
        results.append((spec, result | {"attempt": 0, "seconds": 1.0}))
    failed = {"status": "failed", "error": "boom", "n_train_tokens": 0, "n_docs": 0, "losses": []}
    results.append((RunSpec("run-failed", mixture=(0.25,) * 4), failed | {"attempt": 0, "seconds": 0.0}))
    record_runs(spark, path, results, trainer="ngram")


def write_stats(spark, config: PipelineConfig) -> None:
    """A tiny annotated table with POOL_TOKENS per domain, and its stats run."""
    rows = [(f"{d}-{i}", d, tokens // 4, float(i) / 4) for d, tokens in POOL_TOKENS.items() for i in range(4)]
    df = spark.createDataFrame(rows, "id string, domain string, n_tokens long, q double")
    df = df.withColumn("doc_key", F.xxhash64("id")).coalesce(1)
    df.write.format("delta").mode("overwrite").save(config.table_path("annotated"))
    run_stats(spark, config)


def config_dict(tmp_path, **bimix) -> dict:
    return {
        "warehouse": str(tmp_path / "warehouse"),
        "scorers": {"q": "higher_is_better"},
        "search": {"domains": DOMAINS},
        "proxy": {"token_budget": S_REF},
        "select": {"max_repeats": 4},
        "bimix": {
            "output_dir": str(tmp_path / "bimix"),
            "output_mixture": str(tmp_path / "bimix" / "r_star.yaml"),
            **bimix,
        },
    }


def write_config(tmp_path, **bimix):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_dict(tmp_path, **bimix)))
    return str(path)


def true_objective(r: dict[str, float]) -> float:
    return float(TRUE.predict(np.array([r[d] for d in TRUE.domains_]), S_REF).sum())


def test_bimix_job_end_to_end_from_the_runs_table(spark, tmp_path, capsys):
    config = from_dict(PipelineConfig, config_dict(tmp_path))
    write_proxy_runs(spark, config.table_path("proxy_runs"), law_runs())
    write_stats(spark, config)

    assert main(["bimix", "--config", write_config(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "bimix" / "bimix_summary.json").read_text())

    # runs, domains and the r = 0 rows
    assert summary["runs_used"] == 11 and summary["runs_failed"] == 1 and summary["mixtures"] == 11
    assert summary["domains"] == sorted(DOMAINS) and summary["other_eval_sets"] == ["target"]
    assert summary["excluded_zero_share_per_domain"] == {"code": 4}
    assert "11 runs (1 failed, not used)" in out and "4 rows with r = 0 excluded" in out
    for d in DOMAINS:
        assert d in out
    # diagnostics: the fit recovers the law; extrapolation is at the noise level
    assert summary["fit"]["r2_log"] > 0.99
    assert summary["extrapolation"]["mean_rel_error"] < 3 * NOISE
    assert summary["unseen"]["r2_log"] > 0.95 and summary["unseen_skipped"] is None
    assert "extrapolation (last checkpoint of every run)" in out and "unseen mixtures (leave-1" in out
    assert (tmp_path / "bimix" / "bimix_fit.png").stat().st_size > 10_000

    # caps from the stats: science has 5k tokens, 4 repeats of them fill 20k of the 300k budget
    caps = share_caps([POOL_TOKENS[d] for d in TRUE.domains_], S_REF, 4)
    assert summary["caps"]["science"] == pytest.approx(20_000 / S_REF)
    truth = optimal_mixture(TRUE, S_REF, upper=caps)
    assert "science" in truth.at_upper and summary["at_upper"] == ["science"]
    mixture = core.Mixture.from_file(tmp_path / "bimix" / "r_star.yaml")
    assert mixture.provenance["method"] == "bimix" and mixture.provenance["s_target"] == S_REF
    assert mixture.provenance["fit"]["extrapolation_mean_rel_error"] < 3 * NOISE
    assert mixture.provenance["caps"]["science"] == pytest.approx(20_000 / S_REF)
    np.testing.assert_allclose(mixture.as_vector(truth.domains), truth.r, atol=0.01)
    assert true_objective(dict(mixture.shares)) == pytest.approx(truth.objective, rel=1e-4)
    natural = POOL_TOKENS["news"] / sum(POOL_TOKENS.values())
    assert summary["natural"]["news"] == pytest.approx(natural)
    assert f"{mixture.shares['news']:.4f} {natural:>8.4f}" in out  # r* next to the natural share


def test_long_format_runs_without_stats_give_an_uncapped_optimum(tmp_path):
    runs = law_runs(n_mixtures=3, seed=1)
    runs.to_parquet(tmp_path / "runs.parquet")
    config = from_dict(
        PipelineConfig, config_dict(tmp_path, runs_path=str(tmp_path / "runs.parquet"), unseen_k=3)
    )
    summary = run_bimix(config)  # no Spark: a file of runs and no stats table
    assert summary["caps"] is None and "r* is not capped" in summary["caps_note"]
    assert summary["unseen"] is None
    # Its cost: the driver's work only (no Spark session, so no executor figures).
    assert summary["cost"]["driver_cpu_s"] > 0 and summary["cost"]["executor_core_s"] is None
    assert summary["unseen_skipped"] == "4 distinct mixtures: leaving 3 out leaves fewer than 2 to fit on"
    truth = optimal_mixture(TRUE, S_REF)
    r_star = core.Mixture.from_file(tmp_path / "bimix" / "r_star.yaml")
    assert true_objective(dict(r_star.shares)) == pytest.approx(truth.objective, rel=1e-3)


def test_config_errors_name_the_key(tmp_path, capsys):
    assert main(["bimix", "--config", write_config(tmp_path), "--set", "bimix.s_target=-5"]) == 2
    assert "bimix.s_target must be a number of tokens > 0" in capsys.readouterr().err
    assert main(["bimix", "--config", write_config(tmp_path), "--set", "bimix.output_mixture=r.txt"]) == 2
    assert "bimix.output_mixture must end in .yaml" in capsys.readouterr().err
    assert main(["bimix", "--config", write_config(tmp_path, runs_path=str(tmp_path / "none.parquet"))]) == 2
    assert "bimix.runs_path: " in capsys.readouterr().err
    runs = law_runs(n_mixtures=3)
    runs.to_parquet(tmp_path / "runs.parquet")
    config = from_dict(PipelineConfig, config_dict(tmp_path, runs_path=str(tmp_path / "runs.parquet")))
    config.targets.weights = {"heldout:web": 1.0}
    with pytest.raises(ConfigError, match=r"targets.weights: \['heldout:web'\] name no domain of the runs"):
        run_bimix(config)


def no_spark(*args, **kwargs):
    raise AssertionError("the SparkSession started")


def write_runs_config(tmp_path, runs: pd.DataFrame, weights: dict | None = None, name: str = "bimix") -> str:
    """A config reading ``runs`` as a long-format file, with ``targets.weights``."""
    runs.to_parquet(tmp_path / "runs.parquet")
    conf = config_dict(tmp_path, runs_path=str(tmp_path / "runs.parquet"))
    conf["bimix"] |= {
        "output_dir": str(tmp_path / name),
        "output_mixture": str(tmp_path / name / "r_star.yaml"),
    }
    conf["targets"] = {"weights": weights or {}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(conf))
    return str(path)


def test_weights_keyed_by_plain_domain_names_as_in_the_long_format_without_spark(
    tmp_path, monkeypatch, capsys
):
    """The long format's `domain` column (and fit-search's eval sets) name domains plainly: a weight
    keyed `news` is the weight of `heldout:news`; a local runs file without stats needs no Spark."""
    monkeypatch.setattr(cli, "_session", no_spark)
    runs = law_runs(n_mixtures=3, seed=1)
    plain = write_runs_config(tmp_path, runs, {"news": 2.0, "code": 1.0}, name="plain")
    assert main(["bimix", "--config", plain]) == 0
    out = capsys.readouterr().out  # arts and science weigh 0: r* leaves them out, their loss diverges
    assert "(weights: targets.weights)" in out and f"  {'arts':<20} {0:>8.4f}" in out and "       inf" in out
    heldout = write_runs_config(tmp_path, runs, {"heldout:news": 2.0, "heldout:code": 1.0}, name="heldout")
    assert main(["bimix", "--config", heldout]) == 0

    summary = json.loads((tmp_path / "plain" / "bimix_summary.json").read_text())
    assert summary["weights"] == {"arts": 0.0, "code": 1.0, "news": 2.0, "science": 0.0}
    r_star = core.Mixture.from_file(tmp_path / "plain" / "r_star.yaml").shares
    assert core.Mixture.from_file(tmp_path / "heldout" / "r_star.yaml").shares == r_star
    weights = {"news": 2.0, "code": 1.0, "arts": 0.0, "science": 0.0}
    truth = optimal_mixture(TRUE, S_REF, weights=weights)

    def objective(r):
        losses = TRUE.predict(np.array([r[d] for d in TRUE.domains_]), S_REF)
        return float(
            sum(weights[d] * loss for d, loss in zip(TRUE.domains_, losses, strict=True) if weights[d])
        )

    assert objective(r_star) == pytest.approx(truth.objective, rel=1e-3)
    assert objective(r_star) < objective({d: 0.25 for d in DOMAINS})  # the weights moved r*


def test_domain_weights_ignore_the_runs_target_sets_and_refuse_unknown_keys():
    domains = sorted(DOMAINS)
    weights, ignored = domain_weights({"news": 2, "heldout:code": 1, "target": 5}, domains, ["target"])
    assert weights == {"arts": 0.0, "code": 1.0, "news": 2.0, "science": 0.0} and ignored == ["target"]
    with pytest.raises(ConfigError, match=r"targets.weights: \['target'\] name no domain of the runs"):
        domain_weights({"news": 2, "target": 5}, domains)
    with pytest.raises(ConfigError, match="targets.weights: news and heldout:news name one domain"):
        domain_weights({"news": 2, "heldout:news": 1}, domains)


def test_mistakes_in_a_local_runs_file_fail_before_spark_naming_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_session", no_spark)
    runs = law_runs(n_mixtures=3, seed=1)
    path = tmp_path / "runs.parquet"

    def error(frame: pd.DataFrame, weights: dict | None = None) -> str:
        assert main(["bimix", "--config", write_runs_config(tmp_path, frame, weights)]) == 2
        return capsys.readouterr().err

    err = error(runs, {"news": 1.0, "web": 1.0, "heldout:forum": 2.0})
    assert (
        "targets.weights: ['heldout:forum', 'web'] name no domain of the runs; their domains: "
        "['arts', 'code', 'news', 'science'] (key a weight by the domain's name or heldout:<domain>)"
    ) in err
    err = error(runs.drop(columns="loss"))
    assert f"bimix.runs_path: column(s) ['loss'] missing from {path} (its columns: " in err
    assert "BiMix's long format: run_id, domain, r, step_tokens, loss" in err
    err = error(runs.assign(loss=runs["loss"].where(runs["domain"] != "arts", 0.0)))
    assert f"bimix.runs_path: {path}: runs.loss must be > 0" in err
    few_steps = runs[runs["step_tokens"] >= STEPS[2]]
    err = error(few_steps)
    assert f"bimix.runs_path: {path}: domain 'arts' cannot be fitted: " in err
    assert "fewer than 3 distinct steps (β and C are not determined)" in err
    assert not (tmp_path / "bimix").exists()


def test_long_format_runs_at_a_file_uri_give_the_local_optimum(spark, tmp_path):
    runs = law_runs(n_mixtures=3, seed=1)
    (tmp_path / "in dir").mkdir()
    runs.to_parquet(tmp_path / "in dir" / "runs.parquet")
    local = from_dict(
        PipelineConfig, config_dict(tmp_path / "local", runs_path=str(tmp_path / "in dir" / "runs.parquet"))
    )
    run_bimix(local)
    remote = from_dict(
        PipelineConfig,
        config_dict(
            tmp_path / "remote",
            runs_path=f"file://{tmp_path}/in dir/runs.parquet",
            output_dir=f"file://{tmp_path}/out dir",
            output_mixture=f"file://{tmp_path}/out dir/r_star.yaml",
        ),
    )
    run_bimix(remote, spark)
    expected = core.Mixture.from_file(tmp_path / "local" / "bimix" / "r_star.yaml").shares
    assert core.Mixture.from_file(tmp_path / "out dir" / "r_star.yaml").shares == expected
    remote.bimix.runs_path = f"file://{tmp_path}/in dir/none.parquet"
    with pytest.raises(ConfigError, match="bimix.runs_path: file not found: file://"):
        run_bimix(remote, spark)


def test_imported_runs_with_eval_sets_named_by_their_domain(spark, tmp_path, capsys):
    """A RegMix swarm names its per-domain validation sets by the domain (`news`, not
    `heldout:news`); imported as they are, the runs table gives bimix those losses, with
    fit-search's weights keyed by the same names."""
    config = from_dict(PipelineConfig, config_dict(tmp_path))
    write_proxy_runs(spark, config.table_path("proxy_runs"), law_runs(), prefix="")
    conf = config_dict(tmp_path)
    conf["targets"] = {"weights": {"news": 2.0, "code": 1.0}}
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(conf))
    assert main(["bimix", "--config", str(path)]) == 0
    assert "11 runs (1 failed, not used)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "bimix" / "bimix_summary.json").read_text())
    assert summary["domains"] == sorted(DOMAINS) and summary["other_eval_sets"] == ["target"]
    assert summary["fit"]["r2_log"] > 0.99 and summary["excluded_zero_share_per_domain"] == {"code": 4}
    assert summary["weights"] == {"arts": 0.0, "code": 1.0, "news": 2.0, "science": 0.0}


def test_a_run_with_heldout_sets_takes_no_plain_named_set_as_a_domains_loss():
    runs = pd.DataFrame(
        {
            "run_id": ["here", "elsewhere"],
            "status": ["ok", "ok"],
            "mixture": [[0.5, 0.5], [0.5, 0.5]],
            "losses": [
                [
                    {"eval_set": "heldout:news", "step_tokens": 10, "loss": 3.0},
                    {"eval_set": "code", "step_tokens": 10, "loss": 9.0},  # a target set named like a domain
                ],
                [
                    {"eval_set": "news", "step_tokens": 10, "loss": 3.5},
                    {"eval_set": "code", "step_tokens": 10, "loss": 2.5},
                ],
            ],
        }
    )
    long, info = runs_table_long(runs, ["news", "code"])
    assert sorted(map(tuple, long[["run_id", "domain", "loss"]].values.tolist())) == [
        ("elsewhere", "code", 2.5),
        ("elsewhere", "news", 3.5),
        ("here", "news", 3.0),
    ]
    assert info["other_eval_sets"] == ["code"]


def test_unseen_mixture_folds_are_bounded_on_a_large_swarm(tmp_path):
    """Leave-one-mixture-out refits the law once per mixture (768 fits on a RegMix swarm): by
    default at most 20 folds; an explicit bimix.unseen_k is kept."""
    law_runs(n_mixtures=45, seed=2).to_parquet(tmp_path / "runs.parquet")  # 46 mixtures
    config = from_dict(PipelineConfig, config_dict(tmp_path, runs_path=str(tmp_path / "runs.parquet")))
    summary = run_bimix(config)
    assert summary["unseen"]["split"] == "leave-3-mixtures-out over 46 mixtures"
    assert summary["unseen"]["n_fits"] == 16
    config.bimix.unseen_k = 1
    assert run_bimix(config)["unseen"]["split"] == "leave-1-mixtures-out over 46 mixtures"
