"""The refresh job: one nightly run, keyed by a run date, of annotate → (assign) → stats → select.

Steps: ``annotate --mode incremental`` (only documents the annotated table does not hold yet) →
``assign`` when the clusters are the domains (``domain_column`` is ``cluster.column``: the saved
clusters model names the rows it has not named yet, the night's new ids) → ``stats`` of the
annotated version they left → ``select`` with the config's fixed θ (and mixture)
pinned to that stats version → shards, manifest and report as ``select`` writes them.

Every step is the pipeline's own function (:func:`run_annotate`, :func:`run_assign`,
:func:`run_stats`, :func:`run_select`); this module only decides which of them still has to run
for the date and records what each did in the ``refresh_runs`` Delta table (append-only, one row per event):

- ``run/started``: the attempt's config hash, inputs, and the annotated and quarantine versions
  before it (the base the run's new documents are counted from);
- ``annotate|assign|stats|select/done``: the versions the step left and its counts;
- ``run/done``: the whole summary; ``<step>/failed``: the error.

A date whose run is done is not run again ("nothing to do"). A run killed at any step resumes at
the first step without a ``done`` row: a killed annotate reruns (its insert of new ids finds them
present, and the run's new documents are counted from the Delta history since the base version,
so they are the same as had it not been killed); a killed assign reruns (it names the rows still
unnamed, and its count comes from the history too); a killed stats step finds the stats run it
committed (same annotated version and settings) and reuses it, so the selection id, which names
the stats version, is the same too; a killed select rewrites its own slice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig, to_dict
from quadmix_spark.mixing import sources
from quadmix_spark.pipeline import inputs
from quadmix_spark.pipeline.annotate import (
    AnnotateFailed,
    annotator_hash,
    annotator_specs,
    run_annotate,
)
from quadmix_spark.pipeline.annotate import format_summary as format_annotate
from quadmix_spark.pipeline.clustering import check_model, format_assign, run_assign
from quadmix_spark.pipeline.select import check_config as check_select
from quadmix_spark.pipeline.select import format_summary as format_select
from quadmix_spark.pipeline.select import load_checked_params, run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.spark import files, tables
from quadmix_spark.spark.cost import Cost, CostMeter
from quadmix_spark.spark.stats_table import ALL_DOMAINS, load_stats

log = logging.getLogger(__name__)

STEPS = ("annotate", "assign", "stats", "select")
COST_COLUMNS = ("wall_s", "executor_core_s", "executor_cpu_s", "tokens_per_core_hour")

RUNS_SCHEMA = StructType(
    [
        StructField("run_date", DateType(), False),
        StructField("attempt", IntegerType(), False),
        StructField("step", StringType(), False),  # run | annotate | assign | stats | select
        StructField("status", StringType(), False),  # started | done | failed
        StructField("config_hash", StringType(), False),
        StructField("annotated_version", LongType(), True),
        StructField("quarantine_version", LongType(), True),
        StructField("stats_version", LongType(), True),
        StructField("selection_id", StringType(), True),
        StructField("selected_version", LongType(), True),
        StructField("details", StringType(), True),  # JSON: inputs, counts, the error
        StructField("recorded_at", TimestampType(), False),
        StructField("code_version", StringType(), False),
        # What the step cost (a run/done row: the sum of its steps' rows); null in rows recorded
        # before these columns, and in run/started rows. quadmix_spark.spark.cost says how each is measured.
        *[StructField(name, DoubleType(), True) for name in COST_COLUMNS],
        StructField("tokens", LongType(), True),
    ]
)


class RefreshFailed(RuntimeError):
    """A refresh step failed; the failure is recorded in ``refresh_runs`` and a rerun resumes there."""


@dataclass
class RefreshSummary:
    """What the run of one date did (all its steps, whichever invocation ran them)."""

    run_date: str
    attempt: int
    status: str  # completed | already done | partial
    steps_run: list[str]  # by this invocation
    steps_before: list[str]  # done by an earlier invocation of the same attempt
    input_path: str = ""
    input_rows: int | None = None
    new_documents: int | None = None
    quarantined: int | None = None  # input records quarantined by the annotate step
    new_quarantined: int | None = None  # of which new in the quarantine table
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    # Ids already annotated with another text (annotate.on_changed_text): the table's text kept,
    # or the new text written over it. None: a run recorded before these were counted.
    changed_text_kept: int | None = None
    changed_text_replaced: int | None = None
    on_changed_text: str | None = None
    base_annotated_version: int | None = None
    annotated_version: int | None = None
    base_quarantine_version: int | None = None
    quarantine_version: int | None = None
    assigned: int | None = None  # rows the assign step named (None: no assign step)
    cluster_model: str | None = None
    stats_version: int | None = None
    stats_reused: bool | None = None
    selection_id: str | None = None
    selected_version: int | None = None
    selected_docs: int | None = None
    selected_copies: int | None = None
    tokens_selected: dict[str, int] = field(default_factory=dict)
    budget: int | None = None
    out_dir: str | None = None
    completed_at: str | None = None
    seconds: float = 0.0
    # Step (and "run": their sum) → its recorded cost (Cost.to_json); steps recorded before the
    # cost columns are left out.
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_run_date(value: str | None) -> dt.date:
    """``YYYY-MM-DD``, or today in UTC when None."""
    if value is None:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError as err:
        raise ConfigError(f"--run-date: {value!r} is not a date (YYYY-MM-DD)") from err


def config_hash(config: PipelineConfig) -> str:
    """Identity of what a refresh computes: the annotate, stats and select settings, θ's and the
    mixture file's contents and the annotators' model files; not the Spark settings, so a date
    started in local mode may be resumed on a cluster."""
    select = to_dict(config.select)
    select["params"] = core.params_hash(load_checked_params(config))
    mixture = inputs.mixture_file(config, config.select.mixture, "select.mixture")
    if mixture is not None and files.is_file(mixture):
        select["mixture"] = core.content_key(files.read_text(mixture), 16)
    hashed = {
        "annotate": to_dict(config.annotate),
        "annotator_hash": annotator_hash(annotator_specs(config)),
        "stats": to_dict(config.stats),
        "select": select,
        "scorers": config.scorers,
        "domain_column": config.domain_column,
        "token_column": config.token_column,
    }
    if uses_clusters(config):  # only then: the hash of a config without clusters is as before
        hashed["cluster_model"] = cluster_model_id(config)
    return core.content_key(hashed, 16)


def uses_clusters(config: PipelineConfig) -> bool:
    """Whether the domains are the clusters' names, so the night assigns the new ids a cluster."""
    return config.domain_column == config.cluster.column


