"""Delta table I/O at the edges: existence, versions, provenance-stamped writes, commit metrics.

Every write stamps its commit with a unique ``write_id`` in the commit's ``userMetadata`` and
finds its own commit (version and operation metrics) by that id in the Delta log, so another
writer committing to the same table at the same moment can never be mistaken for this one.
Tables are created race-free (:func:`ensure_table`): two jobs that both find no table and both
create it end with one table, and both go on writing to it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
# Commits searched for a write's own commit: the latest few first, then the whole history.
_RECENT_COMMITS = (10, 200, None)
CREATE_ATTEMPTS = 5
MERGE_ATTEMPTS = 5


@dataclass(frozen=True)
class Commit:
    """One commit of a table, as its Delta log records it."""

    version: int
    operation: str
    metrics: dict[str, str] = field(default_factory=dict)

    def metric(self, name: str) -> int:
        return int(self.metrics.get(name, 0) or 0)


def exists(spark: SparkSession, path: str) -> bool:
    """True when ``path`` holds a Delta table."""
    return DeltaTable.isDeltaTable(spark, path)


def version(spark: SparkSession, path: str) -> int | None:
    """The latest committed version of the table, or None when there is no table."""
    if not exists(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    return int(row[0])


def _stamped(metadata: Mapping[str, Any]) -> tuple[str, str]:
    write_id = uuid.uuid4().hex
    return write_id, json.dumps({**metadata, "write_id": write_id})


def find_commit(spark: SparkSession, path: str, write_id: str) -> Commit | None:
    """The commit whose ``userMetadata`` carries ``write_id``; None when the write made none."""
    if not exists(spark, path):
        return None
    needle = f'"write_id": "{write_id}"'
    table = DeltaTable.forPath(spark, path)
    for depth in _RECENT_COMMITS:
        history = table.history(depth) if depth else table.history()
        row = (
            history.where(F.col("userMetadata").contains(needle))
            .select("version", "operation", "operationMetrics")
            .first()
        )
        if row is not None:
            return Commit(int(row["version"]), row["operation"], dict(row["operationMetrics"] or {}))
        if depth is not None and history.count() < depth:
            return None  # the whole history was searched
    return None


def ensure_table(
    spark: SparkSession, path: str, schema: StructType, partition_by: list[str] | None = None
) -> bool:
    """Create an empty Delta table at ``path`` unless one is there; True when this call created it.

    Two jobs creating the same table at once both end here with the table in place: the one
    whose commit of version 0 loses sees the winner's table and goes on.
    """
    for attempt in range(CREATE_ATTEMPTS):
        if exists(spark, path):
            return False
        try:
            builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
            if partition_by:
                builder = builder.partitionedBy(*partition_by)
            builder.execute()
            return True
        except Exception as err:  # a concurrent creator committed version 0 first
            if exists(spark, path):
                return False
            log.info("creating %s failed (attempt %d): %s", path, attempt + 1, err)
            time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"could not create the Delta table {path}")


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
    An append, or a ``replaceWhere`` overwrite (one slice of a shared table), creates the table
    first, race-free, so two such writers of a table that does not exist yet both succeed.
    """
    commit = write_commit(df, path, mode, metadata, options, partition_by)
    return commit.version if commit else None


def write_commit(
    df: DataFrame,
    path: str,
    mode: str,
    metadata: Mapping[str, Any],
    options: Mapping[str, str] | None = None,
    partition_by: list[str] | None = None,
) -> Commit | None:
    """:func:`write`, returning the whole commit (version, operation metrics) or None."""
    spark = df.sparkSession
    options = dict(options or {})
    if mode == "append" or options.get("replaceWhere"):
        ensure_table(spark, path, df.schema, partition_by)
    write_id, stamped = _stamped(metadata)
    writer = df.write.format("delta").mode(mode).option("userMetadata", stamped)
    if mode == "overwrite" and not options.get("replaceWhere"):
        writer = writer.option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    for key, value in options.items():
        writer = writer.option(key, value)
    writer.save(path)
    return find_commit(spark, path, write_id)


def _merge(spark: SparkSession, path: str, stamped: str, build) -> None:
    """Run the MERGE ``build(DeltaTable)`` returns, with ``stamped`` as the commit's userMetadata.

    A MERGE that loses a race with another writer's commit to the rows it read
    (``ConcurrentAppendException``) runs again: it then sees the winner's rows.
    """
    for attempt in range(MERGE_ATTEMPTS):
        spark.conf.set(_USER_METADATA, stamped)
        try:
            build(DeltaTable.forPath(spark, path)).execute()
            return
        except Exception as err:
            if "Concurrent" not in type(err).__name__ and "Concurrent" not in str(err)[:300]:
                raise
            if attempt == MERGE_ATTEMPTS - 1:
                raise
            log.info("MERGE into %s lost a race (attempt %d), running it again", path, attempt + 1)
        finally:
            spark.conf.unset(_USER_METADATA)


