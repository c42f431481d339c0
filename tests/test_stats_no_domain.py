"""Documents whose domain (a column kept from the input) is null: counted by stats, left out by select."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig, ProxyConfig, from_dict
from quadmix_spark.pipeline.annotate import run_annotate
from quadmix_spark.pipeline.select import format_summary, run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.proxy.datasets import build_proxy_datasets
from quadmix_spark.spark import tables
from quadmix_spark.spark.stats_table import ALL_DOMAINS, NoDomain, load_stats

SOURCES = ("code", "web", "wiki")
SCORERS = {"word_count": "higher_is_better", "dup_line_frac": "lower_is_better"}
NO_SOURCE = {7, 19, 42, 43, 88, 101}  # records without a "source" key
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "mu"]


def corpus(n: int = 120) -> list[dict]:
    """Short documents of varied length and line repetition; six have no ``source``."""
    rng = np.random.default_rng(3)
    records = []
    for i in range(n):
        line = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 12))))
        lines = [line] * int(rng.integers(1, 4)) + [" ".join(rng.choice(WORDS, size=5))] * int(
            rng.integers(1, 3)
        )
        record = {"id": f"d{i:03d}", "text": "\n".join(lines)}
        if i not in NO_SOURCE:
            record["source"] = SOURCES[i % 3]
        records.append(record)
    return records


def make_config(root: Path) -> PipelineConfig:
    params = root / "theta.yaml"
    core.save_params(core.uniform(SOURCES, list(SCORERS), omega=0.6), params)
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(root / "warehouse"),
            "domain_column": "source",
            "token_column": "n_tokens",
            "scorers": SCORERS,
            "annotate": {
                "input": {"path": str(root / "in"), "format": "jsonl", "keep_columns": ["source"]},
                "annotators": [
                    {"kind": "tokens", "column": "n_tokens", "tokenizer": "whitespace"},
                    {"kind": "heuristics", "signals": list(SCORERS)},
                ],
            },
            "stats": {"n_quantiles": 20},
            "select": {
                "params": str(params),
                "output_dir": str(root / "selections"),
                "rank_mode": "exact",
                "shard_formats": [],
                "report": False,
            },
        },
    )


@pytest.fixture(scope="module")
def annotated(spark, tmp_path_factory):
    """A real annotated table (annotate over JSONL) whose kept ``source`` is null for six documents."""
    root = tmp_path_factory.mktemp("no-domain")
    (root / "in").mkdir()
    records = corpus()
    (root / "in" / "part-0.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    config = make_config(root)
    assert run_annotate(spark, config).annotated == len(records)
    table = spark.read.format("delta").load(config.table_path("annotated")).toPandas()
    return config, table


def test_stats_count_and_name_the_documents_without_a_domain(spark, annotated, capsys):
    config, table = annotated
    stats = run_stats(spark, config)
    out = capsys.readouterr().out
    missing = table[table["source"].isna()]
    assert sorted(missing["id"]) == [f"d{i:03d}" for i in sorted(NO_SOURCE)]
    assert stats.no_domain == NoDomain("source", 6, int(missing["n_tokens"].sum()))
    # Every annotated document is a domain's or counted apart: 114 + 6 = 120.
    assert stats.docs == {d: int((table["source"] == d).sum()) for d in SOURCES}
    assert sum(stats.docs.values()) + stats.no_domain.docs == len(table) == 120
    assert f"6 documents ({stats.no_domain.tokens:,} tokens) have no domain (column 'source' is null)" in out
    assert "left out of the statistics; select leaves them out too" in out
    meta = tables.commit_info(spark, config.table_path("stats"), stats.stats_version)["user_metadata"]
    assert meta["no_domain"] == {"column": "source", "docs": 6, "tokens": stats.no_domain.tokens}
    # One global row per scorer, over the documents with a domain (the pool select draws from).
    rows = spark.read.format("delta").load(config.table_path("stats")).where(F.col("domain") == ALL_DOMAINS)
    rows = rows.where(F.col("stats_id") == meta["stats_id"]).collect()
    assert sorted(r["scorer"] for r in rows) == sorted(SCORERS)
    pool = table[table["source"].notna()]
    for r in rows:
        assert r["docs"] == len(pool) and r["tokens"] == int(pool["n_tokens"].sum())
        expected = np.quantile(pool[r["scorer"]], np.linspace(0, 1, 21), method="inverted_cdf")
        assert r["quantiles"] == expected.tolist()


def test_select_leaves_them_out_and_says_so(spark, annotated):
    config, table = annotated
    stats = run_stats(spark, config)
    summary = run_select(spark, config)  # the old code died in a Python worker on domain_idx
    assert summary.no_domain == stats.no_domain and summary.no_domain.docs == 6
    assert f"left out: 6 documents ({stats.no_domain.tokens:,} tokens) have no domain" in format_summary(
        summary
    )
    selected = spark.read.format("delta").load(config.table_path("selected"))
    chosen = selected.where(F.col("selection_id") == summary.selection_id).toPandas()
    assert len(chosen) == summary.selected_docs > 0
    assert chosen["source"].notna().all() and not set(chosen["id"]) & {f"d{i:03d}" for i in NO_SOURCE}
    manifest = json.loads((Path(summary.out_dir) / "manifest.json").read_text())
    assert manifest["no_domain"] == {"column": "source", "docs": 6, "tokens": stats.no_domain.tokens}
    before = sum(v["docs_before"] for v in manifest["per_domain"].values())
    assert before + manifest["no_domain"]["docs"] == len(table)


def test_a_stats_run_that_mixed_them_into_the_global_sketch_is_refused(spark, annotated, tmp_path):
    """A stats run from before the count wrote the null group as a second ``__all__`` row."""
    config, _ = annotated
    path = config.table_path("stats")
    version = run_stats(spark, config).stats_version
    meta = dict(tables.commit_info(spark, path, version)["user_metadata"])
    rows = spark.read.format("delta").option("versionAsOf", version).load(path)
    rows = rows.where(F.col("stats_id") == meta["stats_id"])
    old = rows.unionByName(
        rows.where(F.col("domain") == ALL_DOMAINS).withColumn("docs", F.lit(6).cast("long"))
    )
    old_path = str(tmp_path / "old-stats")
    tables.write(old, old_path, "append", {k: v for k, v in meta.items() if k != "no_domain"})
    with pytest.raises(ConfigError, match=r"mixed documents with a null domain .* run quadmix stats again"):
        load_stats(spark, old_path)
    # A run from before the count that met no such document loads, with none counted.
    tables.write(rows, old_path + "-clean", "append", {k: v for k, v in meta.items() if k != "no_domain"})
    assert load_stats(spark, old_path + "-clean").no_domain.docs == 0
    with pytest.raises(ConfigError, match="run quadmix stats again"):
        run_select(spark, replace(config, select=replace(config.select, stats_table=old_path)))


def test_proxy_datasets_leave_them_out_as_select_does(spark, annotated, tmp_path):
    """Scale 1 (the budget equal to θ's expected tokens) gives exactly select's copies, without them."""
    config, _ = annotated
    run_stats(spark, config)
    config = copy.deepcopy(config)
    config.select.rank_mode, config.select.rank_sample_size, config.select.seed = "scalable", 1000, 4
    config.select.output_dir = str(tmp_path / "selections")
    config.proxy = ProxyConfig(token_budget=1000, rank_sample_size=1000, seed=4)
    theta = core.load_params(config.select.params)
    result = build_proxy_datasets(spark, config, [theta], ["probe"])  # the old code died in a worker
    config.proxy.token_budget, config.proxy.overshoot = float(result.expected_tokens[0]) / 2, 1.0
    result = build_proxy_datasets(spark, config, [theta], ["probe"])
    assert result.scales[0] == 1.0
    sel = run_select(spark, config)
    selected = spark.read.format("delta").load(config.table_path("selected"))
    mine = selected.where(F.col("selection_id") == sel.selection_id).select("doc_key", "copies").toPandas()
    probe = spark.read.format("delta").load(result.table).where("run_id = 'probe'").toPandas()
    annotated = spark.read.format("delta").load(config.table_path("annotated"))
    no_domain = {r["doc_key"] for r in annotated.where(F.col("source").isNull()).collect()}
    assert len(no_domain) == 6 and not no_domain & set(probe.doc_key)
    assert len(mine) > 20
    assert dict(zip(mine.doc_key, mine.copies, strict=True)) == dict(
        zip(probe.doc_key, probe.copies, strict=True)
    )