def steps(config: PipelineConfig) -> tuple[str, ...]:
    """The config's steps in order: the assign step only when the clusters are the domains."""
    return tuple(s for s in STEPS if s != "assign" or uses_clusters(config))


def check_clusters(config: PipelineConfig) -> None:
    """With clusters as domains, a fitted clusters model must exist: otherwise the night's new ids
    would get no domain. Fails naming both keys."""
    if not uses_clusters(config):
        return
    try:
        check_model(config)
    except ConfigError as err:
        raise ConfigError(
            f"domain_column: {config.domain_column!r} is cluster.column, so refresh assigns clusters, "
            f"but {err}; or set domain_column to a classifier's column"
        ) from err


def cluster_model_id(config: PipelineConfig) -> str:
    """The saved clusters model's id (a refit is a new model: the date's config hash changes)."""
    return str(json.loads(files.read_text(check_model(config)))["model_id"])


def ensure_runs_table(spark: SparkSession, path: str) -> None:
    """Create the ``refresh_runs`` table unless it exists (race-free: two runs may create it at once)."""
    tables.ensure_table(spark, path, RUNS_SCHEMA)


@dataclass
class _State:
    """The rows of one date's latest attempt."""

    attempt: int
    started: dict[str, Any]
    done: dict[str, dict[str, Any]]  # step (or "run") → its done row