def insert_new(
    df: DataFrame, path: str, key: str, metadata: Mapping[str, Any], evolve_schema: bool = False
) -> Commit | None:
    """Insert the rows of ``df`` whose ``key`` the table at ``path`` lacks (an insert-only MERGE).

    The table is created first when missing (race-free). Two writers inserting overlapping rows
    at once leave each key once: the second MERGE conflicts with the first's commit and is
    retried against it. The commit's ``numSourceRows`` and ``numTargetRowsInserted`` say how
    many rows came and how many were new. ``evolve_schema`` adds the columns of ``df`` the table
    lacks. Returns None when Delta made no commit.
    """
    spark = df.sparkSession
    ensure_table(spark, path, df.schema)
    df = with_table_columns(df, path)
    write_id, stamped = _stamped(metadata)
    condition = f"t.`{key}` = s.`{key}`"

    def build(t: DeltaTable):
        merge = t.alias("t").merge(df.alias("s"), condition)
        return (merge.withSchemaEvolution() if evolve_schema else merge).whenNotMatchedInsertAll()

    _merge(spark, path, stamped, build)
    return find_commit(spark, path, write_id)


def with_table_columns(df: DataFrame, path: str) -> DataFrame:
    """``df`` with the columns the table at ``path`` holds and ``df`` lacks, as typed nulls.

    A later step may add columns to a table (``quadmix assign``'s cluster name): a MERGE's
    ``INSERT *`` / ``UPDATE SET *`` of rows without them must still work and leave them null,
    for that step to fill in (Delta refuses a target column missing from the source).
    """
    if not exists(df.sparkSession, path):
        return df
    table = DeltaTable.forPath(df.sparkSession, path).toDF().schema
    missing = [f for f in table.fields if f.name not in df.columns]
    return df.withColumns({f.name: F.lit(None).cast(f.dataType) for f in missing}) if missing else df


def merge_on(df: DataFrame, path: str, key: str, metadata: Mapping[str, Any]) -> int | None:
    """MERGE ``df`` into the table at ``path`` on ``key`` (matches updated, the rest inserted).

    ``df`` must hold one row per key. Returns the new version, or None when Delta made no commit.
    """
    commit = merge_commit(df, path, key, metadata)
    return commit.version if commit else None


def merge_commit(
    df: DataFrame, path: str, key: str, metadata: Mapping[str, Any], replace_when: str | None = None
) -> Commit | None:
    """:func:`merge_on`, returning the whole commit (version, operation metrics) or None.

    ``replace_when``: a SQL condition on the table's row ``t`` and the new row ``s``; a matched row
    is replaced only where it holds (``"t.status <> 'ok'"``: a run recorded ok stays). None: always.
    """
    spark = df.sparkSession
    df = with_table_columns(df, path)
    write_id, stamped = _stamped(metadata)
    condition = f"t.`{key}` = s.`{key}`"

    def build(t: DeltaTable):
        merge = t.alias("t").merge(df.alias("s"), condition)
        return merge.whenMatchedUpdateAll(condition=replace_when).whenNotMatchedInsertAll()

    _merge(spark, path, stamped, build)
    return find_commit(spark, path, write_id)


def update_columns(
    df: DataFrame, path: str, key: str, columns: list[str], metadata: Mapping[str, Any]
) -> Commit | None:
    """Set ``columns`` of the table's rows whose ``key`` is in ``df`` to ``df``'s values (a MERGE
    that updates matched rows only; the table's other columns and rows stay as they are).

    Columns the table lacks are added first (an ``ALTER TABLE``), as nulls for every row.
    """
    spark = df.sparkSession
    have = set(spark.read.format("delta").load(path).columns)
    missing = [f for f in df.schema.fields if f.name in columns and f.name not in have]
    if missing:
        added = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({added})")
    write_id, stamped = _stamped(metadata)

    def build(t: DeltaTable):
        merge = t.alias("t").merge(df.alias("s"), f"t.`{key}` = s.`{key}`")
        return merge.whenMatchedUpdate(set={f"`{c}`": f"s.`{c}`" for c in columns})

    _merge(spark, path, stamped, build)
    return find_commit(spark, path, write_id)


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
