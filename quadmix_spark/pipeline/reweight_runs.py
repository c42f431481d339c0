"""Reweighting runs as Spark tasks, their results in the ``reweight_runs`` Delta table.

One task per run: a ``reweight`` run fits one method (TANDEM, DoReMi, Uniform; :mod:`quadmix_spark.
mixing`) for one (seed, hyperparameter set) on the domain streams; an ``eval`` run trains a fresh
tinylm on a mixture's training stream drawn from the same streams (``core.mixture_stream``:
data-restricted domains repeat) and scores it on the validation streams. The streams and the proxy
vocabulary reach the tasks as one broadcast; the runs are ``groupBy(run_id).applyInPandas`` groups.

A ``reweight`` run builds the method's registered class
(:data:`quadmix_spark.mixing.reweighters.REWEIGHTERS`), resolved on the driver and shipped with
the task, so a method registered outside the package runs like a built-in one; every method is
called the same way: ``cls(**shape, **params, seed=s, vocab=v).fit(train, val)``.

Failures are recorded, never retried silently: an exception inside a run becomes a row with status
``failed`` and the error, and the next call leaves it alone unless ``reweight.retry_failed`` is
true (the summary lists them). A run already ok is never trained again, so a rerun trains only
what is missing. A lost executor makes Spark retry the task (training is deterministic on the CPU;
the attempt number is kept). The table is created once, race-free (a concurrent creator's commit is
accepted), and results are MERGEd by ``run_id``, retried on a concurrent writer's conflict: the
runs-table machinery every runs table shares (:mod:`quadmix_spark.spark.runs_table`).

On a cluster with GPUs, set ``spark.task.resource.gpu.amount`` (e.g. 1, with
``spark.executor.resource.gpu.amount`` and a discovery script) and ``proxy.tinylm.device: cuda``:
each task then trains on the GPU Spark assigned to it (``cuda:<address>``).

Table schema (one row per run)::

    run_id string, kind string ('reweight' | 'eval'), method string, seed int, params string (JSON:
    the hyperparameter set as configured), streams_key string, status string ('ok' | 'failed'),
    error string, domains array<string> (sorted), alpha array<array<double>> (α per episode / step),
    delta array<array<double>> (TANDEM's Δ, DoReMi's excess loss λ), train_loss array<double>,
    mixture array<double> (the final mixture, ``domains`` order), final string, epochs
    map<string,double>, vocab_key string, n_train_tokens long, eval_losses map<string,double>,
    target_loss double, history string (JSON), attempt int, seconds double, written_at timestamp,
    round_alphas array<array<double>> (a method run in rounds, DoReMi: each round's ᾱ; the last
    round's is the mixture, and ``alpha`` / ``delta`` / ``history`` are that round's; [] otherwise)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from quadmix_spark import core
from quadmix_spark.spark import runs_table
from quadmix_spark.spark.runs_table import RunsTable

log = logging.getLogger(__name__)

_D = T.DoubleType()
#: the ``reweight_runs`` table: the common runs-table columns (named) and its own, in table order.
RUNS = RunsTable.declare(
    "reweight_runs",
    "run_id",
    "kind",
    T.StructField("method", T.StringType()),
    T.StructField("seed", T.IntegerType()),
    T.StructField("params", T.StringType()),
    T.StructField("streams_key", T.StringType()),
    "status",
    "error",
    T.StructField("domains", T.ArrayType(T.StringType())),
    T.StructField("alpha", T.ArrayType(T.ArrayType(_D))),
    T.StructField("delta", T.ArrayType(T.ArrayType(_D))),
    T.StructField("train_loss", T.ArrayType(_D)),
    T.StructField("mixture", T.ArrayType(_D)),
    T.StructField("final", T.StringType()),
    T.StructField("epochs", T.MapType(T.StringType(), _D)),
    T.StructField("vocab_key", T.StringType()),
    T.StructField("n_train_tokens", T.LongType()),
    T.StructField("eval_losses", T.MapType(T.StringType(), _D)),
    T.StructField("target_loss", _D),
    T.StructField("history", T.StringType()),
    "attempt",
    "seconds",
    "written_at",
    T.StructField("round_alphas", T.ArrayType(T.ArrayType(_D))),
    added=("round_alphas",),
)
TABLE = RUNS.schema
RESULT = RUNS.result()


@dataclass(frozen=True)
class ReweightSpec:
    """One run as the driver knows it before training.

    ``params`` are the method's keyword arguments (a ``reweight`` run) or the fresh proxy's
    mixture under ``{"mixture": {domain: share}, "tokens": n}`` (an ``eval`` run).
    """

    run_id: str
    kind: str
    method: str
    seed: int
    params: Mapping[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {
                "run_id": self.run_id,
                "kind": self.kind,
                "method": self.method,
                "seed": self.seed,
                "params": dict(self.params),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ReweightSpec:
        raw = json.loads(text)
        return cls(raw["run_id"], raw["kind"], raw["method"], raw["seed"], raw["params"])


@dataclass
class RunsSummary:
    requested: int
    skipped_ok: int
    skipped_failed: dict[str, str]  # recorded as failed earlier, not retried: run id → error
    ok: int
    failed: dict[str, str]  # failed in this call: run id → error
    seconds: float
    trained: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunSettings:
    """What every run of one call shares besides the streams.

    ``shape``: the tinylm shape of the methods (``proxy.tinylm``: d_model … device, threads);
    ``proxy``: the fresh proxies' TinyLMProxy arguments; ``methods``: method name → its registered
    class, for the ``reweight`` runs of the call.
    """

    streams_key: str
    shape: Mapping[str, Any]
    proxy: Mapping[str, Any]
    methods: Mapping[str, type] = field(default_factory=dict)
    vocab: Any = None  # the job's one ProxyVocab, or None (``full``)
    retry_failed: bool = False
    tasks: int | None = None  # Spark tasks; None: one per run


def _device(configured: str) -> str:
    """The GPU Spark assigned to this task (``spark.task.resource.gpu.amount``), else as configured."""
    if not configured.startswith("cuda") and configured != "auto":
        return configured
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpus = ctx.resources().get("gpu") if ctx is not None else None
    if gpus is not None and gpus.addresses and configured in ("cuda", "auto"):
        return f"cuda:{gpus.addresses[0]}"
    return configured


def _row(spec: ReweightSpec, streams_key: str) -> dict[str, Any]:
    return {
        "run_id": spec.run_id,
        "kind": spec.kind,
        "method": spec.method,
        "seed": int(spec.seed),
        "params": json.dumps(dict(spec.params), sort_keys=True),
        "streams_key": streams_key,
        "status": "ok",
        "error": None,
        "domains": [],
        "alpha": [],
        "delta": [],
        "train_loss": [],
        "mixture": [],
        "final": None,
        "epochs": {},
        "vocab_key": None,
        "n_train_tokens": 0,
        "eval_losses": {},
        "target_loss": None,
        "history": "[]",
        "round_alphas": [],
        "attempt": 0,
        "seconds": 0.0,
    }


def fit_method(
    cls: type,
    spec: ReweightSpec,
    train: Mapping[str, np.ndarray],
    val: Mapping[str, np.ndarray],
    shape: Mapping[str, Any],
    vocab: Any,
) -> dict[str, Any]:
    """A ``reweight`` run: the method's estimator fitted on the streams; its result() as columns."""
    kwargs = {**shape, **dict(spec.params), "seed": int(spec.seed)}
    if "vocab" not in spec.params:  # the job's one mapping (proxy.tinylm.vocab), "full" included
        kwargs["vocab"] = vocab if vocab is not None else "full"
    method = cls(**kwargs).fit(train, val or None)
    res = method.result()
    signal = getattr(method, "signal", None)
    return {
        "domains": res["domains"],
        "alpha": res["alpha"],
        "delta": [h[signal] for h in res["history"]] if signal else [],
        "train_loss": [float(h["train_loss"]) for h in res["history"]],
        "mixture": [float(res["mixture"][d]) for d in res["domains"]],
        "final": res["final"],
        "epochs": {d: float(e) for d, e in res["epochs"].items()},
        "vocab_key": res["vocab_key"],
        "n_train_tokens": int(res["n_train_tokens"]),
        "history": json.dumps(res["history"]),
        "round_alphas": [[float(a) for a in r["alpha_avg"]] for r in res.get("rounds", [])],
    }


