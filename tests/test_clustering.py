"""Clusters as domains on real Spark, MLlib and Delta: the cluster job, the assign step, select on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clustered_corpus import N_DOCS, N_NEW, SCHEMA, documents, make_config, settings, write_annotated
from pyspark.sql import functions as F

from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.pipeline import clustering
from quadmix_spark.pipeline.select import run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.spark import files, tables


@pytest.fixture(scope="module")
def corpus():
    return documents(0, N_DOCS)


@pytest.fixture(scope="module")
def fitted(clustered):
    """The session's clustered corpus (tests/conftest.py): one partition, k by silhouette, assigned."""
    return clustered


def annotated(spark, config: PipelineConfig) -> dict[str, str]:
    rows = spark.read.format("delta").load(config.table_path("annotated")).select("id", "cluster").collect()
    return {r["id"]: r["cluster"] for r in rows}


def test_the_cluster_job_writes_named_clusters_and_picks_k_by_silhouette(spark, fitted):
    _, config, result, _ = fitted
    assert sorted(result.silhouettes) == [3, 4]
    assert result.k == max(result.silhouettes, key=result.silhouettes.get)
    table = spark.read.format("delta").load(config.table_path("clusters")).orderBy("cluster_id").collect()
    assert [r["cluster_id"] for r in table] == list(range(result.k))
    assert sum(r["sample_docs"] for r in table) == result.sample_docs
    assert 250 < result.sample_docs < 450  # about cluster.sample_size of the 500 documents
    assert sum(r["share"] for r in table) == pytest.approx(1.0)
    for row in table:
        assert row["name"] == f"c{row['cluster_id']:02d}:" + ",".join(row["top_terms"][:3])
        assert len(row["top_terms"]) == 10 and len(row["examples"]) == min(5, row["sample_docs"])
        assert row["model_id"] == result.model_id
    saved = json.loads(files.read_text(files.join(config.table_path("cluster_model"), "cluster.json")))
    assert saved["model_id"] == result.model_id and saved["silhouettes"] == {
        str(k): s for k, s in result.silhouettes.items()
    }
    assert files.exists(
        files.join(config.table_path("cluster_model"), "pipeline", "metadata")
    )  # MLlib's format
    model = clustering.load_model(config)
    assert model.model_id == result.model_id and model.names == [r["name"] for r in table]


def test_assignment_of_the_sample_agrees_with_the_fitted_model(spark, fitted, corpus):
    _, config, result, assigned = fitted
    assert assigned.assigned == N_DOCS and assigned.kept == 0
    df = spark.read.format("delta").load(config.table_path("annotated"))
    sample = clustering.cluster_sample(df, config, N_DOCS)
    predicted = result.model.transform(sample).select("id", clustering.PREDICTION).collect()
    assert len(predicted) == result.sample_docs
    names = [c["name"] for c in result.clusters]
    by_id = annotated(spark, config)
    assert {r["id"]: names[r[clustering.PREDICTION]] for r in predicted} == {
        r["id"]: by_id[r["id"]] for r in predicted
    }
    # every document of the table is named, the ones outside the sample too
    assert len(by_id) == N_DOCS and set(by_id.values()) <= set(names)
    for cluster in result.clusters:  # a cluster's examples are its own documents
        assert {by_id[i] for i in cluster["examples"]} <= {cluster["name"]}


def test_the_clusters_are_the_same_for_a_seed_whatever_the_input_partitioning(
    spark, fitted, corpus, tmp_path
):
    _, config, result, _ = fitted
    other = make_config(tmp_path)
    write_annotated(spark, other.table_path("annotated"), corpus, partitions=5)
    again = clustering.run_cluster(spark, other)
    assert again.model_id == result.model_id
    assert again.clusters == result.clusters
    clustering.run_assign(spark, other)
    assert annotated(spark, other) == annotated(spark, config)


