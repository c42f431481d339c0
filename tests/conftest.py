"""Shared fixtures: one real local SparkSession with Delta for the whole run."""

from __future__ import annotations

import pytest

from quadmix_spark.spark.session import build_session


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("warehouse")
    session = build_session(
        app_name="quadmix-tests",
        master="local[2]",
        warehouse=warehouse,
        conf={
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "4",
            "spark.driver.memory": "2g",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
