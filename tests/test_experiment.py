"""The experiment command end to end on a tiny corpus: proxies → fit → search → θ* vs baselines."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import PipelineConfig, from_dict, to_dict
from quadmix_spark.pipeline.experiment import experiment_key, format_result, run_experiment
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.proxy.runs import load_runs
from udfs.models import load_tokenizer

DOMAINS = ("garden", "kitchen", "harbor")
SCORERS = {"q_clean": "higher_is_better", "q_noise": "lower_is_better"}
VOCAB = {  # words per domain, split at use
    "garden": "soil seed rose tulip water sun leaf root spade hedge lawn bloom",
    "kitchen": "pan oven salt flour butter knife stove bread soup spoon pepper sugar",
    "harbor": "ship dock rope tide crane anchor sail pier cargo gull mast buoy",
}
JUNK = ["zx", "qv", "kj", "wq", "xz", "vq", "jk", "qz", "zq", "xv"]


def corpus(n: int = 900, seed: int = 5) -> list[tuple]:
    rng = np.random.default_rng(seed)
    enc = load_tokenizer("cl100k_base")
    rows = []
    for i in range(n):
        domain = DOMAINS[i % len(DOMAINS)]
        clean = rng.random() < 0.6
        words = [
            str(w)
            for _ in range(int(rng.integers(4, 9)))
            for w in (*rng.choice(VOCAB[domain].split(" "), 6), "and", "the", ".")
        ]
        if not clean:
            words = [str(w) if rng.random() < 0.5 else str(rng.choice(JUNK)) for w in words]
        text = " ".join(words)
        rows.append(
            (
                f"d{i:05d}",
                text,
                domain,
                "high" if clean else "low",
                len(enc.encode_ordinary(text)),
                float(clean) * 0.6 + float(rng.random()) * 0.4,  # a useful, noisy quality score
                float(rng.random()),  # an uninformative one
            )
        )
    return rows


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    params = root / "template.yaml"
    core.save_params(core.uniform(DOMAINS, tuple(SCORERS)), params)
    config = from_dict(
        PipelineConfig,
        {
            "warehouse": str(root / "warehouse"),
            "scorers": SCORERS,
            "targets": {
                "heldout_fraction": 0.1,
                "heldout_filter": "quality = 'high'",
                "heldout_max_tokens": 4000,
            },
            "proxy": {"token_budget": 6000, "n_checkpoints": 2, "rank_sample_size": 1000},
            "search": {
                "template_params": str(params),
                "ranges": {"omega": [0.0, 0.6]},
                "n_candidates": 5000,
                "top_k": 5,
                "holdout_fraction": 0.2,
            },
            "experiment": {
                "n_runs": 30,
                "output_dir": str(root / "out"),
                "baselines": ["uniform", "topk"],
                "seeds": 2,
                "mixtures": ["uniform"],
            },
        },
    )
    schema = (
        "id string, text string, domain string, quality string, n_tokens long, q_clean double, q_noise double"
    )
    df = spark.createDataFrame(corpus(), schema).withColumn("doc_key", F.xxhash64("id"))
    df.repartition(2).write.format("delta").save(config.table_path("annotated"))
    run_stats(spark, config)
    path = root / "config.json"
    path.write_text(json.dumps(to_dict(config)))
    return root, config, path


def test_experiment_prints_the_comparison(spark, setup, capsys):
    root, config, path = setup
    assert main(["experiment", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    key = experiment_key(config, 0)
    assert f"experiment {key}: pool " in out and "30 proxy runs ok, 0 failed" in out
    result = json.loads((root / "out" / key / "experiment.json").read_text())
    labels = [c["label"] for c in result["contenders"]]
    halves = ["θ* mixture, uniform in-domain", "natural mixture, θ* in-domain"]
    fit = result["fit"]
    searched = fit["output_source"] == "searched candidate"  # else θ* is the best run itself
    best = ["best proxy run"] if searched else ["searched θ (not written)"]
    assert labels == [
        "θ*",
        *best,
        "uniform",
        "top-k q_clean",
        "top-k q_noise",
        *halves,
        *halves,
        "θ* ∘ uniform",
    ]
    assert fit["runs"] == 30 and fit["held_out"] == 6 and fit["held_out_metrics"]["n"] == 6  # 0.2 of them
    assert fit["cv"]["k"] == 5 and fit["metrics"]["n"] == 24
    assert (
        set(fit["cv_by_features"]) == {"theta", "realised", "both"}
        and fit["features"] in fit["cv_by_features"]
    )
    for mode in ("theta", "realised", "both"):
        assert f"features: {mode}" in out
    for c in result["contenders"]:
        assert c["status"] == "ok" and c["n_train_tokens"] == 6000
        assert set(c["losses"]) == {f"heldout:{d}" for d in DOMAINS}
        assert 0 < c["target"] < np.log(100_277)
    rows = []
    for label in dict.fromkeys(labels):  # one row per label: the mean over its seeds, and their spread
        targets = [c["target"] for c in result["contenders"] if c["label"] == label]
        spread = f"{np.std(targets, ddof=1):>7.4f}" if len(targets) > 1 else " " * 7
        rows.append(f"{label:<32} {np.mean(targets):>12.4f} {spread} {len(targets):>5}")
        assert rows[-1] in out
    # the first half: θ*'s realised domain shares, with other documents inside each domain
    selected = spark.read.format("delta").load(config.table_path("experiment_selected")).toPandas()
    by_run = {c["run_id"].split("-eval-")[1]: c for c in result["contenders"]}
    tokens = {
        label: selected[selected.selection_id.isin([s for s, c in by_run.items() if c["label"] == label])]
        .assign(t=lambda x: x.n_tokens * x.copies)
        .groupby(["selection_id", "domain"])["t"]
        .sum()
        for label in ("θ*", halves[0])
    }
    star = tokens["θ*"].groupby("domain").sum() / tokens["θ*"].sum()
    for _, shares in tokens[halves[0]].groupby("selection_id"):
        np.testing.assert_allclose(shares.droplevel(0) / shares.sum(), star, atol=0.01)
    for name in ("comparison.png", "predicted_vs_actual.png"):
        assert (root / "out" / key / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (root / "out" / key / name).stat().st_size > 1000
    # The text file is the comparison as printed, every row included.
    text = (root / "out" / key / "experiment.txt").read_text()
    assert text.startswith(f"experiment {key}: pool ") and text in out
    assert all(row in text for row in rows)
    core.load_params(root / "out" / key / "theta_star.yaml")  # a params file select accepts

    runs = load_runs(spark, config.table_path("proxy_runs"))
    assert (runs["kind"] == "proxy").sum() == 30 and (runs["kind"] == "eval").sum() == 10
    assert runs["run_id"].is_unique and (runs["status"] == "ok").all()
    keys = spark.read.format("delta").load(config.table_path("annotated")).toPandas()["doc_key"].to_numpy()
    held = core.hash_uniform(keys, 0, core.HOLDOUT_STREAM) < 0.1
    pool = spark.read.format("delta").load(config.table_path("experiment_pool")).toPandas()
    assert 0 < held.sum() < 200 and set(pool["doc_key"]) == set(keys[~held])  # no run sees held-out text


def test_rounds_and_a_fixed_mixture(spark, setup, tmp_path):
    """Two rounds (24 from Algorithm 1, 8 where the first fit predicts best), every proxy dataset
    and θ* composed with the uniform mixture, and that mixture alone as the row to beat."""
    root, base, _ = setup
    config = copy.deepcopy(base)
    config.experiment.output_dir = str(tmp_path / "out")
    config.experiment.baselines, config.experiment.mixtures, config.experiment.seeds = [], [], 1
    config.search.rounds, config.search.holdout_fraction, config.search.mixture = [24, 8], 0.0, "uniform"
    result = run_experiment(spark, config)
    key = result.key
    # Its cost: the proxy runs are Spark tasks (one per run at least), the search is the driver's.
    assert result.cost["tasks"] >= 32 and result.cost["executor_core_s"] > 0
    assert result.cost["driver_cpu_s"] > 0 and "driver CPU-s" in format_result(result)
    runs = load_runs(spark, config.table_path("proxy_runs"))
    mine = runs[runs["run_id"].str.startswith(f"{key}-")]
    first, second = (
        mine[mine.run_id.str.startswith(f"{key}-p")],
        mine[mine.run_id.str.startswith(f"{key}-r2-")],
    )
    assert len(first) == 24 and len(second) == 8 and (mine["status"] == "ok").all()
    # each proxy dataset gives every domain a third of the budget (in expectation: the copies of
    # some 40 documents per domain are rounded); θ decides only inside them. The second round's
    # θ cluster around the best candidates, so their rounding errors are correlated: the mean of
    # 32 runs has been seen 0.0153 off a third.
    shares = np.vstack(mine[mine.kind == "proxy"]["mixture"].map(np.asarray))
    np.testing.assert_allclose(shares.mean(axis=0), 1 / 3, atol=0.025)
    np.testing.assert_allclose(shares, 1 / 3, atol=0.1)
    assert [r["runs"] for r in result.rounds] == [24, 32] and [r["new_runs"] for r in result.rounds] == [
        24,
        8,
    ]
    assert result.rounds[1]["best_observed"] <= result.rounds[0]["best_observed"]
    assert result.fit["runs"] == 32 and result.search_mixture == "uniform"
    labels = [c.label for c in result.contenders]
    searched = result.fit["output_source"] == "searched candidate"
    best = ["best proxy run"] if searched else ["searched θ (not written)"]
    assert labels == ["θ*", *best, "uniform, uniform in-domain", "natural mixture, θ* in-domain"]
    selected = spark.read.format("delta").load(config.table_path("experiment_selected")).toPandas()
    theta_star = result.contenders[0].run_id.split("-eval-")[1]
    tokens = selected[selected.selection_id == theta_star].assign(t=lambda x: x.n_tokens * x.copies)
    np.testing.assert_allclose(tokens.groupby("domain")["t"].sum() / tokens["t"].sum(), 1 / 3, atol=0.03)
    assert (tmp_path / "out" / key / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "uniform, uniform in-domain" in format_result(result)


def test_the_key_names_the_data_not_the_folder_it_lies_in(setup, tmp_path):
    """The key prefixes the run ids, which seed the folds: moving the warehouse and the template
    must not change the search. Another input table or another θ template must."""
    _, base, _ = setup
    moved = copy.deepcopy(base)
    moved.warehouse = str(tmp_path / "elsewhere" / "warehouse")
    template = tmp_path / "elsewhere" / "template.yaml"
    template.parent.mkdir(parents=True)
    template.write_bytes(Path(base.search.template_params).read_bytes())
    moved.search.template_params = str(template)
    assert experiment_key(moved, 0) == experiment_key(base, 0)
    other_table = copy.deepcopy(moved)
    other_table.select.input_table = "annotated_v2"
    core.save_params(core.uniform(DOMAINS, tuple(SCORERS), omega=0.4), template)
    assert len({experiment_key(other_table, 0), experiment_key(moved, 0), experiment_key(base, 0)}) == 3


def test_the_comparison_ranks_failed_runs_last(tmp_path):
    from quadmix_spark.pipeline.experiment import Contender, ExperimentResult, format_result

    cv = {"chosen": "gp", "k": 5, "repeats": 3, "table": []}
    fit = {"mode": "quadmix", "runs": 30, "held_out": 6, "regressor": "gp", "features": "theta", "cv": cv}
    fit |= {
        "metrics": {"spearman": 0.5, "spearman_sd": 0.1, "mae": 0.1},
        "output_source": "searched candidate",
    }
    fit |= {"theta_star_predicted_loss": 4.0, "best_observed_run": "r", "best_observed_loss": 4.1}
    contenders = [
        Contender("θ*", "quadmix", "a", 3.9, {}, 100, "ok"),
        Contender("uniform", "uniform", "b", float("nan"), {}, 0, "failed"),
        Contender("top-k q", "topk:q", "c", 3.8, {}, 100, "ok"),
    ]
    result = ExperimentResult("k", 10, {"e": 5}, 30, 0, fit, contenders, 1.0, str(tmp_path))
    assert [c.label for c in result.ranked] == ["top-k q", "θ*", "uniform"]
    assert "top-k q beats θ*" in format_result(result)
    result.contenders = [contenders[1]]
    assert "no evaluation run finished" in format_result(result)
