"""Runs tables: one row per training run, trained inside Spark tasks, MERGEd by run id.

Proxy runs (``proxy_runs``, :mod:`quadmix_spark.proxy.runs`) and reweighting runs
(``reweight_runs``, :mod:`quadmix_spark.pipeline.reweight_runs`) share this machinery:

- the columns every runs table has (:data:`COMMON`), each table declaring its own beside them
  (:class:`RunsTable`);
- :func:`plan`: which runs to train, from the statuses recorded (an ok run never again; a failed
  one again only with ``retry_failed``);
- :func:`train_in_tasks`: one ``groupBy("run_id").applyInPandas`` group per run. An exception
  inside a run becomes that run's row (status ``failed``, the error and the last frames of its
  traceback), never the task's failure, so the other runs go on. A lost executor makes Spark
  retry the task; the attempt number is recorded, and so are the run's seconds;
- :func:`record`: MERGE by ``run_id`` (an ok row is never replaced) into a table created
  race-free, retried on a concurrent writer's conflict (:func:`quadmix_spark.spark.tables.merge_commit`);
- :func:`statuses` and :func:`load` read it back.

Common columns (types fixed: tables written before keep loading)::

    run_id string, kind string, status string ('ok' | 'failed'), error string,
    attempt int, seconds double, written_at timestamp
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import types as T

from . import tables
from .shipping import ship

__all__ = [
    "COMMON",
    "Plan",
    "RunStep",
    "RunsTable",
    "ensure",
    "failure",
    "load",
    "plan",
    "record",
    "ship",
    "statuses",
    "train_in_tasks",
]

COMMON = {
    f.name: f
    for f in (
        T.StructField("run_id", T.StringType()),
        T.StructField("kind", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("error", T.StringType()),
        T.StructField("attempt", T.IntegerType()),
        T.StructField("seconds", T.DoubleType()),
        T.StructField("written_at", T.TimestampType()),
    )
}


@dataclass(frozen=True)
class RunsTable:
    """A runs table's columns in table order: the common ones and the table's own.

    ``added``: own columns added after tables of this kind existed; a table without them gets
    them (null in the old rows) on the next write.
    """

    name: str
    schema: T.StructType
    added: tuple[str, ...] = ()

    @classmethod
    def declare(cls, name: str, *columns: T.StructField | str, added: Sequence[str] = ()) -> RunsTable:
        """``columns`` in table order; a string names a common column (:data:`COMMON`)."""
        fields = [COMMON[c] if isinstance(c, str) else c for c in columns]
        names = [f.name for f in fields]
        missing = [c for c in COMMON if c not in names]
        if missing or len(set(names)) != len(names):
            raise ValueError(f"runs table {name}: common columns {missing} missing, or a column twice")
        return cls(name, T.StructType(fields), tuple(added))

    def result(self, names: Sequence[str] | None = None) -> T.StructType:
        """What a task returns: the columns ``names`` (default: all but ``written_at``)."""
        names = [f.name for f in self.schema.fields if f.name != "written_at"] if names is None else names
        return T.StructType([self.schema[n] for n in names])


# -- which runs ----------------------------------------------------------------------------------

S = TypeVar("S")


@dataclass
class Plan:
    """The runs of one call: ``todo`` to train; ``ok`` (run ids) and ``failed_before`` (run id →
    error; recorded as failed and not retried) left alone."""

    todo: list[Any]
    ok: list[str] = field(default_factory=list)
    failed_before: dict[str, str] = field(default_factory=dict)


def plan(specs: Sequence[S], known: Mapping[str, tuple[str, str | None]], retry_failed: bool) -> Plan:
    """Split ``specs`` (objects with a ``run_id``) by their recorded status (:func:`statuses`)."""
    status = {s.run_id: known.get(s.run_id, (None, None)) for s in specs}
    ok = [r for r, (st, _) in status.items() if st == "ok"]
    failed = {r: err or "" for r, (st, err) in status.items() if st not in (None, "ok")}
    todo = [s for s in specs if status[s.run_id][0] is None or (retry_failed and s.run_id in failed)]
    return Plan(todo, ok, {} if retry_failed else failed)


# -- training inside Spark tasks -----------------------------------------------------------------


class RunStep(Protocol):
    """What a task does with one run's rows (a pandas frame with ``run_id`` and the run's inputs)."""

    def start(self, rows: pd.DataFrame) -> dict[str, Any]:
        """The run's row before training: ``run_id`` and every column's value for a failed run."""
        ...

    def fit(self, rows: pd.DataFrame) -> dict[str, Any]:
        """Train the run; the columns it fills (its exception is recorded as the run's failure)."""
        ...


def failure(err: BaseException) -> str:
    """A run's error as recorded: ``Type: message`` and the last frames of the traceback."""
    return f"{type(err).__name__}: {err}\n" + "".join(traceback.format_exc(limit=-3))


def _in_task(step: RunStep, names: list[str]):
    def task(rows: pd.DataFrame) -> pd.DataFrame:
        from pyspark import TaskContext

        started = time.time()
        row = step.start(rows)
        ctx = TaskContext.get()
        row |= {"status": "ok", "error": None, "attempt": ctx.attemptNumber() if ctx else 0}
        try:
            row |= step.fit(rows)
        except Exception as err:  # recorded in the table; the other runs go on
            row["status"], row["error"] = "failed", failure(err)
        row["seconds"] = round(time.time() - started, 3)
        return pd.DataFrame([{n: row.get(n) for n in names}])

    return task


def train_in_tasks(
    groups: DataFrame, step: RunStep, result: T.StructType, tasks: int, ship_classes: Iterable[type] = ()
) -> list[dict[str, Any]]:
    """Train every run of ``groups`` (rows with ``run_id``), one group per run, on ``tasks`` tasks.

    Returns one dict per run that had rows, with the columns of ``result``. ``ship_classes``: the
    classes the tasks build (see :func:`ship`).
    """
    ship(*ship_classes)
    rows = (
        groups.repartition(tasks, "run_id")  # one shuffle partition per run: runs spread over tasks
        .groupBy("run_id")
        .applyInPandas(_in_task(step, result.fieldNames()), result)
        .collect()
    )
    return [r.asDict(recursive=True) for r in rows]


# -- the table -----------------------------------------------------------------------------------


def ensure(spark: SparkSession, path: str, table: RunsTable) -> None:
    """Create the table unless it exists (race-free); add its ``added`` columns to an older one.

    Raises RuntimeError when the table at ``path`` lacks other columns: it is not such a table.
    """
    tables.ensure_table(spark, path, table.schema)
    have = set(spark.read.format("delta").load(path).columns)
    missing = [f for f in table.schema.fields if f.name not in have]
    foreign = [f.name for f in missing if f.name not in table.added]
    if foreign:
        raise RuntimeError(f"{path} is not a {table.name} table: it lacks {foreign}")
    for f in missing:  # a table from before the column: it gets it, null in the old rows
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({f.name} {f.dataType.simpleString()})")


def record(
    spark: SparkSession,
    path: str,
    table: RunsTable,
    rows: Sequence[Mapping[str, Any]],
    replace_ok: bool = False,
) -> tables.Commit | None:
    """MERGE ``rows`` (dicts of the table's columns but ``written_at``) by run id.

    An ok row is never replaced (unless ``replace_ok``: an import correcting its runs); a failed
    one is, by the new attempt. The MERGE runs again when a concurrent writer committed first.
    """
    ensure(spark, path, table)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    source = spark.createDataFrame([{**r, "written_at": now} for r in rows], table.schema)
    metadata = {"runs_table": table.name, "runs": len(rows)}
    replace_when = None if replace_ok else "t.status <> 'ok'"
    return tables.merge_commit(source, path, "run_id", metadata, replace_when=replace_when)


def statuses(spark: SparkSession, path: str) -> dict[str, tuple[str, str | None]]:
    """run id → (status, error) of every recorded run ({} when there is no table)."""
    if not tables.exists(spark, path):
        return {}
    rows = spark.read.format("delta").load(path).select("run_id", "status", "error").collect()
    return {r[0]: (r[1], r[2]) for r in rows}


def load(spark: SparkSession, path: str, where: Column | None = None) -> pd.DataFrame:
    """The table (the rows where ``where`` holds) as pandas, one row per run."""
    df = spark.read.format("delta").load(path)
    return (df if where is None else df.where(where)).toPandas()
