"""Proxy runs as Spark tasks, their results in the ``proxy_runs`` Delta table keyed by run id.

Every run is one group of ``groupBy("run_id").applyInPandas``: the task gets the run's documents
(text and copies), tokenizes them, orders the copies by a hash (a fixed shuffle), cuts the stream
to the token budget and trains the configured proxy, which logs the loss on every evaluation set
at every checkpoint. A cluster runs as many runs at once as it has cores.

Failures are recorded, never lost: an exception inside a run becomes a row with status
``failed`` and the error; a run with no documents is recorded as failed by the driver; a lost
executor makes Spark retry the task (training is deterministic, so a retry gives the same
result; the attempt number is kept). Results are MERGEd by ``run_id``: a run that succeeded is
never trained or written again, a failed one is retried by the next call. The table, the tasks
and the MERGE are the runs-table machinery every runs table shares
(:mod:`quadmix_spark.spark.runs_table`); the trainer is the registered class of ``proxy.trainer``
(:data:`quadmix_spark.proxy.trainers.TRAINERS`).

Table schema (one row per run)::

    run_id string, kind string, trainer string, status string ('ok' | 'failed'), error string,
    theta array<double>, mixture array<double>, n_train_tokens long, n_docs long,
    losses array<struct<eval_set string, step_tokens long, loss double>>,
    attempt int, seconds double, written_at timestamp, vocab_key string

``vocab_key`` is the proxy vocabulary's key (``proxy.tinylm.vocab: top:N``; null: the tokenizer's
full ids). Losses are comparable only between runs with the same value: :func:`runs_long` refuses
a mix. A table written before the column existed gets it (null) on the next write.

``kind`` tells proxy runs (``proxy``) from evaluation runs (``eval``) and imported ones
(``external``). :func:`runs_long` gives the long format ``quadmix fit-search`` reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from quadmix_spark import core
from quadmix_spark.config import ProxyConfig
from quadmix_spark.spark import tables
from quadmix_spark.spark.runs_table import RunsTable, load, plan, record, statuses, train_in_tasks

from .trainers import TRAINERS, checkpoints_for
from .vocab import ProxyVocab, check_comparable, parse_vocab_spec

log = logging.getLogger(__name__)

LOSS = T.StructType(
    [
        T.StructField("eval_set", T.StringType()),
        T.StructField("step_tokens", T.LongType()),
        T.StructField("loss", T.DoubleType()),
    ]
)
#: the ``proxy_runs`` table: the common runs-table columns (named) and its own, in table order.
RUNS = RunsTable.declare(
    "proxy_runs",
    "run_id",
    "kind",
    T.StructField("trainer", T.StringType()),
    "status",
    "error",
    T.StructField("theta", T.ArrayType(T.DoubleType())),
    T.StructField("mixture", T.ArrayType(T.DoubleType())),
    T.StructField("n_train_tokens", T.LongType()),
    T.StructField("n_docs", T.LongType()),
    T.StructField("losses", T.ArrayType(LOSS)),
    "attempt",
    "seconds",
    "written_at",
    T.StructField("vocab_key", T.StringType()),
    added=("vocab_key",),
)
TABLE = RUNS.schema
# What a task returns for its run: the table's columns the driver does not already know.
RESULT = RUNS.result(
    ("run_id", "status", "error", "n_train_tokens", "n_docs", "losses", "attempt", "seconds")
)


@dataclass(frozen=True)
class RunSpec:
    """One proxy run as the driver knows it before training."""

    run_id: str
    kind: str = "proxy"
    theta: tuple[float, ...] = ()  # the flat θ (QuaDMix layout) or () when there is none
    mixture: tuple[float, ...] = ()  # realised token share per domain


@dataclass
class RunsSummary:
    requested: int
    skipped: int  # already ok in the table
    ok: int
    failed: dict[str, str]  # run id → error
    seconds: float


def token_stream(
    token_lists: Sequence[Sequence[int]],
    doc_keys: np.ndarray,
    copies: np.ndarray,
    seed: int,
    budget: int,
    *,
    eot: int,
) -> np.ndarray:
    """The training stream: every copy of every document in a fixed hash order, cut to ``budget``.

    Copy j of a document sorts by ``hash_uniform(doc_key, seed, core.ORDER_STREAM + j)``, so copies
    are spread over the stream and the order depends on nothing but the keys. Documents end with
    the tokenizer's end-of-text id ``eot``. Returns int64 (min(budget, total),).
    """
    doc = np.repeat(np.arange(len(doc_keys)), copies)
    j = np.concatenate([np.arange(c) for c in copies]) if len(copies) else np.zeros(0, np.int64)
    order = np.lexsort((j, doc_keys[doc], core.hash_uniform(doc_keys[doc], seed, core.ORDER_STREAM + j)))
    pieces, total = [], 0
    for i in doc[order]:
        pieces.append(np.asarray(token_lists[i], dtype=np.int64))
        pieces.append(np.array([eot], dtype=np.int64))
        total += len(token_lists[i]) + 1
        if total >= budget:
            break
    stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    return stream[:budget]


def pool_vocab(documents: DataFrame, n: int, tokenizer: str = "cl100k_base") -> ProxyVocab:
    """The ``top:n`` proxy vocabulary of the distinct documents (``doc_key``, ``text``) of ``documents``.

    Token counts are summed per partition (tokenize, ``bincount``) and over partitions on the
    driver (one vocabulary-sized array per partition), so the mapping does not depend on the
    partitioning. Build it once from the pool and pass it to every :func:`run_proxies` call whose
    losses will be compared.
    """

    def counts(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        from udfs.models import load_tokenizer

        encoding = load_tokenizer(tokenizer)
        total = np.zeros(encoding.n_vocab, dtype=np.int64)
        for pdf in batches:
            for ids in encoding.encode_ordinary_batch(pdf["text"].tolist(), num_threads=1):
                total += np.bincount(np.asarray(ids, dtype=np.int64), minlength=encoding.n_vocab)
        yield pd.DataFrame({"counts": [total.tolist()]})

    rows = (
        documents.select("doc_key", "text")
        .dropDuplicates(["doc_key"])
        .mapInPandas(counts, "counts array<long>")
        .collect()
    )
    return ProxyVocab.from_counts(np.sum([np.asarray(r["counts"], dtype=np.int64) for r in rows], axis=0), n)


@dataclass(frozen=True)
class ProxyStep:
    """What each task does with one run's rows (``run_id``, ``doc_key``, ``copies``, ``text``):
    tokenize, order the copies, cut the stream to the budget, train ``trainer`` on it."""

    cfg: ProxyConfig
    eval_sets: Broadcast  # name → int64 token ids, broadcast once to every task
    tokenizer: str
    trainer: type  # the registered class of cfg.trainer
    vocab: ProxyVocab | None = None

    def start(self, rows: pd.DataFrame) -> dict[str, Any]:
        return {"run_id": str(rows["run_id"].iloc[0]), "n_train_tokens": 0, "n_docs": len(rows), "losses": []}

    def fit(self, rows: pd.DataFrame) -> dict[str, Any]:
        from udfs.models import end_of_text, load_tokenizer

        cfg, eot = self.cfg, end_of_text(self.tokenizer)
        ids = load_tokenizer(self.tokenizer).encode_ordinary_batch(rows["text"].tolist(), num_threads=1)
        keys, copies = rows["doc_key"].to_numpy(np.int64), rows["copies"].to_numpy(np.int64)
        stream = token_stream(ids, keys, copies, cfg.seed, cfg.token_budget, eot=eot)
        sets = {name: np.asarray(arr, dtype=np.int64) for name, arr in self.eval_sets.value.items()}
        trainer = self.trainer.from_config(cfg, **({"vocab": self.vocab} if self.vocab is not None else {}))
        records = trainer.train(stream, sets, checkpoints_for(len(stream), cfg.n_checkpoints))
        losses = [
            {"eval_set": r["eval_set"], "step_tokens": int(r["step_tokens"]), "loss": float(r["loss"])}
            for r in records
        ]
        return {"n_train_tokens": int(len(stream)), "losses": losses}


def check_vocab(cfg: ProxyConfig, trainer: type, vocab: ProxyVocab | None) -> None:
    """The proxy vocabulary against the trainer's setting (e.g. ``proxy.tinylm.vocab``), on the driver."""
    setting = getattr(trainer, "vocab_setting", None)
    key = f"proxy.{setting}" if setting else f"proxy.trainer {cfg.trainer}"
    n_top = parse_vocab_spec(attrgetter(setting)(cfg), key) if setting else None
    if n_top is not None and vocab is None:
        raise ValueError(
            f"{key} is top:{n_top}: pass the pool's mapping to run_proxies "
            "(vocab=proxy.runs.pool_vocab(pool, N)), built once so that every run shares it"
        )
    if n_top is None and vocab is not None:
        raise ValueError(f"a proxy vocabulary was given but {key} takes the tokenizer's full ids")
    if vocab is not None and vocab.n_kept > n_top:
        raise ValueError(f"{key} is top:{n_top} but the mapping keeps {vocab.n_kept} ids")