def _load_state(spark: SparkSession, path: str, run_date: dt.date) -> _State | None:
    rows = spark.read.format("delta").load(path).where(F.col("run_date") == F.lit(run_date)).collect()
    if not rows:
        return None
    attempt = max(r["attempt"] for r in rows)
    mine = sorted((r.asDict() for r in rows if r["attempt"] == attempt), key=lambda r: r["recorded_at"])
    started = next((r for r in mine if r["step"] == "run" and r["status"] == "started"), None)
    if started is None:
        raise RuntimeError(f"refresh_runs: attempt {attempt} of {run_date} has no run/started row")
    done = {r["step"]: r for r in mine if r["status"] == "done"}
    return _State(attempt, started, done)


@dataclass(frozen=True)
class _Run:
    """One attempt of one date: where its event rows go and what they are keyed by."""

    path: str  # the refresh_runs table
    run_date: dt.date
    attempt: int
    cfg_hash: str


def _record(
    spark: SparkSession,
    run: _Run,
    step: str,
    status: str,
    details: dict[str, Any] | None = None,
    cost: Cost | None = None,
    **versions: Any,
) -> dict[str, Any]:
    """Append one event row (a blind append: concurrent runs of other dates never conflict)."""
    row = {name: None for name in RUNS_SCHEMA.names}
    row.update(
        run_date=run.run_date,
        attempt=run.attempt,
        step=step,
        status=status,
        config_hash=run.cfg_hash,
        details=json.dumps(details or {}, sort_keys=True, default=str),
        recorded_at=dt.datetime.now(dt.UTC),  # an instant; read back in the local time zone
        code_version=__version__,
        **versions,
    )
    if cost is not None:
        row.update({k: v for k, v in cost.to_json().items() if k in RUNS_SCHEMA.names})
    frame = spark.createDataFrame([tuple(row[n] for n in RUNS_SCHEMA.names)], RUNS_SCHEMA)
    meta = {
        "job": "refresh",
        "run_date": str(run.run_date),
        "attempt": run.attempt,
        "step": step,
        "status": status,
    }
    # A table from before the cost columns gains them.
    frame.write.format("delta").mode("append").option("mergeSchema", "true").option(
        "userMetadata", json.dumps(meta)
    ).save(run.path)
    return row


def inserted_rows(spark: SparkSession, path: str, after: int, upto: int | None) -> int:
    """Rows inserted into the table by its commits ``after < version <= upto`` (Delta history).

    Appends count ``numOutputRows``, MERGEs ``numTargetRowsInserted`` (updated rows are not new).
    """
    if upto is None or upto <= after:
        return 0
    history = (
        DeltaTable.forPath(spark, path)
        .history()
        .where((F.col("version") > after) & (F.col("version") <= upto))
        .select("operation", "operationMetrics")
        .collect()
    )
    total = 0
    for row in history:
        metrics = row["operationMetrics"] or {}
        key = "numTargetRowsInserted" if row["operation"] == "MERGE" else "numOutputRows"
        total += int(metrics.get(key, 0))
    return total


def find_stats(spark: SparkSession, config: PipelineConfig, annotated_version: int) -> int | None:
    """The first stats run of ``annotated_version`` with this config's settings and scorers, if any.

    Stats are a function of the annotated version and these settings, so a run found here equals
    the one ``run_stats`` would compute.
    """
    path = config.table_path(config.stats.output_table)
    if not tables.exists(spark, path):
        return None
    cfg = config.stats
    wanted = {
        "job": "stats",
        "input_table": config.table_path(cfg.input_table),
        "annotated_version": annotated_version,
        "n_quantiles": cfg.n_quantiles,
        "sample_size": cfg.sample_size,
        "domain_sample_size": cfg.domain_sample_size,
    }
    history = DeltaTable.forPath(spark, path).history().select("version", "userMetadata").collect()
    for row in sorted(history, key=lambda r: r["version"]):
        meta = json.loads(row["userMetadata"]) if row["userMetadata"] else {}
        if all(meta.get(k) == v for k, v in wanted.items()):
            scorers = {s for (d, s) in load_stats(spark, path, row["version"]).quantiles if d == ALL_DOMAINS}
            if scorers == set(config.scorers):
                return int(row["version"])
    return None


