"""What a local session sets for itself: Delta's state rebuilt in as many tasks as there are cores."""

from __future__ import annotations

import os

import pytest

from quadmix_spark.spark import tables
from quadmix_spark.spark.session import local_cores


@pytest.mark.parametrize(
    ("master", "cores"),
    [
        ("local", 1),
        ("local[2]", 2),
        ("local[3,4]", 3),
        ("local[*]", os.cpu_count()),
        ("spark://127.0.0.1:7077", None),
        ("yarn", None),
    ],
)
def test_local_cores_of_a_master(master: str, cores: int | None):
    assert local_cores(master) == cores


def test_a_local_session_rebuilds_delta_state_in_one_task_per_core(spark, tmp_path):
    assert spark.conf.get("spark.databricks.delta.snapshotPartitions") == "2"
    path = str(tmp_path / "t")
    tables.write(spark.range(10).toDF("id"), path, "overwrite", {"job": "test"})
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup())
    tables.insert_new(spark.range(5, 15).toDF("id"), path, "id", {"job": "test"})
    tasks = [
        tracker.getStageInfo(stage).numTasks
        for job in set(tracker.getJobIdsForGroup()) - before
        for stage in (tracker.getJobInfo(job).stageIds if tracker.getJobInfo(job) else [])
        if tracker.getStageInfo(stage)
    ]
    # Without the setting, one stage of the MERGE rebuilds the table's state in 50 tasks.
    assert tasks and max(tasks) < 50
