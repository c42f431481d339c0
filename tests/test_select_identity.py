"""The selection id names the input tables: another corpus, another id; the same table, the same id."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from test_select import make_config, synthetic_pool, write_pool

from quadmix_spark.pipeline.select import plan_select, run_select, table_identity
from quadmix_spark.pipeline.stats import run_stats


@pytest.fixture(scope="module")
def two_corpora(spark, tmp_path_factory):
    """Two warehouses with different corpora, the same θ file and seed, one shared output folder."""
    root = tmp_path_factory.mktemp("identity")
    shared = str(root / "shared-selections")
    configs = []
    for name, seed in (("a", 1), ("b", 2)):
        config = make_config(root / name, output_dir=shared, seed=5)
        config = replace(config, select=replace(config.select, params=str(root / "a" / "theta.yaml")))
        write_pool(spark, config.table_path("annotated"), synthetic_pool(600, seed=seed), partitions=2)
        run_stats(spark, config)
        configs.append(config)
    return configs


def test_two_corpora_with_the_same_parameters_get_their_own_selection(spark, two_corpora):
    a, b = two_corpora
    plan_a, plan_b = plan_select(spark, a), plan_select(spark, b)
    # Everything but the tables is the same: the old id was the same for both (quadmix-<same>).
    assert (plan_a.stats.stats_version, plan_a.stats.annotated_version) == (
        plan_b.stats.stats_version,
        plan_b.stats.annotated_version,
    )
    assert plan_a.selection_id != plan_b.selection_id
    assert plan_a.out_dir != plan_b.out_dir
    first, second = run_select(spark, a), run_select(spark, b)
    for config, summary in ((a, first), (b, second)):
        manifest = json.loads((Path(summary.out_dir) / "manifest.json").read_text())
        assert manifest["annotated_table"] == config.table_path("annotated")
        assert manifest["selection_id"] == summary.selection_id
        assert manifest["selected_docs"] == summary.selected_docs > 0


def test_the_same_table_at_the_same_version_keeps_its_id_however_its_path_is_spelled(
    spark, two_corpora, tmp_path, monkeypatch
):
    a, _ = two_corpora
    plan = plan_select(spark, a)
    assert plan_select(spark, a).selection_id == plan.selection_id
    warehouse = a.warehouse
    link = tmp_path / "link-to-warehouse"
    os.symlink(warehouse, link)
    monkeypatch.chdir(Path(warehouse).parent)
    for spelling in ("warehouse", str(link), f"{warehouse}/"):
        assert plan_select(spark, replace(a, warehouse=spelling)).selection_id == plan.selection_id, spelling
    assert table_identity(f"file:{warehouse}/annotated") == table_identity(f"{warehouse}/annotated/")
    assert table_identity("s3a://bucket/w/annotated/") == "s3a://bucket/w/annotated"


def test_a_new_version_of_the_table_gets_a_new_id(spark, two_corpora):
    """A nightly refresh appends to the annotated table and reruns stats: a new selection each night."""
    _, b = two_corpora
    before = plan_select(spark, b)
    write_pool(spark, b.table_path("annotated"), synthetic_pool(600, seed=2), partitions=3)  # same rows
    run_stats(spark, b)
    after = plan_select(spark, b)
    assert after.stats.annotated_version == before.stats.annotated_version + 1
    assert after.selection_id != before.selection_id
    # An older stats run (select.stats_version) still names its own version of the table.
    pinned = replace(b, select=replace(b.select, stats_version=before.stats.stats_version))
    assert plan_select(spark, pinned).selection_id == before.selection_id