def _annotate_step(spark: SparkSession, config: PipelineConfig, state: _State) -> tuple[dict, dict]:
    started = state.started
    out_path = config.table_path(config.annotate.output_table)
    q_path = config.table_path(config.annotate.quarantine_table)
    summary = run_annotate(spark, config, mode="incremental")
    print(format_annotate(summary))
    ann_version, q_version = tables.version(spark, out_path), tables.version(spark, q_path)
    base_ann = _version_or(started["annotated_version"])
    base_q = _version_or(started["quarantine_version"])
    details = {
        "input_rows": summary.input_rows,
        "quarantined": summary.quarantined,
        "quarantined_by_reason": summary.quarantined_by_reason,
        "changed_text_kept": summary.changed_text_kept,
        "changed_text_replaced": summary.replaced,
        "on_changed_text": config.annotate.on_changed_text,
        # From the Delta history since the run's base: the same whether or not a killed annotate
        # had already committed them before this one ran.
        "new_documents": inserted_rows(spark, out_path, base_ann, ann_version),
        "new_quarantined": inserted_rows(spark, q_path, base_q, q_version),
        "tokens_processed": summary.tokens,
    }
    return details, {"annotated_version": ann_version, "quarantine_version": q_version}


def assigned_rows(spark: SparkSession, path: str, after: int, upto: int | None) -> int:
    """Rows the assign commits ``after < version <= upto`` named (their MERGEs' updated rows)."""
    if upto is None or upto <= after:
        return 0
    history = (
        DeltaTable.forPath(spark, path)
        .history()
        .where((F.col("version") > after) & (F.col("version") <= upto) & (F.col("operation") == "MERGE"))
        .select("operationMetrics", "userMetadata")
        .collect()
    )
    meta = [(r["operationMetrics"] or {}, json.loads(r["userMetadata"] or "{}")) for r in history]
    return sum(int(m.get("numTargetRowsUpdated", 0)) for m, u in meta if u.get("job") == "assign")


def _assign_step(spark: SparkSession, config: PipelineConfig, state: _State) -> tuple[dict, dict]:
    path = config.table_path(config.cluster.input_table)
    summary = run_assign(spark, config)
    print(format_assign(summary))
    version = tables.version(spark, path)
    details = {
        # From the history since the annotate step's version: the same had a killed assign
        # committed its MERGE before this one ran.
        "assigned": assigned_rows(
            spark, path, _version_or(state.done["annotate"]["annotated_version"]), version
        ),
        "kept": summary.kept,
        "model_id": summary.model_id,
        "column": summary.column,
        "per_cluster": summary.per_cluster,
        "tokens_processed": summary.tokens,
    }
    return details, {"annotated_version": version}


def _stats_step(spark: SparkSession, config: PipelineConfig, state: _State) -> tuple[dict, dict]:
    source = config.table_path(config.stats.input_table)
    annotated_version = tables.version(spark, source)
    if annotated_version is None:
        raise ConfigError(f"stats.input_table: no Delta table at {source}")
    found = find_stats(spark, config, annotated_version)
    if found is None:
        stats = run_stats(spark, config)
    else:
        stats = load_stats(spark, config.table_path(config.stats.output_table), found)
        print(f"stats: reusing version {found}, the stats of annotated v{annotated_version} (same settings)")
    details = {"reused": found is not None, "docs": stats.docs, "tokens": stats.tokens}
    details["tokens_processed"] = stats.cost["tokens"] if stats.cost else None  # reused: none read
    versions = {"stats_version": stats.stats_version, "annotated_version": stats.annotated_version}
    return details, versions


def _select_step(spark: SparkSession, config: PipelineConfig, state: _State) -> tuple[dict, dict]:
    stats_version = state.done["stats"]["stats_version"]
    select = dataclasses.replace(config.select, stats_version=stats_version)
    pinned = dataclasses.replace(config, select=select)
    summary = run_select(spark, pinned)
    print(format_select(summary))
    details = {
        "selected_docs": summary.selected_docs,
        "selected_copies": summary.selected_copies,
        "tokens_selected": summary.tokens_after,
        "budget": summary.budget,
        "out_dir": summary.out_dir,
        "tokens_processed": summary.cost["tokens"] if summary.cost else None,
    }
    selected_version = tables.version(spark, config.table_path(config.select.output_table))
    versions = {
        "stats_version": stats_version,
        "selection_id": summary.selection_id,
        "selected_version": selected_version,
    }
    return details, versions


