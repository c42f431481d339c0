"""What a job cost: wall seconds, executor core-seconds and CPU seconds, tokens per core-hour.

A :class:`CostMeter` tags every Spark job its thread starts (``SparkContext.addJobTag``: tags add
up, so a meter inside another — a refresh step inside the refresh — counts in both, and a job
group the caller set is left alone) and, when asked, sums the task metrics of those jobs' stages
from the driver's status store (``AppStatusStore``, reached through py4j).

Why the status store: it is the store the Spark UI and its REST API read, kept by the driver
from the executors' task-end events, so it is the same in local mode and on a standalone (or
YARN, Kubernetes) cluster; unlike the REST API it needs neither the UI (tests and many batch
deployments turn it off) nor an HTTP port, and unlike a ``SparkListener`` it needs no JVM class
of ours and no callback server. Its limits: it keeps the last ``spark.ui.retainedJobs`` /
``spark.ui.retainedStages`` (1000 each by default), so a job that starts more than that counts
only the latest; and a Spark Connect session has no JVM to reach, so only wall time is measured.

Two executor figures, because Spark's CPU metric does not see Python: ``executor_cpu_s`` is
``executorCpuTime``, the CPU of the JVM task threads, which leaves out the Python workers that
run the annotators (a ``mapInArrow`` task's JVM thread mostly waits for its worker);
``executor_core_s`` is ``executorRunTime``, the seconds each task held its core, Python worker
included. A task holds one core (``spark.task.cpus`` = 1) whether it computes or waits, so core
time is what a run costs a cluster, and tokens per core-hour is measured against it.

A third figure is for the jobs whose work is mostly on the driver (``bimix``, ``fit-search``, the
experiment's surrogate and search): ``driver_cpu_s``, the CPU seconds of the driver's Python
process (``time.process_time``, all its threads; the JVM and the Python workers are other
processes). A meter made with ``spark=None`` (``bimix`` and ``fit-search`` on files) measures
only wall and driver time.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from py4j.protocol import Py4JError
from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_TAG_PREFIX = "quadmix-cost"


@dataclass(frozen=True)
class Cost:
    """One job's cost; the executor figures are None where no JVM was reachable (Spark Connect)."""

    wall_s: float
    executor_core_s: float | None
    executor_cpu_s: float | None
    tokens: int | None = None  # what the job processed: its input tokens
    stages: int = 0
    tasks: int = 0
    driver_cpu_s: float | None = None  # the driver's Python process; None in costs recorded before it

    @property
    def tokens_per_core_hour(self) -> float | None:
        if not self.tokens or not self.executor_core_s:
            return None
        return self.tokens / (self.executor_core_s / 3600.0)

    def with_tokens(self, tokens: int | None) -> Cost:
        return replace(self, tokens=tokens)

    def to_json(self) -> dict[str, Any]:
        """The recorded fields (``tokens_per_core_hour`` is computed from the rounded ones)."""
        core = None if self.executor_core_s is None else round(self.executor_core_s, 3)
        rounded = Cost(
            round(self.wall_s, 3),
            core,
            None if self.executor_cpu_s is None else round(self.executor_cpu_s, 3),
            self.tokens,
            self.stages,
            self.tasks,
            None if self.driver_cpu_s is None else round(self.driver_cpu_s, 3),
        )
        return {
            "wall_s": rounded.wall_s,
            "executor_core_s": rounded.executor_core_s,
            "executor_cpu_s": rounded.executor_cpu_s,
            "tokens": rounded.tokens,
            "tokens_per_core_hour": rounded.tokens_per_core_hour,
            "stages": rounded.stages,
            "tasks": rounded.tasks,
            "driver_cpu_s": rounded.driver_cpu_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cost:
        return cls(
            float(data["wall_s"]),
            data.get("executor_core_s"),
            data.get("executor_cpu_s"),
            data.get("tokens"),
            int(data.get("stages") or 0),
            int(data.get("tasks") or 0),
            data.get("driver_cpu_s"),
        )

    def line(self) -> str:
        """One summary line: ``cost: 12.3 s wall, 20.1 executor core-s (3.2 JVM CPU-s), ...``."""
        driver = "" if self.driver_cpu_s is None else f", {self.driver_cpu_s:.1f} driver CPU-s"
        if self.executor_core_s is None:
            return f"cost: {self.wall_s:.1f} s wall{driver} (executor time not measured: no Spark JVM)"
        text = (
            f"cost: {self.wall_s:.1f} s wall{driver}, {self.executor_core_s:.1f} executor core-s "
            f"({self.executor_cpu_s:.1f} JVM CPU-s) in {self.tasks} tasks"
        )
        if self.tokens_per_core_hour is not None:
            rate = self.tokens_per_core_hour
            shown = f"{rate / 1e9:.3f}B" if rate >= 1e8 else f"{rate / 1e6:.3f}M"
            text += f"; {self.tokens} tokens, {shown} tokens per core-hour"
        return text


def commit_cost(meter: CostMeter | None, tokens: int | None = None) -> dict[str, Any]:
    """The ``cost`` entry of a commit's metadata: the job's cost before this write.

    Delta takes a commit's ``userMetadata`` when the write starts, before the write's own tasks
    run, so a commit can hold only what the job spent before it (``"scope": "before_write"``);
    the job's summary holds the whole.
    """
    if meter is None:
        return {}
    return {"cost": {**meter.so_far(tokens).to_json(), "scope": "before_write"}}


def total(costs: list[Cost]) -> Cost:
    """Costs added up (wall seconds too: the steps of a refresh run one after another)."""

    def add(values: list[Any]) -> Any:
        present = [v for v in values if v is not None]
        return sum(present) if present else None

    return Cost(
        sum(c.wall_s for c in costs),
        add([c.executor_core_s for c in costs]),
        add([c.executor_cpu_s for c in costs]),
        add([c.tokens for c in costs]),
        sum(c.stages for c in costs),
        sum(c.tasks for c in costs),
        add([c.driver_cpu_s for c in costs]),
    )


class CostMeter:
    """Measures the Spark jobs this thread starts between ``__enter__`` and ``__exit__``.

    ``so_far()`` may be called inside the block (what a commit's metadata can carry: Delta fixes
    a commit's metadata before the write's own tasks run); ``cost`` holds the whole after exit.
    """

    def __init__(self, spark: SparkSession | None, job: str):
        self.spark = spark
        self.tag = f"{_TAG_PREFIX}-{job}-{uuid.uuid4().hex[:12]}"
        self.started = 0.0
        self.started_cpu = 0.0
        self.started_ms = 0
        self.cost: Cost | None = None

    def __enter__(self) -> CostMeter:
        self.started = time.perf_counter()
        self.started_cpu = time.process_time()
        self.started_ms = int(time.time() * 1000)
        if self.spark is not None:
            self.spark.sparkContext.addJobTag(self.tag)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.cost = self.so_far()
        finally:
            if self.spark is not None:
                self.spark.sparkContext.removeJobTag(self.tag)

    def so_far(self, tokens: int | None = None) -> Cost:
        """The cost of the tagged jobs finished (or running) now, and the wall and driver CPU
        time since entry."""
        wall = time.perf_counter() - self.started
        driver = time.process_time() - self.started_cpu
        if self.spark is None:
            return Cost(wall, None, None, tokens, driver_cpu_s=driver)
        try:
            measured = _stage_metrics(self.spark, self.tag, self.started_ms)
        except Py4JError as err:  # a cost figure is never worth failing the job it describes
            log.warning(
                "the executor cost of %s could not be read (%s); only wall time is reported", self.tag, err
            )
            measured = None
        if measured is None:
            return Cost(wall, None, None, tokens, driver_cpu_s=driver)
        run_ms, cpu_ns, stages, tasks = measured
        return Cost(wall, run_ms / 1000.0, cpu_ns / 1e9, tokens, stages, tasks, driver)


def _stage_metrics(spark: SparkSession, tag: str, since_ms: int) -> tuple[int, int, int, int] | None:
    """Σ executorRunTime (ms), Σ executorCpuTime (ns), stage attempts and tasks of the tag's jobs."""
    sc = spark.sparkContext
    jsc = getattr(sc, "_jsc", None)
    if jsc is None:
        return None
    jvm_sc = jsc.sc()
    # Task-end events reach the status store through the listener bus, asynchronously.
    jvm_sc.listenerBus().waitUntilEmpty()
    tracker, store = sc.statusTracker(), jvm_sc.statusStore()
    stage_ids: set[int] = set()
    for job_id in jvm_sc.statusTracker().getJobIdsForTag(tag):
        info = tracker.getJobInfo(job_id)
        if info is not None:
            stage_ids.update(info.stageIds)
    no_tasks = sc._jvm.java.util.ArrayList()
    no_quantiles = sc._gateway.new_array(sc._jvm.double, 0)
    run_ms = cpu_ns = attempts = tasks = 0
    for stage_id in sorted(stage_ids):
        found = store.stageData(stage_id, False, no_tasks, False, no_quantiles)
        for i in range(found.size()):
            stage = found.apply(i)
            submitted = stage.submissionTime()
            # A stage another (earlier, untagged) job computed and this one only reuses is
            # listed with the job too: its time is that job's.
            if not submitted.isDefined() or submitted.get().getTime() < since_ms:
                continue
            run_ms += stage.executorRunTime()
            cpu_ns += stage.executorCpuTime()
            attempts += 1
            tasks += stage.numCompleteTasks() + stage.numFailedTasks() + stage.numKilledTasks()
    return run_ms, cpu_ns, attempts, tasks
