"""Clusters as domains beyond stats and select: entropy, streams / reweight, the experiment's proxy
datasets and the bimix job on its runs, on the session's clustered corpus (names like
``c01:copyright,software,license``: a colon and commas in every domain name)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import PipelineConfig, from_dict, to_dict
from quadmix_spark.mixing.entropy import sequence_entropies, softmax_mixture
from quadmix_spark.spark import tables
from quadmix_spark.spark.stats_table import load_stats
from udfs.models import load_tokenizer

SEED = 3


@pytest.fixture(scope="module")
def table(spark, clustered) -> tuple[str, pd.DataFrame, list[str]]:
    """The clustered annotated table: its path, its rows and the cluster names it holds."""
    _, config, _, _ = clustered
    path = config.table_path("annotated")
    pdf = spark.read.format("delta").load(path).toPandas()
    names = sorted(pdf["cluster"].unique())
    assert len(names) >= 3 and all(":" in n and "," in n for n in names)
    return path, pdf, names


def expected_entropies(pdf: pd.DataFrame, tokens_per_domain: int) -> dict[str, dict[str, float]]:
    """SE/JE/CE of each cluster's hash sample, drawn and computed here with the numpy core."""
    enc = load_tokenizer("cl100k_base")
    out: dict[str, dict[str, float]] = {"se": {}, "je": {}, "ce": {}}
    for name, g in pdf.groupby("cluster"):
        rate = min(1.0, tokens_per_domain / g["n_tokens"].sum())
        chosen = g[core.hash_uniform(g["doc_key"].to_numpy(np.int64), SEED, core.ENTROPY_STREAM) < rate]
        for measure, value in sequence_entropies([enc.encode_ordinary(t) for t in chosen["text"]]).items():
            out[measure][name] = value
    return out


def test_entropy_with_clusters_as_domains(spark, table, tmp_path, capsys):
    path, pdf, names = table
    settings = {
        "warehouse": str(tmp_path / "wh"),
        "domain_column": "cluster",
        "entropy": {
            "input_table": path,
            "output_table": "entropy",
            "output_dir": str(tmp_path / "out"),
            "measures": ["se", "je", "ce"],
            "tokens_per_domain": 3000,
            "seed": SEED,
        },
    }
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps(settings))
    assert main(["entropy", "--config", str(conf)]) == 0
    printed = capsys.readouterr().out
    assert [n for n in names if f"  {n} " not in printed] == [], printed
    summary = json.loads((tmp_path / "out" / "entropy_summary.json").read_text())
    assert summary["domains"] == names
    assert summary["domain_tokens"] == pdf.groupby("cluster")["n_tokens"].sum().to_dict()
    expected = expected_entropies(pdf, 3000)
    rows = spark.read.format("delta").load(str(tmp_path / "wh" / "entropy")).toPandas()
    assert sorted(rows["domain"].unique()) == names and len(rows) == 3 * len(names)
    for measure, values in expected.items():
        got = rows[rows["measure"] == measure].set_index("domain")["value"].to_dict()
        assert got == pytest.approx(values, rel=1e-12)
        mixture = core.Mixture.from_file(str(tmp_path / "out" / f"mixture_entropy_{measure}.yaml"))
        shares = dict(softmax_mixture(values).shares)
        assert sorted(mixture.shares) == names and sum(mixture.shares.values()) == pytest.approx(1.0)
        assert mixture.shares == pytest.approx(shares, rel=1e-9)


