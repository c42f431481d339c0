"""Proxy datasets (K θ in one scan) and proxy runs (Spark tasks) on real Spark and Delta."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pyspark.sql import functions as F
from test_select import DOMAINS, SCORERS, make_config, synthetic_pool, write_pool

from quadmix_spark import core
from quadmix_spark.config import ProxyConfig
from quadmix_spark.pipeline.select import run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.proxy.datasets import build_proxy_datasets, pool_sample
from quadmix_spark.proxy.runs import RunSpec, load_runs, run_proxies, runs_long, token_stream
from quadmix_spark.spark.scoring import ScoringModel
from quadmix_spark.spark.stats_table import load_stats
from udfs.models import end_of_text, load_tokenizer

EOT = end_of_text("cl100k_base")

K = 5


def thetas(k: int = K, seed: int = 3) -> list[core.QuadMixParams]:
    sampler = core.ParamSampler(DOMAINS, tuple(SCORERS))
    return [core.QuadMixParams.from_vector(v, DOMAINS, tuple(SCORERS)) for v in sampler.sample(k, seed)]


# -- the numpy core -------------------------------------------------------------------------


def test_theta_set_rows_equal_the_single_theta_core():
    rng = np.random.default_rng(0)
    n, params = 3000, thetas()
    sigma = rng.random((n, len(SCORERS))).round(2)
    d = rng.integers(0, len(DOMAINS), n)
    tokens = rng.integers(1, 500, n)
    u = core.hash_uniform(np.arange(n), 5, 0)
    ts = core.ThetaSet.fit(params, sigma[:1000], d[:1000], tokens[:1000])
    scales = np.linspace(0.5, 3.0, K)
    copies = ts.copies(sigma, d, u, scales)
    for k, p in enumerate(params):
        mapping = core.fit_rank_mapping(
            core.merge_scores(sigma[:1000], d[:1000], p.alpha), d[:1000], tokens[:1000], 4
        )
        rank = core.apply_rank_mapping(mapping, core.merge_scores(sigma, d, p.alpha), d)
        s = core.sampling_function(rank, p.lam[d], p.omega[d], p.eta[d], p.eps[d])
        assert np.array_equal(copies[k], core.expected_copies_to_copies(scales[k] * s, u))
    assert np.allclose(ts.expected_tokens(sigma, d, tokens), ts.expected_copies(sigma, d) @ tokens)
    with pytest.raises(ValueError, match="scales must have shape"):
        ts.copies(sigma, d, u, scales[:2])


def test_theta_set_rejects_mixed_layouts():
    other = core.uniform(("x", "y", "z", "w"), tuple(SCORERS))
    mapping = core.fit_rank_mapping(np.zeros(4), np.arange(4), np.ones(4), 4)
    with pytest.raises(core.ParamsError, match="other domains"):
        core.ThetaSet((thetas(1)[0], other), (mapping, mapping))


def test_token_stream_orders_copies_by_hash_and_cuts_to_budget():
    docs = [[1, 2, 3], [4, 5], [6]]
    keys = np.array([10, 20, 30])
    full = token_stream(docs, keys, np.array([1, 2, 0]), seed=0, budget=10_000, eot=EOT)
    assert len(full) == 3 + 2 * 2 + 3  # every copy once, each followed by EOT
    assert sorted(full.tolist()) == sorted([1, 2, 3, 4, 5, 4, 5, EOT, EOT, EOT])
    again = token_stream(docs[::-1], keys[::-1], np.array([0, 2, 1]), seed=0, budget=10_000, eot=EOT)
    assert np.array_equal(full, again)  # the order depends on the keys, not on the row order
    assert (
        token_stream(docs, keys, np.array([1, 2, 0]), seed=0, budget=4, eot=EOT).tolist() == full[:4].tolist()
    )


# -- Spark: one scan, exact --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy")
    config = make_config(root, rank_mode="scalable", rank_sample_size=800)
    config.proxy = ProxyConfig(token_budget=60_000, rank_sample_size=800, seed=4)
    data = synthetic_pool(4000)
    write_pool(spark, config.table_path("annotated"), data, partitions=3)
    run_stats(spark, config)
    return root, config


def test_datasets_equal_the_numpy_core_and_hit_the_budget(spark, pool):
    root, config = pool
    params = thetas()
    ids = [f"run-{k}" for k in range(K)]
    result = build_proxy_datasets(spark, config, params, ids)

    # The numpy spec on the collected pool: same sample, σ, mappings and scales.
    stats = load_stats(spark, config.table_path("stats"))
    rows = spark.read.format("delta").load(config.table_path("annotated")).toPandas()
    d = rows["domain"].map({x: i for i, x in enumerate(DOMAINS)}).to_numpy(np.int64)
    keys, tokens = rows["doc_key"].to_numpy(np.int64), rows["n_tokens"].to_numpy(np.int64)
    model = ScoringModel.from_raw_quantiles(params[0], {s: stats.reference(s) for s in SCORERS}, SCORERS)
    sigma = model.sigma(rows[list(SCORERS)].to_numpy(np.float64))
    rate = np.array([min(1.0, 800 / stats.docs[x]) for x in DOMAINS])
    sampled = core.hash_uniform(keys, 4, core.SAMPLE_STREAM) < rate[d]
    ts = core.ThetaSet.fit(params, sigma[sampled], d[sampled], tokens[sampled])
    expected = ts.copies(sigma, d, core.hash_uniform(keys, 4, 0), result.scales)

    written = spark.read.format("delta").load(result.table).toPandas()
    assert set(written["run_id"]) == set(ids)
    for k, r in enumerate(ids):
        got = written[written["run_id"] == r].set_index("doc_key")["copies"]
        want = expected[k]
        assert got.to_dict() == {int(key): int(c) for key, c in zip(keys, want, strict=True) if c > 0}
    aim = 60_000 * 1.05
    first = np.isclose(result.expected_tokens * result.scales, aim)  # runs not topped up
    assert first.sum() >= K - 2 and np.all(result.expected_tokens * result.scales >= aim * (1 - 1e-12))
    assert np.all(result.tokens >= 60_000) and np.all(np.abs(result.tokens - aim) < 0.1 * aim)
    assert np.array_equal(result.domain_tokens.sum(axis=1), result.tokens)

    # Rerunning replaces the same runs' rows and nothing else.
    again = build_proxy_datasets(spark, config, params[:2], ids[:2])
    assert np.array_equal(again.tokens, result.tokens[:2])
    assert spark.read.format("delta").load(result.table).count() == len(written)


def test_realised_features_from_the_pool_sample_agree_with_the_datasets(spark, pool):
    """The shares fit-search estimates for a θ from the pool sample are the shares its proxy
    dataset realises: within 0.03 of the selected tokens per domain, for every run. Here the rank
    sample and the feature sample hold every document (2,000 per domain ≥ the largest domain), so
    what is left is the rounding of copies (a budget of ~1,200 documents); with smaller samples,
    each side adds its own sampling error, larger where ω keeps few documents."""
    root, config = pool
    config = copy.deepcopy(config)
    config.proxy.token_budget, config.proxy.rank_sample_size = 300_000, 2_000
    params = thetas(8, seed=21)
    ids = [f"feat-{k}" for k in range(8)]
    result = build_proxy_datasets(spark, config, params, ids)
    sample = pool_sample(spark, config, params[0], 2_000)
    assert len(sample.tokens) == 4000
    aim = config.proxy.token_budget * (1 + config.proxy.overshoot)
    features = sample.features(np.vstack([p.to_vector() for p in params]), aim)
    estimated = features.reshape(8, len(DOMAINS), 3 + len(SCORERS))[:, :, 0]
    realised = result.domain_tokens / result.domain_tokens.sum(axis=1, keepdims=True)
    assert np.abs(estimated - realised).max() < 0.03
    spread = realised.max(axis=0) - realised.min(axis=0)
    assert spread.max() > 0.2  # the runs' shares differ far more than the estimate's error


def test_a_dataset_is_the_selection_select_makes(spark, pool):
    """Scale 1 (the budget equal to θ's expected tokens) gives exactly select's copies."""
    root, config = pool
    params = thetas(1, seed=11)
    core.save_params(params[0], root / "theta1.yaml")
    result = build_proxy_datasets(spark, config, params, ["probe"])
    # budget · (1 + overshoot) = E/2 · 2 = E exactly, so c = E / E = 1.0, and E/2 is surely reached
    config.proxy.token_budget, config.proxy.overshoot = float(result.expected_tokens[0]) / 2, 1.0
    result = build_proxy_datasets(spark, config, params, ["probe"])
    assert result.scales[0] == 1.0
    config.select.params, config.select.seed = str(root / "theta1.yaml"), 4
    sel = run_select(spark, config)
    selected = spark.read.format("delta").load(config.table_path("selected"))
    mine = selected.where(F.col("selection_id") == sel.selection_id).select("doc_key", "copies").toPandas()
    probe = spark.read.format("delta").load(result.table).where("run_id = 'probe'").toPandas()
    assert len(mine) > 100
    assert dict(zip(mine.doc_key, mine.copies, strict=True)) == dict(
        zip(probe.doc_key, probe.copies, strict=True)
    )


# -- Spark: proxy runs as tasks -----------------------------------------------------------------


def documents(spark):
    words = [
        "data",
        "spark",
        "delta",
        "table",
        "quality",
        "domain",
        "token",
        "budget",
        "proxy",
        "loss",
        "model",
        "sample",
    ]
    rng = np.random.default_rng(1)
    rows = []
    for r in ("a", "b", "c"):
        for i in range(40):
            text = " ".join(rng.choice(words, size=30))
            rows.append((f"run-{r}", int(rng.integers(1 << 40)), 1 + i % 2, text))
    return spark.createDataFrame(rows, "run_id string, doc_key long, copies long, text string")


def test_runs_are_recorded_once_and_failures_kept(spark, tmp_path):
    table = str(tmp_path / "proxy_runs")
    docs = documents(spark)
    in_domain = load_tokenizer("cl100k_base").encode_ordinary(
        "spark delta table data quality proxy loss " * 20
    )
    eval_sets = {"e1": np.array(in_domain, dtype=np.int64), "e2": np.arange(300, dtype=np.int64) + 5000}
    specs = [RunSpec(f"run-{r}", theta=(0.1 * i, 0.2)) for i, r in enumerate("abc")] + [RunSpec("run-empty")]

    broken = ProxyConfig(token_budget=500, n_checkpoints=3, ngram_order=0)  # fails inside every task
    summary = run_proxies(spark, broken, table, specs, docs, eval_sets)
    assert summary.ok == 0 and set(summary.failed) == {"run-a", "run-b", "run-c", "run-empty"}
    assert "order must be an int >= 1" in summary.failed["run-a"]
    assert "no training documents" in summary.failed["run-empty"]

    good = ProxyConfig(token_budget=500, n_checkpoints=3, ngram_order=2)
    summary = run_proxies(spark, good, table, specs, docs, eval_sets)  # failed runs are retried
    assert summary.skipped == 0 and summary.ok == 3 and list(summary.failed) == ["run-empty"]
    summary = run_proxies(spark, good, table, specs, docs, eval_sets)  # ok runs are never redone
    assert summary.skipped == 3 and summary.ok == 0

    runs = load_runs(spark, table).set_index("run_id")
    assert sorted(runs.index) == ["run-a", "run-b", "run-c", "run-empty"]  # one row per run
    a = runs.loc["run-a"]
    assert a["status"] == "ok" and a["error"] is None and a["n_train_tokens"] == 500
    assert [(x["eval_set"], x["step_tokens"]) for x in a["losses"]] == [
        (s, t) for t in (125, 250, 500) for s in ("e1", "e2")
    ]
    final = {x["eval_set"]: x["loss"] for x in a["losses"] if x["step_tokens"] == 500}
    assert 0 < final["e1"] < np.log(100_277) < final["e2"]  # seen text beats uniform, unseen does not
    long = runs_long(load_runs(spark, table))
    assert len(long) == 3 * 6 and long.loc[long.run_id == "run-b", "theta"].iloc[0] == [0.1, 0.2]