def done_run_ids(spark: SparkSession, path: str) -> set[str]:
    """Run ids already recorded with status ok."""
    return {run_id for run_id, (status, _) in statuses(spark, path).items() if status == "ok"}


def _no_documents(run_id: str) -> dict[str, Any]:
    """The row of a run with no rows: it never reaches a task, so the driver records it."""
    error = "no training documents: the dataset of this run is empty"
    row = {"run_id": run_id, "status": "failed", "error": error, "n_train_tokens": 0, "n_docs": 0}
    return row | {"losses": [], "attempt": 0, "seconds": 0.0}


def run_proxies(
    spark: SparkSession,
    cfg: ProxyConfig,
    runs_table: str,
    specs: Sequence[RunSpec],
    documents: DataFrame,
    eval_sets: Mapping[str, np.ndarray],
    tokenizer: str = "cl100k_base",
    vocab: ProxyVocab | None = None,
) -> RunsSummary:
    """Train every run of ``specs`` not yet ok in ``runs_table``, one Spark group per run.

    ``documents`` has one row per (run, document): ``run_id``, ``doc_key``, ``copies``, ``text``.
    ``vocab``: the proxy vocabulary when ``proxy.tinylm.vocab`` is ``top:N`` (required then; build it
    once with :func:`pool_vocab`); its key is recorded with every run.
    """
    started = time.time()
    trainer = TRAINERS.get(cfg.trainer, "proxy.trainer")
    check_vocab(cfg, trainer, vocab)
    todo = plan(specs, statuses(spark, runs_table), retry_failed=True).todo
    if not todo:
        return RunsSummary(len(specs), len(specs), 0, {}, 0.0)
    rows = documents.where(F.col("run_id").isin([s.run_id for s in todo]))
    step = ProxyStep(cfg, spark.sparkContext.broadcast(dict(eval_sets)), tokenizer, trainer, vocab)
    results = train_in_tasks(
        rows.select("run_id", "doc_key", "copies", "text"), step, RESULT, cfg.tasks or len(todo), [trainer]
    )
    by_id = {r["run_id"]: r for r in results}
    for s in todo:
        by_id.setdefault(s.run_id, _no_documents(s.run_id))
    vocab_key = vocab.key() if vocab is not None else None
    record_runs(spark, runs_table, [(s, by_id[s.run_id]) for s in todo], cfg.trainer, vocab_key)
    failed = {r: v["error"] for r, v in by_id.items() if v["status"] != "ok"}
    seconds = round(time.time() - started, 1)
    return RunsSummary(len(specs), len(specs) - len(todo), len(todo) - len(failed), failed, seconds)


