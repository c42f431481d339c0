"""Reweighting runs as Spark tasks, their results in the ``reweight_runs`` Delta table.

One task per run: a ``reweight`` run fits one method (TANDEM, DoReMi, Uniform; :mod:`quadmix_spark.
mixing`) for one (seed, hyperparameter set) on the domain streams; an ``eval`` run trains a fresh
tinylm on a mixture's training stream drawn from the same streams (``core.mixture_stream``:
data-restricted domains repeat) and scores it on the validation streams. The streams and the proxy
vocabulary reach the tasks as one broadcast; the runs are ``groupBy(run_id).applyInPandas`` groups.

Failures are recorded, never retried silently: an exception inside a run becomes a row with status
``failed`` and the error, and the next call leaves it alone unless ``reweight.retry_failed`` is
true (the summary lists them). A run already ok is never trained again, so a rerun trains only
what is missing. A lost executor makes Spark retry the task (training is deterministic on the CPU;
the attempt number is kept). The table is created once, race-free (a concurrent creator's commit is
accepted), and results are MERGEd by ``run_id``, retried on a concurrent writer's conflict.

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
    target_loss double, history string (JSON), attempt int, seconds double, written_at timestamp
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from quadmix_spark import core
from quadmix_spark.spark import tables

log = logging.getLogger(__name__)

_D = T.DoubleType()
RESULT = T.StructType(
    [
        T.StructField("run_id", T.StringType()),
        T.StructField("kind", T.StringType()),
        T.StructField("method", T.StringType()),
        T.StructField("seed", T.IntegerType()),
        T.StructField("params", T.StringType()),
        T.StructField("streams_key", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("error", T.StringType()),
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
        T.StructField("attempt", T.IntegerType()),
        T.StructField("seconds", _D),
    ]
)
TABLE = T.StructType([*RESULT.fields, T.StructField("written_at", T.TimestampType())])
CLASSES = {
    "tandem": ("quadmix_spark.mixing.tandem", "Tandem"),
    "doremi": ("quadmix_spark.mixing.doremi", "DoReMi"),
    "uniform": ("quadmix_spark.mixing.reweighting", "Uniform"),
}
_MERGE_TRIES = 5


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


@dataclass
class RunsSummary:
    requested: int
    skipped_ok: int
    skipped_failed: dict[str, str]  # recorded as failed earlier, not retried: run id → error
    ok: int
    failed: dict[str, str]  # failed in this call: run id → error
    seconds: float
    trained: list[str] = field(default_factory=list)


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
        "attempt": 0,
        "seconds": 0.0,
    }


def fit_method(
    spec: ReweightSpec,
    train: Mapping[str, np.ndarray],
    val: Mapping[str, np.ndarray],
    shape: Mapping[str, Any],
    vocab: Any,
) -> dict[str, Any]:
    """A ``reweight`` run: the method's estimator fitted on the streams; its result() as columns."""
    import importlib

    module, name = CLASSES[spec.method]
    cls = getattr(importlib.import_module(module), name)
    kwargs = {**shape, **dict(spec.params), "seed": int(spec.seed)}
    if "vocab" not in spec.params:  # the job's one mapping (proxy.tinylm.vocab), "full" included
        kwargs["vocab"] = vocab if vocab is not None else "full"
    method = cls(**kwargs)
    method.fit(train, val) if spec.method == "tandem" else method.fit(train)
    res = method.result()
    signal = {"tandem": "delta", "doremi": "excess"}.get(spec.method)
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


def _train_group(payload, streams_key: str, shape: Mapping[str, Any], proxy: Mapping[str, Any]):
    """The function each task applies to one run's row (run_id, spec JSON)."""

    def train(pdf: pd.DataFrame) -> pd.DataFrame:
        from pyspark import TaskContext

        started = time.time()
        raw = json.loads(pdf["spec"].iloc[0])
        spec = ReweightSpec(raw["run_id"], raw["kind"], raw["method"], raw["seed"], raw["params"])
        row = _row(spec, streams_key)
        ctx = TaskContext.get()
        row["attempt"] = ctx.attemptNumber() if ctx else 0
        data = payload.value
        try:
            device = _device(str(shape.get("device", "cpu")))
            fit, kwargs = (fit_eval, proxy) if spec.kind == "eval" else (fit_method, shape)
            row |= fit(spec, data["train"], data["val"], {**kwargs, "device": device}, data["vocab"])
        except Exception as err:  # recorded in the table; the other runs go on
            row["status"] = "failed"
            row["error"] = f"{type(err).__name__}: {err}\n" + "".join(traceback.format_exc(limit=-3))
        row["seconds"] = round(time.time() - started, 3)
        return pd.DataFrame([row])

    return train


