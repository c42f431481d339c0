"""Every run reports its cost: wall seconds, executor core and CPU seconds, tokens per core-hour.

One nightly refresh on real Spark (local[2]), Delta and fastText: the jobs' summaries, their Delta
commits' userMetadata (read back with DeltaTable.history()), select's manifest and refresh_runs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql.types import StructType
from test_refresh import _arrive, _config_file, world  # noqa: F401  (world: the fixture)

from quadmix_spark.config import load_config
from quadmix_spark.pipeline.annotate import run_annotate
from quadmix_spark.pipeline.refresh import (
    COST_COLUMNS,
    RUNS_SCHEMA,
    ensure_runs_table,
    format_summary,
    run_refresh,
)
from quadmix_spark.spark import tables
from quadmix_spark.spark.cost import Cost, CostMeter, total

DAY = dt.date(2026, 12, 1)


def _check_cost(cost: dict, tokens: int | None) -> None:
    """Positive figures, and tokens per core-hour recomputed from the recorded fields."""
    assert cost["wall_s"] > 0
    assert cost["executor_core_s"] > 0 and cost["executor_cpu_s"] > 0
    if "stages" in cost:  # refresh_runs keeps the seconds and tokens only
        assert cost["stages"] > 0 and cost["tasks"] > 0
    assert cost["tokens"] == tokens
    if tokens:
        assert cost["tokens_per_core_hour"] == pytest.approx(tokens / (cost["executor_core_s"] / 3600))


def _commit_cost(spark, path: str) -> dict:
    meta = DeltaTable.forPath(spark, path).history(1).select("userMetadata").first()[0]
    return json.loads(meta)["cost"]


@pytest.fixture(scope="module")
def night(spark, world):  # noqa: F811
    config_path, folder = _config_file(world, "cost")
    _arrive(world, folder, 1)
    config = load_config(config_path)
    return config, run_refresh(spark, config, DAY)


def test_each_step_of_a_night_records_its_cost_and_the_run_their_sum(spark, night):
    config, summary = night
    runs = spark.read.format("delta").load(config.table_path("refresh_runs")).where(F.col("run_date") == DAY)
    rows = {r["step"]: r.asDict() for r in runs.where("status = 'done'").collect()}
    annotated = spark.read.format("delta").load(config.table_path("annotated"))
    tokens = annotated.agg(F.sum("n_tokens")).first()[0]
    for step in ("annotate", "stats", "select"):
        _check_cost(rows[step], rows[step]["tokens"])
    assert rows["annotate"]["tokens"] == tokens  # the night's new documents
    assert rows["stats"]["tokens"] == tokens and rows["select"]["tokens"] == tokens  # both read them all
    run = rows["run"]
    for column in ("wall_s", "executor_core_s", "executor_cpu_s"):
        assert run[column] == pytest.approx(sum(rows[s][column] for s in ("annotate", "stats", "select")))
    assert run["tokens"] == tokens
    assert run["tokens_per_core_hour"] == pytest.approx(tokens / (run["executor_core_s"] / 3600))
    assert summary.costs["run"]["executor_core_s"] == pytest.approx(run["executor_core_s"])
    assert "tokens per core-hour" in format_summary(summary)


def test_the_jobs_commits_and_manifest_carry_their_cost(spark, night):
    config, summary = night
    stats_cost = _commit_cost(spark, config.table_path("stats"))
    _check_cost(stats_cost, stats_cost["tokens"])
    assert stats_cost["scope"] == "before_write" and stats_cost["tokens"] > 0
    annotated_cost = _commit_cost(spark, config.table_path("annotated"))
    assert annotated_cost["scope"] == "before_write"
    assert annotated_cost["wall_s"] > 0 and annotated_cost["executor_core_s"] > 0  # the census ran
    selected_cost = _commit_cost(spark, config.table_path("selected"))
    _check_cost(selected_cost, selected_cost["tokens"])  # scoring and calibration ran before the write
    manifest = json.loads((Path(summary.out_dir) / "manifest.json").read_text())
    _check_cost(manifest["cost"], selected_cost["tokens"])
    assert manifest["cost"]["scope"] == "job"
    # The whole run costs more than what ran before its write.
    assert manifest["cost"]["executor_core_s"] > selected_cost["executor_core_s"]


def test_an_annotate_run_reports_its_cost_in_its_summary(spark, world, tmp_path):  # noqa: F811
    config_path, folder = _config_file(world, "cost-annotate")
    _arrive(world, folder, 2)
    config = load_config(config_path)
    summary = run_annotate(spark, config, mode="overwrite")
    tokens = spark.read.format("delta").load(config.table_path("annotated")).agg(F.sum("n_tokens")).first()[0]
    assert summary.tokens == tokens
    _check_cost(summary.cost, tokens)
    # The Python workers' time is in core seconds, not in Spark's (JVM) CPU time.
    assert summary.cost["executor_core_s"] >= summary.cost["executor_cpu_s"]


def test_a_meter_counts_only_its_own_jobs_and_nests(spark):
    with CostMeter(spark, "outer") as outer:
        spark.range(0, 200_000, numPartitions=4).selectExpr("sum(id * id)").collect()
        with CostMeter(spark, "inner") as inner:
            spark.range(0, 200_000, numPartitions=3).selectExpr("sum(id)").collect()
    with CostMeter(spark, "idle") as idle:
        pass
    assert inner.cost.tasks >= 3 and outer.cost.tasks >= inner.cost.tasks + 4
    assert outer.cost.executor_core_s >= inner.cost.executor_core_s > 0
    assert (idle.cost.stages, idle.cost.tasks, idle.cost.executor_core_s) == (0, 0, 0.0)
    assert Cost.from_json(outer.cost.to_json()).to_json() == outer.cost.to_json()


def test_refresh_runs_from_before_the_cost_columns_still_read_and_gain_them(spark, world, tmp_path):  # noqa: F811
    config_path, folder = _config_file(world, "cost-old-table")
    _arrive(world, folder, 1)
    config = load_config(config_path)
    path = config.table_path("refresh_runs")
    cost_columns = {*COST_COLUMNS, "tokens"}
    old = StructType([f for f in RUNS_SCHEMA.fields if f.name not in cost_columns])
    tables.ensure_table(spark, path, old)
    ensure_runs_table(spark, path)  # a table is there: left as it is
    summary = run_refresh(spark, config, DAY)
    assert summary.status == "completed" and summary.costs["run"]["executor_core_s"] > 0
    runs = spark.read.format("delta").load(path)
    assert set(RUNS_SCHEMA.names) <= set(runs.columns)
    again = run_refresh(spark, config, DAY)  # read back from the table
    assert again.status == "already done" and again.costs == summary.costs


def test_a_meter_without_spark_measures_the_drivers_cpu_and_costs_add_up():
    import numpy as np

    with CostMeter(None, "driver-only") as meter:
        busy = np.random.default_rng(0).normal(size=(300, 300))
        for _ in range(40):
            busy = np.tanh(busy @ busy.T / 300)
    cost = meter.cost
    assert cost.driver_cpu_s > 0 and cost.wall_s > 0
    assert (cost.executor_core_s, cost.executor_cpu_s, cost.tasks) == (None, None, 0)
    assert "driver CPU-s" in cost.line() and "executor time not measured" in cost.line()
    # A cost recorded before driver_cpu_s reads back with None, and totals add what is there.
    old = {"wall_s": 2.0, "executor_core_s": 3.0, "executor_cpu_s": 1.0, "tokens": 10}
    assert Cost.from_json(old).driver_cpu_s is None
    both = total([Cost.from_json(old), Cost(1.0, None, None, None, driver_cpu_s=0.5)])
    assert (both.wall_s, both.executor_core_s, both.driver_cpu_s, both.tokens) == (3.0, 3.0, 0.5, 10)
