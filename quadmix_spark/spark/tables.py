"""Delta table I/O at the edges: existence, versions, provenance-stamped writes, commit metrics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession


def exists(spark: SparkSession, path: str) -> bool:
    """True when ``path`` holds a Delta table."""
    return DeltaTable.isDeltaTable(spark, path)


def version(spark: SparkSession, path: str) -> int | None:
    """The latest committed version of the table, or None when there is no table."""
    if not exists(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    return int(row[0])


def write(
    df: DataFrame,
    path: str,
    mode: str,
    metadata: Mapping[str, Any],
    options: Mapping[str, str] | None = None,
    partition_by: list[str] | None = None,
) -> int | None:
    """Write ``df`` to the Delta table at ``path`` with provenance; return the new version.

    Returns None when Delta made no commit (an append of no rows to an existing table).

    ``metadata`` goes, as JSON, into the commit's ``userMetadata`` so ``DESCRIBE HISTORY`` shows
    where each version came from (inputs and their versions, config hash, seed, code version).
    """
    writer = df.write.format("delta").mode(mode).option("userMetadata", json.dumps(metadata))
    if mode == "overwrite" and not (options or {}).get("replaceWhere"):
        writer = writer.option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    for key, value in (options or {}).items():
        writer = writer.option(key, value)
    before = version(df.sparkSession, path)
    writer.save(path)
    after = version(df.sparkSession, path)
    return after if after != before else None


def merge_on(df: DataFrame, path: str, key: str, metadata: Mapping[str, Any]) -> int | None:
    """MERGE ``df`` into the table at ``path`` on ``key`` (matches updated, the rest inserted).

    ``df`` must hold one row per key. Returns the new version, or None when Delta made no commit.
    """
    spark = df.sparkSession
    before = version(spark, path)
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", json.dumps(metadata))
    try:
        (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(df.alias("s"), f"t.`{key}` = s.`{key}`")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    after = version(spark, path)
    return after if after != before else None


def commit_info(spark: SparkSession, path: str, at_version: int) -> dict[str, Any]:
    """Operation metrics and user metadata of one commit (e.g. ``numOutputRows``)."""
    row = (
        DeltaTable.forPath(spark, path)
        .history()
        .where(f"version = {int(at_version)}")
        .select("operation", "operationMetrics", "userMetadata")
        .first()
    )
    if row is None:
        raise ValueError(f"{path} has no version {at_version}")
    return {
        "operation": row["operation"],
        "metrics": dict(row["operationMetrics"] or {}),
        "user_metadata": json.loads(row["userMetadata"]) if row["userMetadata"] else None,
    }


def rows_written(spark: SparkSession, path: str, at_version: int | None) -> int:
    """Rows a WRITE commit added (0 when nothing was committed)."""
    if at_version is None:
        return 0
    return int(commit_info(spark, path, at_version)["metrics"].get("numOutputRows", 0))