def test_streams_and_reweight_with_clusters_as_domains(spark, table, tmp_path):
    pytest.importorskip("torch")
    from test_reweight_job import TINYLM

    from quadmix_spark.pipeline.reweight import run_reweight
    from quadmix_spark.pipeline.reweight_runs import load_runs
    from quadmix_spark.pipeline.streams import load_streams

    path, pdf, names = table
    capped = names[-1]
    settings = {
        "warehouse": str(tmp_path / "wh"),
        "domain_column": "cluster",
        "targets": {"heldout_fraction": 0.15, "heldout_max_tokens": 200},
        "proxy": {"tinylm": TINYLM},
        "reweight": {
            "streams": {"input_table": path, "output_table": "streams", "tokens_per_domain": 500},
            "runs_table": "runs",
            "output_dir": str(tmp_path / "out"),
            "methods": ["tandem", "uniform"],
            "params": {
                "tandem": [{"episodes": 2, "probe_steps": 1, "free_steps": 1, "seqs_per_domain": 2}],
                "uniform": [{"seqs_per_domain": 2}],
            },
            "eval_tokens": 300,
        },
    }
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps(settings))
    # a cluster name as a key of a YAML flow map given with --set, as docs/clustering.md spells it
    cap = f'reweight.streams.max_tokens={{"{capped}": 120}}'
    assert main(["streams", "--config", str(conf), "--set", cap]) == 0
    train, val, available, _ = load_streams(spark, str(tmp_path / "wh" / "streams"))
    assert sorted(train) == names and sorted(val) == [f"heldout:{n}" for n in names]
    pool = pdf[core.hash_uniform(pdf["doc_key"].to_numpy(np.int64), 0, core.HOLDOUT_STREAM) >= 0.15]
    assert available == pool.groupby("cluster")["n_tokens"].sum().to_dict()
    assert train[capped].size == 120 and all(train[n].size == 500 for n in names if n != capped)

    config = from_dict(PipelineConfig, settings)
    config.reweight.streams.max_tokens = {capped: 120}
    result = run_reweight(spark, config)
    assert result.streams.reused and not result.failed
    runs = load_runs(spark, str(tmp_path / "wh" / "runs"))
    assert (runs["status"] == "ok").all() and all(sorted(d) == names for d in runs["domains"])
    for m in result.methods:
        mixture = core.Mixture.from_file(m.mixture_file)
        assert sorted(mixture.shares) == names and sum(mixture.shares.values()) == pytest.approx(1.0)
        assert mixture.shares == pytest.approx(m.mixture, abs=1e-12) and m.eval_ok == 1
        assert yaml.safe_load((tmp_path / "out" / f"mixture_{m.label}.yaml").read_text())
    assert result.methods[1].mixture == pytest.approx(dict.fromkeys(names, 1 / len(names)))
    assert (tmp_path / "out" / "alpha.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def experiment(spark, table, tmp_path_factory):
    """The experiment with clusters as domains, after the same pool's stats were computed by the
    ground-truth domains (a table it must not reuse)."""
    from quadmix_spark.pipeline import experiment as experiment_job

    path, _, names = table
    root = tmp_path_factory.mktemp("cluster_experiment")
    template = root / "template.yaml"
    core.save_params(core.uniform(names, ("q",)), template)
    settings = {
        "warehouse": str(root / "warehouse"),
        "domain_column": "cluster",
        "scorers": {"q": "higher_is_better"},
        "select": {"input_table": path, "output_dir": str(root / "selections"), "shard_formats": []},
        "targets": {"heldout_fraction": 0.1, "heldout_max_tokens": 3000},
        "proxy": {"token_budget": 6000, "n_checkpoints": 3, "rank_sample_size": 1000},
        "search": {"template_params": str(template), "n_candidates": 2000, "top_k": 5},
        "experiment": {
            "n_runs": 24,
            "output_dir": str(root / "out"),
            "baselines": ["uniform"],
            "decompose": False,
        },
        "bimix": {"output_dir": str(root / "bimix"), "output_mixture": str(root / "bimix" / "r_star.yaml")},
    }
    config = from_dict(PipelineConfig, settings)
    by_truth = from_dict(PipelineConfig, {**settings, "domain_column": "true_domain"})
    version = tables.version(spark, path)
    experiment_job._prepare_pool(spark, by_truth, version)
    conf = root / "config.json"
    conf.write_text(json.dumps(to_dict(config)))
    return root, config, conf, version


def test_experiment_proxy_datasets_and_bimix_with_clusters_as_domains(spark, table, experiment, capsys):
    from quadmix_spark.pipeline.experiment import experiment_key
    from quadmix_spark.proxy.runs import load_runs

    _, pdf, names = table
    root, config, conf, version = experiment
    assert main(["experiment", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "24 proxy runs ok, 0 failed" in out
    stats = load_stats(spark, config.table_path("experiment_stats"))
    assert stats.domains == names and stats.no_domain.column == "cluster"
    pool = pdf[core.hash_uniform(pdf["doc_key"].to_numpy(np.int64), 0, core.HOLDOUT_STREAM) >= 0.1]
    assert stats.tokens == pool.groupby("cluster")["n_tokens"].sum().to_dict()
    key = experiment_key(config, version)
    result = json.loads((root / "out" / key / "experiment.json").read_text())
    assert [c["label"] for c in result["contenders"]][2:] == ["uniform"]
    assert all(c["status"] == "ok" and c["n_train_tokens"] == 6000 for c in result["contenders"])
    runs = load_runs(spark, config.table_path("proxy_runs"))
    runs = runs[runs["run_id"].str.startswith(key)]
    assert (runs["kind"] == "proxy").sum() == 24 and (runs["status"] == "ok").all()
    for losses in runs["losses"]:  # every run is evaluated on each cluster's held-out set
        assert {x["eval_set"] for x in losses} == {f"heldout:{n}" for n in names}
    for mixture in runs["mixture"].dropna():  # the realised shares of the proxy datasets
        assert len(mixture) == len(names) and sum(mixture) == pytest.approx(1.0)

    # the bimix job on the experiment's runs (their realised shares) and its pool's stats: one law
    # per cluster from the heldout:<cluster> losses, r* over the clusters
    bimix = [
        "bimix",
        "--config",
        str(conf),
        "--set",
        f"select.stats_table={config.table_path('experiment_stats')}",
    ]
    assert main(bimix) == 0
    printed = capsys.readouterr().out
    assert all(n in printed for n in names)
    fitted = core.Mixture.from_file(str(root / "bimix" / "r_star.yaml"))
    assert sorted(fitted.shares) == names and sum(fitted.shares.values()) == pytest.approx(1.0)
