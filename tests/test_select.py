"""Stats and select on real Spark and Delta: exactness against the numpy core, determinism, budgets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.pipeline.select import run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.spark import tables

DOMAINS = ("arts", "code", "news", "science")
SCORERS = {"q_a": "higher_is_better", "q_b": "lower_is_better", "q_c": "higher_is_better"}
N_DOCS = 12_000


def synthetic_pool(n: int = N_DOCS, seed: int = 7) -> dict[str, np.ndarray]:
    """An annotated pool: skewed domains, heavy-tailed tokens, scores with many ties."""
    rng = np.random.default_rng(seed)
    domain = rng.choice(len(DOMAINS), size=n, p=[0.4, 0.3, 0.2, 0.1])
    return {
        "id": np.array([f"doc-{i:06d}" for i in range(n)]),
        "domain": np.array(DOMAINS)[domain],
        "n_tokens": np.maximum(1, rng.lognormal(5, 1, n).astype(np.int64)),
        "q_a": rng.random(n).round(2),  # only 101 distinct values: ties inside every domain
        "q_b": rng.normal(0, 1, n),
        "q_c": rng.beta(2, 5, n),
    }


def write_pool(spark, path: str, pool: dict, partitions: int) -> None:
    rows = [
        (str(i), f"text of {i}", str(d), int(t), float(a), float(b), float(c))
        for i, d, t, a, b, c in zip(
            pool["id"], pool["domain"], pool["n_tokens"], pool["q_a"], pool["q_b"], pool["q_c"], strict=True
        )
    ]
    schema = "id string, text string, domain string, n_tokens long, q_a double, q_b double, q_c double"
    df = spark.createDataFrame(rows, schema).withColumn("doc_key", F.xxhash64("id"))
    df.repartition(partitions).write.format("delta").mode("overwrite").save(path)


def theta() -> core.QuadMixParams:
    m = len(DOMAINS)
    return core.QuadMixParams(
        domains=DOMAINS,
        scorers=tuple(SCORERS),
        alpha=np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]]),
        lam=np.array([10.0, 50.0, 200.0, 5.0]),
        omega=np.array([0.3, 0.5, 0.8, 0.95]),
        eta=np.array([0.5, 1.0, 0.2, 0.8]),
        eps=np.full(m, 0.001),
    )


def make_config(root: Path, **select) -> PipelineConfig:
    params = root / "theta.yaml"
    if not params.exists():
        root.mkdir(parents=True, exist_ok=True)
        core.save_params(theta(), params)
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(root / "warehouse"),
            "scorers": SCORERS,
            "select": {
                "params": str(params),
                "output_dir": str(root / "selections"),
                "rank_mode": "exact",
                "shard_formats": [],
                "report": False,
                **select,
            },
        },
    )


@pytest.fixture(scope="module")
def pool_root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    pool = synthetic_pool()
    config = make_config(root)
    write_pool(spark, config.table_path("annotated"), pool, partitions=4)
    run_stats(spark, config)
    return root, pool


def selected(spark, config: PipelineConfig, selection_id: str) -> dict[str, int]:
    table = spark.read.format("delta").load(config.table_path("selected"))
    rows = table.where(F.col("selection_id") == selection_id).select("id", "copies").collect()
    return {r["id"]: r["copies"] for r in rows}


def core_expected(pool: dict, references: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The specification of S (Eq. 1–3) per document, and each document's domain index."""
    params = theta()
    d = params.domain_index(pool["domain"])
    scores = np.column_stack([pool[s] for s in params.scorers])
    refs = [core.build_reference(references[s], SCORERS[s] == "higher_is_better") for s in params.scorers]
    hib = [SCORERS[s] == "higher_is_better" for s in params.scorers]
    merged = core.merge_scores(core.percentile_matrix(scores, refs, hib), d, params.alpha)
    rank = core.token_weighted_rank(merged, d, pool["n_tokens"], params.n_domains)
    return core.sampling_function(rank, params.lam[d], params.omega[d], params.eta[d], params.eps[d]), d


