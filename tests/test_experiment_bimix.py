"""experiment.mixture_method=bimix on a tiny pool: entropy mixtures and Dirichlet draws are trained,
BiMix is fitted on their checkpoints, and its r* joins the comparison beside the entropy rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from test_experiment import DOMAINS, SCORERS, corpus

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import PipelineConfig, from_dict, to_dict
from quadmix_spark.mixing.bimix import BiMixLaw
from quadmix_spark.mixing.bimix_optimum import optimal_mixture, share_caps
from quadmix_spark.mixing.entropy import softmax_mixture
from quadmix_spark.pipeline.experiment import experiment_key
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.proxy.runs import load_runs
from quadmix_spark.spark.stats_table import load_stats

BUDGET = 6000


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment_bimix")
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
            "proxy": {"token_budget": BUDGET, "n_checkpoints": 3, "rank_sample_size": 1000},
            "search": {
                "template_params": str(params),
                "ranges": {"omega": [0.0, 0.6]},
                "n_candidates": 2000,
                "top_k": 5,
                "holdout_fraction": 0.2,
            },
            "experiment": {
                "n_runs": 30,
                "output_dir": str(root / "out"),
                "baselines": [],
                "decompose": False,
                "mixture_method": "bimix",
                "mixture_draws": 2,
            },
            "entropy": {"measures": ["se", "je", "ce"], "tokens_per_domain": 3000},
        },
    )
    schema = (
        "id string, text string, domain string, quality string, n_tokens long, q_clean double, q_noise double"
    )
    df = spark.createDataFrame(corpus(600), schema).withColumn("doc_key", F.xxhash64("id"))
    df.repartition(2).write.format("delta").save(config.table_path("annotated"))
    run_stats(spark, config)
    path = root / "config.json"
    path.write_text(json.dumps(to_dict(config)))
    return root, config, path


def test_bimix_rows_join_the_comparison(spark, setup, capsys):
    root, config, path = setup
    assert main(["experiment", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    key = experiment_key(config, 0)
    result = json.loads((root / "out" / key / "experiment.json").read_text())
    labels = [c["label"] for c in result["contenders"]]
    # beside θ*, the other of θ* and the best run; the Dirichlet draws only feed the fit
    other = (
        "best proxy run"
        if result["fit"]["output_source"] == "searched candidate"
        else "searched θ (not written)"
    )
    assert labels == ["θ*", other, "entropy:se", "entropy:je", "entropy:ce", "bimix r*"]
    for c in result["contenders"]:
        assert c["status"] == "ok" and c["n_train_tokens"] == BUDGET
        assert 0 < c["target"] < np.log(100_277)
        assert f"{c['label']:<32} {c['target']:>12.4f}" in out
    info = result["mixture_method"]
    assert list(info["fit_runs"]) == ["entropy:se", "entropy:je", "entropy:ce", "dirichlet 1", "dirichlet 2"]
    assert "bimix: fitted on 5 runs" in out
    assert "unseen mixtures (leave-1-mixtures-out over 5 mixtures)" in out
    # 3 checkpoints: without the last, 2 steps are too few for β and C, and the printout says so
    assert info["fit"]["unseen_r2_log"] is not None and "extrapolation skipped: " in out

    # every fit run and r* records the shares it was trained on: the selection's tokens per domain
    runs = load_runs(spark, config.table_path("proxy_runs")).set_index("run_id")
    selected = spark.read.format("delta").load(config.table_path("experiment_selected")).toPandas()
    theta_domains = list(core.load_params(root / "out" / key / "theta_star.yaml").domains)
    ids = {**info["fit_runs"], "bimix r*": info["r_star_run"]}
    for label, run_id in ids.items():
        rows = selected[selected["selection_id"] == run_id.split("-eval-")[1]]
        tokens = (rows["n_tokens"] * rows["copies"]).groupby(rows["domain"]).sum()
        want = [tokens.get(d, 0) / tokens.sum() for d in theta_domains]
        np.testing.assert_allclose(runs.loc[run_id, "mixture"], want, rtol=1e-12, err_msg=label)
        assert len(runs.loc[run_id, "losses"]) == 3 * len(result["eval_sets"])  # 3 checkpoints per set

    # the entropy rows are softmax(H) of the pool's entropies, and were selected with those shares
    for m, values in info["entropy"].items():
        assert info["entropy_shares"][m] == pytest.approx(dict(softmax_mixture(values).shares), rel=1e-12)
    manifest = json.loads(
        (
            root / "out" / key / "selections" / info["r_star_run"].split("-eval-")[1] / "manifest.json"
        ).read_text()
    )
    assert manifest["mixture"]["shares"] == pytest.approx(info["r_star"], abs=1e-12)

    # r* is the optimum of a law fitted independently here on the same runs, capped by the pool
    long = pd.DataFrame(
        [
            (run_id, x["eval_set"][len("heldout:") :], runs.loc[run_id, "mixture"][theta_domains.index(d)])
            + (int(x["step_tokens"]), float(x["loss"]))
            for run_id in info["fit_runs"].values()
            for x in runs.loc[run_id, "losses"]
            if x["eval_set"].startswith("heldout:") and (d := x["eval_set"][len("heldout:") :])
        ],
        columns=["run_id", "domain", "r", "step_tokens", "loss"],
    )
    law = BiMixLaw().fit(long)
    stats = load_stats(spark, config.table_path("experiment_stats"))
    caps = share_caps([stats.tokens[d] for d in law.domains_], BUDGET, config.select.max_repeats)
    truth = optimal_mixture(law, float(long["step_tokens"].max()), upper=caps)
    assert info["r_star"] == pytest.approx(truth.shares, abs=1e-6)
    r_star = core.Mixture.from_file(root / "out" / key / "bimix" / "mixture_bimix.yaml")
    assert r_star.provenance["method"] == "bimix" and r_star.provenance["fit"]["runs"] == 5