def _version_or(value: int | None) -> int:
    return -1 if value is None else int(value)


#: step → what it does: (details, versions) for its ``done`` row, in the order they run.
_STEP_FUNCTIONS: dict[str, Callable[[SparkSession, PipelineConfig, _State], tuple[dict, dict]]] = {
    "annotate": _annotate_step,
    "assign": _assign_step,
    "stats": _stats_step,
    "select": _select_step,
}


def check_config(config: PipelineConfig, step: str) -> str:
    """What a refresh checks before any Spark work (the step, the select settings, θ, the mixture's
    file); returns the config hash."""
    if step != "all" and step not in steps(config):
        raise ConfigError(f"--step: {step!r} is not all, {', '.join(steps(config))}")
    check_clusters(config)
    check_select(config)
    if config.select.mixture is not None:
        sources.check(config.select.mixture, inputs.mixture_context(config, "select.mixture"))
    return config_hash(config)  # also checks θ


def run_refresh(
    spark: SparkSession,
    config: PipelineConfig,
    run_date: dt.date,
    step: str = "all",
    restart: bool = False,
) -> RefreshSummary:
    """Run (or resume) the refresh of ``run_date``; ``step`` runs one step only (``all``: the rest).

    ``restart`` begins a new attempt for a date that is done or was started with another config.
    Plan (checks, the date's recorded state) → the steps still to run → the run's ``done`` row.
    """
    started_at = time.time()
    cfg_hash = check_config(config, step)
    path = config.table_path(config.refresh.runs_table)
    ensure_runs_table(spark, path)
    state = _load_state(spark, path, run_date)
    if state is not None and not restart:
        _check_same_config(state, run_date, cfg_hash)
        if "run" in state.done:
            return _timed(_summary(state, [], "already done", steps(config)), started_at)
    if state is None or restart:
        attempt = 1 if state is None else state.attempt + 1
        state = _start_attempt(spark, config, _Run(path, run_date, attempt, cfg_hash))
    run = _Run(path, run_date, state.attempt, cfg_hash)
    ran = _run_steps(spark, config, run, state, steps(config) if step == "all" else (step,))
    return _timed(_finish(spark, run, state, ran, steps(config)), started_at)


def _timed(summary: RefreshSummary, started_at: float) -> RefreshSummary:
    summary.seconds = round(time.time() - started_at, 1)
    return summary


def _check_same_config(state: _State, run_date: dt.date, cfg_hash: str) -> None:
    if state.started["config_hash"] != cfg_hash:
        raise ConfigError(
            f"refresh {run_date}: attempt {state.attempt} was started with config hash "
            f"{state.started['config_hash']}, this config hashes to {cfg_hash} (θ, the mixture, or an "
            "annotate/stats/select setting changed); rerun with the same config, or pass --restart "
            "to begin a new attempt"
        )


def _start_attempt(spark: SparkSession, config: PipelineConfig, run: _Run) -> _State:
    """Record the attempt's ``run/started`` row: its inputs and the versions it starts from."""
    ann_path = config.table_path(config.annotate.output_table)
    q_path = config.table_path(config.annotate.quarantine_table)
    source = config.annotate.input
    started = {
        "input_path": source.path,
        "input_format": source.format,
        "input_version": tables.version(spark, source.path) if source.format == "delta" else None,
        "params_file": config.select.params,
        "params_hash": core.params_hash(load_checked_params(config)),
        "mixture": config.select.mixture,
        "selector": config.select.selector,
        "seed": config.select.seed,
        "token_budget": config.select.token_budget,
        "annotated_table": ann_path,
        "quarantine_table": q_path,
    }
    _record(
        spark, run, "run", "started", started,
        annotated_version=tables.version(spark, ann_path),
        quarantine_version=tables.version(spark, q_path),
    )  # fmt: skip
    state = _load_state(spark, run.path, run.run_date)
    assert state is not None
    return state