def core_copies(pool: dict, keys: np.ndarray, references: dict[str, np.ndarray], seed: int) -> dict[str, int]:
    """The specification: the same selection computed by the numpy core alone."""
    s, _ = core_expected(pool, references)
    copies = core.expected_copies_to_copies(s, core.hash_uniform(keys, seed, 0))
    return {i: int(c) for i, c in zip(pool["id"], copies, strict=True) if c > 0}


def keys_and_references(spark, config: PipelineConfig, pool: dict) -> tuple[np.ndarray, dict]:
    table = spark.read.format("delta").load(config.table_path("annotated"))
    key_of = {r["id"]: r["doc_key"] for r in table.select("id", "doc_key").collect()}
    keys = np.array([key_of[i] for i in pool["id"]], dtype=np.int64)
    stats_rows = spark.read.format("delta").load(config.table_path("stats")).where("domain = '__all__'")
    return keys, {r["scorer"]: np.array(r["quantiles"]) for r in stats_rows.collect()}


def test_spark_copies_equal_numpy_core(spark, pool_root):
    root, pool = pool_root
    config = make_config(root, seed=3)
    summary = run_select(spark, config)
    keys, references = keys_and_references(spark, config, pool)

    expected = core_copies(pool, keys, references, seed=3)
    got = selected(spark, config, summary.selection_id)
    assert len(got) > 3_000  # a real selection, not an empty one
    assert got == expected
    # The best documents are up-sampled: S reaches 2^η + ε, so 3 copies are possible but rare.
    assert sum(c >= 2 for c in got.values()) > 500


def test_scalable_rank_equals_exact_when_the_sample_is_the_domain(spark, pool_root):
    root, _ = pool_root
    exact = run_select(spark, make_config(root, seed=5))
    scalable = run_select(spark, make_config(root, seed=5, rank_mode="scalable", rank_sample_size=10_000))
    assert selected(spark, make_config(root), scalable.selection_id) == selected(
        spark, make_config(root), exact.selection_id
    )


def test_same_selection_whatever_the_partitioning(spark, tmp_path, pool_root):
    _, pool = pool_root
    results, mixed = [], []
    budget = int(pool["n_tokens"].sum() * 0.4)
    for partitions in (1, 4, 64):
        root = tmp_path / f"p{partitions}"
        config = make_config(root, seed=11, rank_mode="scalable", rank_sample_size=500)
        write_pool(spark, config.table_path("annotated"), pool, partitions)
        run_stats(spark, config)
        summary = run_select(spark, config)
        results.append(selected(spark, config, summary.selection_id))
        if partitions == 64:  # and a rerun replaces its slice with the same rows
            rerun = run_select(spark, config)
            assert rerun.selection_id == summary.selection_id
            assert selected(spark, config, rerun.selection_id) == results[-1]
        config.select.token_budget, config.select.mixture = budget, "uniform"  # calibrated per domain
        mixture = run_select(spark, config)
        mixed.append((mixture.scales, selected(spark, config, mixture.selection_id)))
    assert len(results[0]) > 1_000
    assert results[0] == results[1] == results[2]
    assert len(mixed[0][1]) > 1_000
    assert mixed[0] == mixed[1] == mixed[2]


@pytest.mark.parametrize("selector", ["quadmix", "uniform", "topk:q_b", "union_topk"])
def test_token_budget_is_met(spark, pool_root, selector):
    root, pool = pool_root
    budget = int(pool["n_tokens"].sum() * 0.3)
    config = make_config(root, selector=selector, token_budget=budget, seed=1)
    summary = run_select(spark, config)
    achieved = sum(summary.tokens_after.values())
    assert abs(achieved - budget) <= 0.005 * budget
    got = selected(spark, config, summary.selection_id)
    ids = set(got)
    if selector == "topk:q_b":  # lower is better: every kept doc beats every dropped one
        kept = pool["q_b"][np.isin(pool["id"], list(ids))]
        dropped = pool["q_b"][~np.isin(pool["id"], list(ids))]
        assert kept.max() <= dropped.min()