def record_runs(
    spark: SparkSession,
    path: str,
    results: Iterable[tuple[RunSpec, dict]],
    trainer: str,
    vocab_key: str | None = None,
    replace_ok: bool = False,
) -> tables.Commit | None:
    """MERGE results into the runs table by run id; an ok row is never replaced (unless
    ``replace_ok``). Returns the commit (its MERGE metrics), None when nothing was written.

    ``vocab_key``: the proxy vocabulary of these runs (None: the tokenizer's full ids).
    """
    rows = [
        {
            "run_id": spec.run_id,
            "kind": spec.kind,
            "trainer": trainer,
            "status": r["status"],
            "error": r["error"],
            "theta": [float(x) for x in spec.theta] or None,
            "mixture": [float(x) for x in spec.mixture] or None,
            "n_train_tokens": r["n_train_tokens"],
            "n_docs": r["n_docs"],
            "losses": [(x["eval_set"], x["step_tokens"], x["loss"]) for x in r["losses"]],
            "attempt": r["attempt"],
            "seconds": r["seconds"],
            "vocab_key": vocab_key,
        }
        for spec, r in results
    ]
    return record(spark, path, RUNS, rows, replace_ok)


def load_runs(spark: SparkSession, path: str, kind: str | None = None) -> pd.DataFrame:
    """The runs table (optionally one ``kind``) as pandas, one row per run."""
    return load(spark, path, None if kind is None else F.col("kind") == kind)


def runs_long(runs: pd.DataFrame, features: str = "theta") -> pd.DataFrame:
    """Ok runs in fit-search's long format: run_id, theta, eval_set, step_tokens, loss.

    ``features="mixture"`` puts the realised domain mixture in the ``theta`` column (RegMix mode).
    Runs without that vector (evaluation runs of an experiment, imported runs of the other mode)
    are left out, with a count in the log.
    """
    ok = runs[runs["status"] == "ok"]
    if "vocab_key" in ok.columns and len(ok):
        keys = ok["vocab_key"].map(lambda k: k if isinstance(k, str) else "full (tokenizer ids)")
        check_comparable(dict(zip(ok["run_id"], keys, strict=True)))
    has = ok[features].map(lambda v: v is not None and len(v) > 0)
    if not has.all():
        log.info("runs: %d ok runs have no %s vector and are left out", int((~has).sum()), features)
    ok = ok[has]
    out = [
        {
            "run_id": r["run_id"],
            "theta": list(r[features]),
            "eval_set": x["eval_set"],
            "step_tokens": int(x["step_tokens"]),
            "loss": float(x["loss"]),
        }
        for _, r in ok.iterrows()
        for x in r["losses"]
    ]
    return pd.DataFrame(out, columns=["run_id", "theta", "eval_set", "step_tokens", "loss"])