def _run_steps(
    spark: SparkSession, config: PipelineConfig, run: _Run, state: _State, wanted: tuple[str, ...]
) -> list[str]:
    """The wanted steps not done yet, in order, each recorded ``done`` or ``failed``; returns those run."""
    ran: list[str] = []
    order = steps(config)
    for name in order:
        if name in state.done:
            continue
        if name not in wanted:
            if order.index(name) < order.index(wanted[0]):
                raise ConfigError(
                    f"refresh {run.run_date} --step {wanted[0]}: the {name} step has not run for this date "
                    f"(attempt {state.attempt}); run --step {name} first, or --step all"
                )
            break
        log.info("refresh %s (attempt %d): %s", run.run_date, state.attempt, name)
        meter = CostMeter(spark, f"refresh-{name}")
        try:
            with meter:
                details, versions = _STEP_FUNCTIONS[name](spark, config, state)
        except Exception as err:
            error = {"error": f"{type(err).__name__}: {err}"[:4000]}
            if isinstance(err, AnnotateFailed) and err.summary is not None:
                error["summary"] = dataclasses.asdict(err.summary)
            _record(spark, run, name, "failed", error, meter.cost)
            raise
        cost = meter.cost.with_tokens(details.get("tokens_processed"))
        state.done[name] = _record(spark, run, name, "done", details, cost, **versions)
        ran.append(name)
    return ran


def _finish(
    spark: SparkSession, run: _Run, state: _State, ran: list[str], order: tuple[str, ...]
) -> RefreshSummary:
    """The run's ``run/done`` row once every step is done; its summary either way."""
    if not all(s in state.done for s in order):
        return _summary(state, ran, "partial", order)
    summary = _summary(state, ran, "completed", order)
    row = _record(
        spark, run, "run", "done", dataclasses.asdict(summary), step_costs(state.done[s] for s in order),
        annotated_version=summary.annotated_version, quarantine_version=summary.quarantine_version,
        stats_version=summary.stats_version, selection_id=summary.selection_id,
        selected_version=summary.selected_version,
    )  # fmt: skip
    summary.completed_at = str(row["recorded_at"])[:19]
    if row.get("wall_s") is not None:
        summary.costs["run"] = _row_cost(row).to_json()
    return summary


def _summary(state: _State, ran: list[str], status: str, order: tuple[str, ...]) -> RefreshSummary:
    """The date's summary from its recorded rows (the same whichever invocation ran each step)."""
    started = state.started
    inputs = json.loads(started["details"])
    summary = RefreshSummary(
        run_date=str(started["run_date"]),
        attempt=state.attempt,
        status=status,
        steps_run=ran,
        steps_before=[s for s in order if s in state.done and s not in ran],
        input_path=inputs.get("input_path", ""),
        base_annotated_version=started["annotated_version"],
        base_quarantine_version=started["quarantine_version"],
    )
    if "run" in state.done:
        summary.completed_at = str(state.done["run"]["recorded_at"])[:19]
    for step, row in state.done.items():
        if row.get("wall_s") is not None:
            summary.costs[step] = _row_cost(row).to_json()
    if "annotate" in state.done:
        row = state.done["annotate"]
        details = json.loads(row["details"])
        summary.input_rows = details["input_rows"]
        summary.new_documents = details["new_documents"]
        summary.quarantined = details["quarantined"]
        summary.new_quarantined = details["new_quarantined"]
        summary.quarantined_by_reason = details["quarantined_by_reason"]
        summary.changed_text_kept = details.get("changed_text_kept")
        summary.changed_text_replaced = details.get("changed_text_replaced")
        summary.on_changed_text = details.get("on_changed_text")
        summary.annotated_version = row["annotated_version"]
        summary.quarantine_version = row["quarantine_version"]
    if "assign" in state.done:
        details = json.loads(state.done["assign"]["details"])
        summary.assigned, summary.cluster_model = details["assigned"], details["model_id"]
    if "stats" in state.done:
        row = state.done["stats"]
        summary.stats_version = row["stats_version"]
        summary.stats_reused = json.loads(row["details"])["reused"]
        summary.annotated_version = row["annotated_version"]  # what the stats (and select) describe
    if "select" in state.done:
        _select_summary(summary, state.done["select"])
    return summary