def test_outputs_manifest_shards_and_report(spark, pool_root):
    root, _ = pool_root
    config = make_config(root, seed=2, shard_formats=["parquet", "jsonl"], report=True, shard_target_mb=0.05)
    summary = run_select(spark, config)
    out = Path(summary.out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selected_copies"] == summary.selected_copies
    assert manifest["annotated_version"] == 0 and manifest["params_hash"] == core.params_hash(theta())
    shards = manifest["shards"]
    assert shards["n_shards"] > 1
    parquet = spark.read.parquet(shards["paths"]["parquet"])
    jsonl = spark.read.json(shards["paths"]["jsonl"])
    assert parquet.count() == jsonl.count() == summary.selected_copies
    assert parquet.select("shard").distinct().count() == shards["n_shards"]
    for name in ("report.md", "report.html", "sampling_curves.png", "tokens_by_domain.png"):
        assert (out / "report" / name).stat().st_size > 500
    stats = spark.read.format("delta").load(config.table_path("stats")).where("domain = 'news'").collect()
    for row in stats:  # per-domain sketches, plain and token-weighted, both ascending
        for cuts in (row["quantiles"], row["token_quantiles"]):
            assert len(cuts) == 1001 and cuts == sorted(cuts)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{config.table_path('selected')}`").first()
    assert json.loads(history["userMetadata"])["selection_id"] == summary.selection_id


def test_params_errors_name_the_entry(spark, pool_root, tmp_path):
    root, _ = pool_root
    bad = theta().to_dict()
    bad["domains"].pop("news")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    config = make_config(root)
    config.select.params = str(path)
    with pytest.raises(ConfigError, match="news"):
        run_select(spark, config)
    config.select.params = str(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="select.params: params file not found"):
        run_select(spark, config)
    with pytest.raises(ConfigError, match="select.token_budget is required for selector uniform"):
        run_select(spark, make_config(root, selector="uniform"))


MIXTURE = {"arts": 0.1, "code": 0.2, "news": 0.3, "science": 0.4}  # science holds 10% of the pool


def mixture_file(tmp_path: Path, shares: dict[str, float] = MIXTURE) -> str:
    return str(core.Mixture.from_shares(shares, {"method": "test"}).to_file(tmp_path / "mixture.yaml"))


def test_a_mixture_composed_with_theta_equals_the_numpy_core(spark, pool_root, tmp_path):
    """Each domain gets budget × share tokens; inside it θ chooses, at a scale of its own."""
    root, pool = pool_root
    budget, seed, tolerance = int(pool["n_tokens"].sum() * 0.5), 4, 0.002
    config = make_config(root, seed=seed, token_budget=budget, mixture=mixture_file(tmp_path))
    summary = run_select(spark, config)
    for domain, share in MIXTURE.items():
        assert summary.tokens_target[domain] == pytest.approx(budget * share)
        assert abs(summary.tokens_after[domain] - budget * share) <= tolerance * budget * share

    # The specification: the same S, brackets, lockstep bisection and copies in numpy.
    keys, references = keys_and_references(spark, config, pool)
    s, d = core_expected(pool, references)
    u = core.hash_uniform(keys, seed, 0)
    tokens = pool["n_tokens"]

    def measure(scales):
        copies = core.expected_copies_to_copies(np.minimum(scales[d] * s, 4.0), u)
        return np.bincount(d, weights=tokens * copies, minlength=len(DOMAINS)).astype(np.int64)

    targets = [budget * MIXTURE[x] for x in DOMAINS]
    mass = np.bincount(d, weights=tokens * s, minlength=len(DOMAINS))
    highs = [core.scale_bracket(t, m)[1] for t, m in zip(targets, mass, strict=True)]
    fits = core.calibrate_scales(measure, targets, 0.0, highs, tolerance, grow=True)
    assert [f.margin for f in fits] == [None] * len(DOMAINS)
    assert summary.scales == {x: f.scale for x, f in zip(DOMAINS, fits, strict=True)}
    scales = np.array([f.scale for f in fits])
    copies = core.expected_copies_to_copies(np.minimum(scales[d] * s, 4.0), u)
    expected = {i: int(c) for i, c in zip(pool["id"], copies, strict=True) if c > 0}
    got = selected(spark, config, summary.selection_id)
    assert got == expected
    science = pool["n_tokens"][pool["domain"] == "science"].sum()
    assert summary.tokens_after["science"] > 1.5 * science  # up-sampled: 40% of the budget from 10%
    assert max(got.values()) <= 4
    manifest = json.loads((Path(summary.out_dir) / "manifest.json").read_text())
    assert manifest["mixture"]["shares"] == pytest.approx(MIXTURE)
    assert manifest["per_domain"]["science"]["tokens_target"] == pytest.approx(budget * 0.4, abs=0.1)


@pytest.mark.parametrize("selector", ["uniform", "topk:q_b"])
def test_a_mixture_composes_with_the_baselines(spark, pool_root, selector):
    root, pool = pool_root
    budget = int(pool["n_tokens"].sum() * 0.3)
    config = make_config(root, seed=6, token_budget=budget, selector=selector, mixture="uniform")
    summary = run_select(spark, config)
    for domain in DOMAINS:
        assert abs(summary.tokens_after[domain] - budget / 4) <= 0.002 * budget / 4
    if selector == "topk:q_b":  # inside each domain, every kept document beats every dropped one
        got = selected(spark, config, summary.selection_id)
        kept = np.isin(pool["id"], list(got))
        for domain in DOMAINS:
            here = pool["domain"] == domain
            assert pool["q_b"][here & kept].max() <= pool["q_b"][here & ~kept].min()


def test_an_infeasible_mixture_fails_before_writing_and_names_the_domain(spark, pool_root, tmp_path):
    root, pool = pool_root
    shares = {"arts": 0.05, "code": 0.05, "news": 0.1, "science": 0.8}
    config = make_config(root, seed=8, token_budget=int(pool["n_tokens"].sum() * 0.5), max_repeats=2)
    config.select.mixture = mixture_file(tmp_path, shares)
    before = tables.version(spark, config.table_path("selected"))
    with pytest.raises(ConfigError, match=r"science: target \d+ tokens, at most \d+ selectable"):
        run_select(spark, config)
    assert tables.version(spark, config.table_path("selected")) == before

    config.select.mixture_shortfall = "redistribute"
    summary = run_select(spark, config)
    assert summary.capped_domains == ["science"]
    science = pool["n_tokens"][pool["domain"] == "science"].sum()
    assert summary.tokens_after["science"] <= 2 * science
    assert sum(summary.tokens_after.values()) == pytest.approx(config.select.token_budget, rel=0.002)


def test_mixture_config_errors(spark, pool_root, tmp_path):
    root, _ = pool_root
    with pytest.raises(ConfigError, match="select.token_budget is required with select.mixture"):
        run_select(spark, make_config(root, mixture="natural"))
    with pytest.raises(ConfigError, match="select.mixture: neither natural, uniform, .* nor a mixture file"):
        run_select(spark, make_config(root, token_budget=1000, mixture=str(tmp_path / "nope.yaml")))
    lacking = mixture_file(tmp_path, {"arts": 0.5, "code": 0.5})
    with pytest.raises(ConfigError, match=r"the mixture lacks \['news', 'science'\]"):
        run_select(spark, make_config(root, token_budget=1000, mixture=lacking))


def test_a_tight_tolerance_is_met_in_every_domain_by_the_margin_fill(spark, pool_root, tmp_path):
    """Targets inside single documents' jumps: each domain ends under its target and is filled."""
    root, pool = pool_root
    budget, tolerance = int(pool["n_tokens"].sum() * 0.35), 1e-4
    config = make_config(root, seed=9, token_budget=budget, budget_tolerance=tolerance)
    config.select.mixture = mixture_file(tmp_path)
    summary = run_select(spark, config)
    manifest = json.loads((Path(summary.out_dir) / "manifest.json").read_text())
    assert manifest["margin_documents"] > 0
    for domain, share in MIXTURE.items():
        assert abs(summary.tokens_after[domain] - budget * share) <= tolerance * budget * share, domain


def test_the_margin_fill_reaches_past_other_long_documents(spark, tmp_path):
    """Many long documents: the first margin bracket holds several of them, each too long to add;
    the fill widens the bracket until short documents close the gap (a demo domain was 4.7% short)."""
    pool = synthetic_pool(n=3000, seed=21)
    long = np.random.default_rng(3).random(3000) < 0.08
    pool["n_tokens"] = np.where(long, 20_000 + (pool["n_tokens"] * 37) % 20_000, pool["n_tokens"])
    budget, tolerance = int(pool["n_tokens"].sum() * 0.2), 1e-3
    config = make_config(tmp_path, seed=5, token_budget=budget, budget_tolerance=tolerance, mixture="uniform")
    write_pool(spark, config.table_path("annotated"), pool, partitions=2)
    run_stats(spark, config)
    summary = run_select(spark, config)
    for domain in DOMAINS:
        assert abs(summary.tokens_after[domain] - budget / 4) <= tolerance * budget / 4, domain


def test_params_template_writes_a_theta_for_the_stats_domains(spark, pool_root, tmp_path, capsys):
    from quadmix_spark.cli import main

    root, _ = pool_root
    conf = tmp_path / "c.yaml"
    conf.write_text(json.dumps({"warehouse": str(root / "warehouse"), "scorers": SCORERS}))
    out = tmp_path / "theta" / "template.yaml"
    assert main(["params-template", "--config", str(conf), "--output", str(out)]) == 0
    assert f"4 domains × 3 scorers → {out}" in (said := capsys.readouterr().out)
    assert f"then --set select.params={out}" in said  # select reads another file
    params = core.load_params(out)
    expected = core.uniform(DOMAINS, tuple(SCORERS))
    assert params.domains == DOMAINS and params.scorers == tuple(SCORERS)
    np.testing.assert_array_equal(params.to_vector(), expected.to_vector())

    # select takes it as it is
    summary = run_select(spark, make_config(root, params=str(out), seed=11))
    assert sum(summary.tokens_after.values()) > 0

    # an existing file is never replaced silently
    assert main(["params-template", "--config", str(conf), "--output", str(out)]) == 2
    assert "params-template --output: " in capsys.readouterr().err
    # a config whose select already reads that file is not told to --set it
    conf.write_text(
        json.dumps({"warehouse": str(root / "warehouse"), "scorers": SCORERS, "select": {"params": str(out)}})
    )
    assert main(["params-template", "--config", str(conf), "--output", str(out), "--force"]) == 0
    assert "edit it)" in capsys.readouterr().out


def test_low_confidence_documents_are_counted_per_domain_in_stats_and_the_report(spark, tmp_path):
    pool = synthetic_pool(600, seed=11)
    prob = np.random.default_rng(5).random(600).round(3)
    config = make_config(tmp_path, report=True, seed=1)
    write_pool(spark, config.table_path("annotated"), pool, partitions=3)
    path = config.table_path("annotated")
    by_id = spark.createDataFrame(
        [(str(i), float(p)) for i, p in zip(pool["id"], prob, strict=True)], "id string, domain_prob double"
    )
    spark.read.format("delta").load(path).join(by_id, "id").write.format("delta").mode("overwrite").option(
        "overwriteSchema", "true"
    ).save(path)
    config = replace(config, stats=replace(config.stats, low_confidence_below=0.3))
    stats = run_stats(spark, config)
    expected = {d: int(((pool["domain"] == d) & (prob < 0.3)).sum()) for d in DOMAINS}
    assert stats.low_confidence == expected and stats.low_confidence_below == 0.3
    assert all(n > 0 for n in expected.values())

    summary = run_select(spark, config)
    report = (Path(summary.out_dir) / "report" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| domain "))
    assert header.rstrip(" |").endswith("low-confidence docs (p < 0.3)")
    for d in DOMAINS:
        row = next(line for line in report.splitlines() if line.startswith(f"| {d} "))
        assert row.rstrip(" |").split("|")[-1].strip() == f"{expected[d]:,}"