def fit_eval(
    spec: ReweightSpec,
    train: Mapping[str, np.ndarray],
    val: Mapping[str, np.ndarray],
    proxy: Mapping[str, Any],
    vocab: Any,
) -> dict[str, Any]:
    """An ``eval`` run: a fresh tinylm on the mixture's stream, its final loss on every val stream."""
    from quadmix_spark.proxy.tinylm import TinyLMProxy

    shares = dict(spec.params["mixture"])
    stream, taken = core.mixture_stream(
        train, shares, int(spec.params["tokens"]), int(spec.seed), int(proxy["context"]) + 1
    )
    model = TinyLMProxy(**{**proxy, "seed": int(spec.seed)}, vocab=vocab).fit(stream, val)
    losses = {r["eval_set"]: float(r["loss"]) for r in model.losses_}
    domains = sorted(shares)
    return {
        "domains": domains,
        "mixture": [float(shares[d]) for d in domains],
        "epochs": {d: taken[d] / len(train[d]) for d in domains},
        "vocab_key": model.vocab_key_,
        "n_train_tokens": int(model.n_train_tokens_),
        "eval_losses": losses,
        "target_loss": float(np.mean(list(losses.values()))),
    }


@dataclass(frozen=True)
class ReweightStep:
    """What each task does with one run's row (``run_id``, ``spec`` JSON): fit the method or the
    fresh proxy on the broadcast streams (``{"train", "val", "vocab"}``)."""

    payload: Broadcast
    settings: RunSettings

    def start(self, rows: pd.DataFrame) -> dict[str, Any]:
        return _row(ReweightSpec.from_json(rows["spec"].iloc[0]), self.settings.streams_key)

    def fit(self, rows: pd.DataFrame) -> dict[str, Any]:
        spec, run = ReweightSpec.from_json(rows["spec"].iloc[0]), self.settings
        data = self.payload.value
        device = _device(str(run.shape.get("device", "cpu")))
        if spec.kind == "eval":
            return fit_eval(spec, data["train"], data["val"], {**run.proxy, "device": device}, data["vocab"])
        cls = run.methods[spec.method]
        return fit_method(
            cls, spec, data["train"], data["val"], {**run.shape, "device": device}, data["vocab"]
        )