def test_an_incremental_run_assigns_only_new_ids(spark, corpus, tmp_path):
    config = make_config(tmp_path, k=3)
    path = config.table_path("annotated")
    write_annotated(spark, path, corpus, partitions=2)
    clustering.run_cluster(spark, config)
    assert clustering.run_assign(spark, config).assigned == N_DOCS
    before = annotated(spark, config)
    # a nightly annotate inserts new ids only (an insert-only MERGE of rows without the cluster columns)
    new = spark.createDataFrame(documents(N_DOCS, N_NEW), SCHEMA).withColumn("doc_key", F.xxhash64("id"))
    assert tables.insert_new(new, path, "id", {"job": "test"}).metric("numTargetRowsInserted") == N_NEW
    assert sum(v is None for v in annotated(spark, config).values()) == N_NEW
    summary = clustering.run_assign(spark, config)
    assert (summary.assigned, summary.kept) == (N_NEW, N_DOCS)
    after = annotated(spark, config)
    assert {i: after[i] for i in before} == before and None not in after.values()
    assert clustering.run_assign(spark, config).assigned == 0
    # a new fit is a new model: every row is named again
    old = clustering.load_model(config).model_id
    refit = make_config(tmp_path, k=4)
    assert clustering.run_cluster(spark, refit).model_id != old
    assert clustering.run_assign(spark, refit).assigned == N_DOCS + N_NEW


def test_select_with_clusters_as_domains_end_to_end(spark, fitted, tmp_path, capsys):
    from quadmix_spark.cli import main

    root, config, result, _ = fitted
    conf = tmp_path / "c.yaml"
    clustered_settings = {**settings(root), "domain_column": "cluster"}
    conf.write_text(json.dumps(clustered_settings))
    clustered = from_dict(PipelineConfig, clustered_settings)
    stats = run_stats(spark, clustered)
    assert sorted(stats.domains) == sorted(set(annotated(spark, config).values()))
    assert set(stats.domains) <= {c["name"] for c in result.clusters}
    theta = clustered.select.params
    assert main(["params-template", "--config", str(conf), "--output", theta, "--force"]) == 0
    summary = run_select(spark, clustered)
    selected = spark.read.format("delta").load(config.table_path("selected"))
    picked = selected.where(F.col("selection_id") == summary.selection_id)
    domains = {r[0] for r in picked.select("cluster").distinct().collect()}
    assert domains and domains <= set(stats.domains)
    assert set(summary.tokens_after) == set(stats.domains) and sum(summary.tokens_after.values()) > 0
    capsys.readouterr()


def test_config_and_missing_model_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"cluster\.k must be at least 2 or auto"):
        make_config(tmp_path, k=1)
    with pytest.raises(ConfigError, match=r"cluster\.name_terms \(11\) must be at most cluster\.top_terms"):
        make_config(tmp_path, name_terms=11)
    with pytest.raises(ConfigError, match=r"cluster\.model_dir: no fitted clusters .* \(run quadmix cluster"):
        clustering.load_model(make_config(tmp_path))
    from quadmix_spark.cli import main

    conf = tmp_path / "c.yaml"
    conf.write_text(json.dumps(settings(tmp_path)))
    assert main(["assign", "--config", str(conf)]) == 2  # before a SparkSession starts


def test_purity_and_nmi():
    perfect = [("a", "x"), ("a", "x"), ("b", "y"), ("b", "y")]
    assert clustering.purity_and_nmi(perfect) == (1.0, pytest.approx(1.0))
    one = [("a", "x"), ("a", "x"), ("a", "x"), ("a", "y")]
    assert clustering.purity_and_nmi(one) == (0.75, pytest.approx(0.0))
    split = [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")]  # pure clusters, more of them than labels
    purity, nmi = clustering.purity_and_nmi(split)
    assert purity == 1.0 and nmi == pytest.approx(2 * np.log(2) / (np.log(4) + np.log(2)))