def _select_summary(summary: RefreshSummary, row: dict[str, Any]) -> None:
    details = json.loads(row["details"])
    summary.selection_id = row["selection_id"]
    summary.selected_version = row["selected_version"]
    summary.selected_docs = details["selected_docs"]
    summary.selected_copies = details["selected_copies"]
    summary.tokens_selected = {d: int(t) for d, t in details["tokens_selected"].items()}
    summary.budget = details["budget"]
    summary.out_dir = details["out_dir"]


def _row_cost(row: dict[str, Any]) -> Cost:
    return Cost(row["wall_s"], row.get("executor_core_s"), row.get("executor_cpu_s"), row.get("tokens"))


def step_costs(rows: Iterable[dict[str, Any]]) -> Cost | None:
    """The steps' recorded costs added up (tokens: the annotate step's, the night's new work);
    None when a step's row predates the cost columns."""
    rows = list(rows)
    if any(r.get("wall_s") is None for r in rows):
        return None

    def add(name: str) -> float | None:
        values = [r[name] for r in rows if r.get(name) is not None]
        return sum(values) if values else None

    tokens = next((r.get("tokens") for r in rows if r["step"] == "annotate"), None)
    return Cost(add("wall_s"), add("executor_core_s"), add("executor_cpu_s"), tokens)


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def format_summary(s: RefreshSummary) -> str:
    """End-of-run summary: new documents, quarantined, tokens selected per domain, versions."""
    if s.status == "already done":
        head = f"refresh {s.run_date}: already done (attempt {s.attempt}, at {s.completed_at}); nothing to do"
    else:
        before = f"; done before: {', '.join(s.steps_before)}" if s.steps_before else ""
        ran = ", ".join(s.steps_run) or "nothing"
        head = f"refresh {s.run_date} (attempt {s.attempt}): {s.status}; ran {ran}{before} in {s.seconds}s"
    lines = [head]
    if s.new_documents is not None:
        lines.append(
            f"  annotate   {s.input_rows} input records from {s.input_path}: {s.new_documents} new documents "
            f"(annotated {_v(s.base_annotated_version)} → {_v(s.annotated_version)}), "
            f"{s.quarantined} quarantined, {s.new_quarantined} of them new "
            f"(quarantine {_v(s.base_quarantine_version)} → {_v(s.quarantine_version)})"
        )
        for reason, n in sorted(s.quarantined_by_reason.items()):
            lines.append(f"    quarantined {reason:<16} {n:>8}")
        if s.changed_text_kept is not None:
            lines.append(
                f"    changed texts: {s.changed_text_kept} kept, {s.changed_text_replaced} replaced "
                f"(annotate.on_changed_text={s.on_changed_text})"
            )
    if s.assigned is not None:
        lines.append(f"  assign     {s.assigned} documents named a cluster by model {s.cluster_model}")
    if s.stats_version is not None:
        how = "reused" if s.stats_reused else "computed"
        lines.append(f"  stats      {_v(s.stats_version)} of annotated {_v(s.annotated_version)} ({how})")
    if s.selection_id is not None:
        total = sum(s.tokens_selected.values())
        budget = f" (budget {s.budget})" if s.budget else ""
        lines.append(
            f"  select     {s.selection_id}: {s.selected_docs} documents, {s.selected_copies} copies, "
            f"{total} tokens{budget}; selected {_v(s.selected_version)} → {s.out_dir}"
        )
        lines.append(f"    {'domain':<24} {'tokens selected':>15}")
        for domain, tokens in sorted(s.tokens_selected.items()):
            lines.append(f"    {domain:<24} {tokens:>15}")
    for step in (*STEPS, "run"):
        if step in s.costs:
            lines.append(f"  {step:<10} {Cost.from_json(s.costs[step]).line()}")
    return "\n".join(lines)