def ensure_table(spark: SparkSession, path: str) -> None:
    """Create the runs table unless it exists (race-free), and check an existing one is a runs table."""
    tables.ensure_table(spark, path, TABLE)
    fields = {f.name for f in spark.read.format("delta").load(path).schema.fields}
    missing = [f.name for f in TABLE.fields if f.name not in fields]
    if missing:
        raise RuntimeError(f"{path} is not a reweight_runs table: it lacks {missing}")


def statuses(spark: SparkSession, path: str) -> dict[str, tuple[str, str | None]]:
    """run id → (status, error) of every recorded run."""
    if not tables.exists(spark, path):
        return {}
    rows = spark.read.format("delta").load(path).select("run_id", "status", "error").collect()
    return {r[0]: (r[1], r[2]) for r in rows}


def record(spark: SparkSession, path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """MERGE rows into the runs table by run id (an ok row is never replaced), retried on conflicts."""
    ensure_table(spark, path)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    source = spark.createDataFrame([{**r, "written_at": now} for r in rows], TABLE)
    for attempt in range(1, _MERGE_TRIES + 1):
        try:
            (
                DeltaTable.forPath(spark, path)
                .alias("t")
                .merge(source.alias("s"), "t.run_id = s.run_id")
                .whenMatchedUpdateAll(condition="t.status <> 'ok'")
                .whenNotMatchedInsertAll()
                .execute()
            )
            return
        except Exception as err:  # ConcurrentAppendException & co.: another job merged first
            if "Concurrent" not in type(err).__name__ and "Concurrent" not in str(err)[:200]:
                raise
            if attempt == _MERGE_TRIES:
                raise
            log.info("reweight runs: concurrent write to %s, merging again (%d)", path, attempt)
            time.sleep(0.5 * attempt)


def run_reweight_runs(
    spark: SparkSession,
    path: str,
    specs: Sequence[ReweightSpec],
    train: Mapping[str, np.ndarray],
    val: Mapping[str, np.ndarray],
    *,
    streams_key: str,
    shape: Mapping[str, Any],
    proxy: Mapping[str, Any],
    vocab: Any = None,
    retry_failed: bool = False,
    tasks: int | None = None,
) -> RunsSummary:
    """Train every run of ``specs`` that is not recorded (or failed, with ``retry_failed``)."""
    started = time.time()
    ensure_table(spark, path)
    known = statuses(spark, path)
    ok = [s for s in specs if known.get(s.run_id, ("",))[0] == "ok"]
    failed_before = {
        s.run_id: known[s.run_id][1] or "" for s in specs if known.get(s.run_id, ("ok",))[0] != "ok"
    }
    todo = [s for s in specs if s.run_id not in known or (retry_failed and s.run_id in failed_before)]
    skipped_failed = {} if retry_failed else failed_before
    for run_id, error in skipped_failed.items():
        log.warning(
            "reweight runs: %s failed earlier and is not retried (reweight.retry_failed): %s",
            run_id,
            (error or "").splitlines()[0] if error else "",
        )
    summary = RunsSummary(len(specs), len(ok), skipped_failed, 0, {}, 0.0)
    if not todo:
        summary.seconds = round(time.time() - started, 1)
        return summary
    log.info("reweight runs: training %d of %d runs (%d ok already)", len(todo), len(specs), len(ok))
    payload = spark.sparkContext.broadcast({"train": dict(train), "val": dict(val), "vocab": vocab})
    frame = spark.createDataFrame([(s.run_id, s.to_json()) for s in todo], "run_id string, spec string")
    results = (
        frame.repartition(tasks or len(todo), "run_id")
        .groupBy("run_id")
        .applyInPandas(_train_group(payload, streams_key, shape, proxy), RESULT)
        .collect()
    )
    rows = [r.asDict(recursive=True) for r in results]
    record(spark, path, rows)
    payload.unpersist()
    summary.trained = [r["run_id"] for r in rows]
    summary.failed = {r["run_id"]: r["error"] for r in rows if r["status"] != "ok"}
    summary.ok = len(rows) - len(summary.failed)
    summary.seconds = round(time.time() - started, 1)
    return summary


def load_runs(spark: SparkSession, path: str, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The runs table (optionally only ``run_ids``) as pandas, one row per run."""
    df = spark.read.format("delta").load(path)
    if run_ids is not None:
        df = df.where(df["run_id"].isin(list(run_ids)))
    return df.toPandas()