def ensure_table(spark: SparkSession, path: str) -> None:
    """Create the runs table unless it exists (race-free), and check an existing one is a runs table."""
    runs_table.ensure(spark, path, RUNS)


def statuses(spark: SparkSession, path: str) -> dict[str, tuple[str, str | None]]:
    """run id → (status, error) of every recorded run."""
    return runs_table.statuses(spark, path)


def record(spark: SparkSession, path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """MERGE rows into the runs table by run id (an ok row is never replaced), retried on conflicts."""
    runs_table.record(spark, path, RUNS, rows)


def run_reweight_runs(
    spark: SparkSession,
    path: str,
    specs: Sequence[ReweightSpec],
    train: Mapping[str, np.ndarray],
    val: Mapping[str, np.ndarray],
    settings: RunSettings,
) -> RunsSummary:
    """Train every run of ``specs`` that is not recorded (or failed, with ``settings.retry_failed``)."""
    started = time.time()
    ensure_table(spark, path)
    runs = runs_table.plan(specs, statuses(spark, path), settings.retry_failed)
    for run_id, error in runs.failed_before.items():
        log.warning(
            "reweight runs: %s failed earlier and is not retried (reweight.retry_failed): %s",
            run_id,
            error.splitlines()[0] if error else "",
        )
    summary = RunsSummary(len(specs), len(runs.ok), runs.failed_before, 0, {}, 0.0)
    if runs.todo:
        log.info(
            "reweight runs: training %d of %d runs (%d ok already)", len(runs.todo), len(specs), len(runs.ok)
        )
        rows = _train(spark, path, runs.todo, train, val, settings)
        summary.trained = [r["run_id"] for r in rows]
        summary.failed = {r["run_id"]: r["error"] for r in rows if r["status"] != "ok"}
        summary.ok = len(rows) - len(summary.failed)
    summary.seconds = round(time.time() - started, 1)
    return summary


def _train(spark, path, specs, train, val, settings: RunSettings) -> list[dict[str, Any]]:
    """The runs of ``specs`` as Spark tasks, their rows MERGEd into the table at ``path``."""
    payload = spark.sparkContext.broadcast({"train": dict(train), "val": dict(val), "vocab": settings.vocab})
    frame = spark.createDataFrame([(s.run_id, s.to_json()) for s in specs], "run_id string, spec string")
    step = ReweightStep(payload, settings)
    tasks = settings.tasks or len(specs)
    rows = runs_table.train_in_tasks(frame, step, RESULT, tasks, settings.methods.values())
    record(spark, path, rows)
    payload.unpersist()
    return rows


def load_runs(spark: SparkSession, path: str, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The runs table (optionally only ``run_ids``) as pandas, one row per run."""
    return runs_table.load(spark, path, None if run_ids is None else F.col("run_id").isin(list(run_ids)))
