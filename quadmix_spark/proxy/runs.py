"""Proxy runs as Spark tasks, their results in the ``proxy_runs`` Delta table keyed by run id.

Every run is one group of ``groupBy("run_id").applyInPandas``: the task gets the run's documents
(text and copies), tokenizes them, orders the copies by a hash (a fixed shuffle), cuts the stream
to the token budget and trains the configured proxy, which logs the loss on every evaluation set
at every checkpoint. A cluster runs as many runs at once as it has cores.

Failures are recorded, never lost: an exception inside a run becomes a row with status
``failed`` and the error; a run with no documents is recorded as failed by the driver; a lost
executor makes Spark retry the task (training is deterministic, so a retry gives the same
result; the attempt number is kept). Results are MERGEd by ``run_id``: a run that succeeded is
never trained or written again, a failed one is retried by the next call.

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
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from quadmix_spark import core
from quadmix_spark.config import ProxyConfig
from quadmix_spark.spark import tables

from .vocab import ProxyVocab, check_comparable, parse_vocab_spec

log = logging.getLogger(__name__)

LOSS = T.StructType(
    [
        T.StructField("eval_set", T.StringType()),
        T.StructField("step_tokens", T.LongType()),
        T.StructField("loss", T.DoubleType()),
    ]
)
TABLE = T.StructType(
    [
        T.StructField("run_id", T.StringType()),
        T.StructField("kind", T.StringType()),
        T.StructField("trainer", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("error", T.StringType()),
        T.StructField("theta", T.ArrayType(T.DoubleType())),
        T.StructField("mixture", T.ArrayType(T.DoubleType())),
        T.StructField("n_train_tokens", T.LongType()),
        T.StructField("n_docs", T.LongType()),
        T.StructField("losses", T.ArrayType(LOSS)),
        T.StructField("attempt", T.IntegerType()),
        T.StructField("seconds", T.DoubleType()),
        T.StructField("written_at", T.TimestampType()),
        T.StructField("vocab_key", T.StringType()),
    ]
)


# What a task returns for its run: the table's columns the driver does not already know.
RESULT = T.StructType(
    [
        TABLE[name]
        for name in ("run_id", "status", "error", "n_train_tokens", "n_docs", "losses", "attempt", "seconds")
    ]
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


def _train_group(cfg: ProxyConfig, eval_sets, tokenizer: str, vocab: ProxyVocab | None = None):
    """The function each task applies to one run's rows (run_id, doc_key, copies, text)."""

    def train(pdf: pd.DataFrame) -> pd.DataFrame:
        from pyspark import TaskContext

        from quadmix_spark.proxy.trainers import checkpoints_for, make_trainer
        from udfs.models import end_of_text, load_tokenizer

        started = time.time()
        ctx = TaskContext.get()
        row = {
            "run_id": str(pdf["run_id"].iloc[0]),
            "status": "ok",
            "error": None,
            "n_train_tokens": 0,
            "n_docs": int(len(pdf)),
            "losses": [],
            "attempt": ctx.attemptNumber() if ctx else 0,
        }
        try:
            ids = load_tokenizer(tokenizer).encode_ordinary_batch(pdf["text"].tolist(), num_threads=1)
            stream = token_stream(
                ids,
                pdf["doc_key"].to_numpy(np.int64),
                pdf["copies"].to_numpy(np.int64),
                cfg.seed,
                cfg.token_budget,
                eot=end_of_text(tokenizer),
            )
            sets = {name: np.asarray(arr, dtype=np.int64) for name, arr in eval_sets.value.items()}
            trainer = make_trainer(cfg, vocab=vocab) if vocab is not None else make_trainer(cfg)
            records = trainer.train(stream, sets, checkpoints_for(len(stream), cfg.n_checkpoints))
            row["n_train_tokens"] = int(len(stream))
            row["losses"] = [
                {"eval_set": r["eval_set"], "step_tokens": int(r["step_tokens"]), "loss": float(r["loss"])}
                for r in records
            ]
        except Exception as err:  # recorded in the table; the other runs go on
            row["status"] = "failed"
            row["error"] = f"{type(err).__name__}: {err}\n" + "".join(traceback.format_exc(limit=-3))
        row["seconds"] = round(time.time() - started, 3)
        return pd.DataFrame([row])

    return train


def done_run_ids(spark: SparkSession, path: str) -> set[str]:
    """Run ids already recorded with status ok."""
    if not tables.exists(spark, path):
        return set()
    rows = spark.read.format("delta").load(path).where("status = 'ok'").select("run_id").collect()
    return {r[0] for r in rows}


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
    n_top = parse_vocab_spec(cfg.tinylm.vocab, "proxy.tinylm.vocab") if cfg.trainer == "tinylm" else None
    if n_top is not None and vocab is None:
        raise ValueError(
            f"proxy.tinylm.vocab is top:{n_top}: pass the pool's mapping to run_proxies "
            "(vocab=proxy.runs.pool_vocab(pool, N)), built once so that every run shares it"
        )
    if n_top is None and vocab is not None:
        raise ValueError(
            "a proxy vocabulary was given but proxy.tinylm.vocab is 'full' (or the trainer is not tinylm)"
        )
    if vocab is not None and vocab.n_kept > n_top:
        raise ValueError(f"proxy.tinylm.vocab is top:{n_top} but the mapping keeps {vocab.n_kept} ids")
    done = done_run_ids(spark, runs_table)
    todo = [s for s in specs if s.run_id not in done]
    if not todo:
        return RunsSummary(len(specs), len(specs), 0, {}, 0.0)
    wanted = [s.run_id for s in todo]
    rows = documents.where(F.col("run_id").isin(wanted)).select("run_id", "doc_key", "copies", "text")
    tasks = cfg.tasks or len(todo)
    # One shuffle partition per run: each run is a group, and groups spread over the tasks.
    results = (
        rows.repartition(tasks, "run_id")
        .groupBy("run_id")
        .applyInPandas(
            _train_group(cfg, spark.sparkContext.broadcast(dict(eval_sets)), tokenizer, vocab), RESULT
        )
        .collect()
    )
    by_id = {r["run_id"]: r.asDict(recursive=True) for r in results}
    for s in todo:  # a run with no rows never reaches a task: record it here
        by_id.setdefault(
            s.run_id,
            {
                "run_id": s.run_id,
                "status": "failed",
                "error": "no training documents: the dataset of this run is empty",
                "n_train_tokens": 0,
                "n_docs": 0,
                "losses": [],
                "attempt": 0,
                "seconds": 0.0,
            },
        )
    vocab_key = vocab.key() if vocab is not None else None
    record_runs(spark, runs_table, [(s, by_id[s.run_id]) for s in todo], cfg.trainer, vocab_key)
    failed = {r: v["error"] for r, v in by_id.items() if v["status"] != "ok"}
    return RunsSummary(
        len(specs), len(specs) - len(todo), len(todo) - len(failed), failed, round(time.time() - started, 1)
    )


def record_runs(
    spark: SparkSession,
    path: str,
    results: Iterable[tuple[RunSpec, dict]],
    trainer: str,
    vocab_key: str | None = None,
) -> None:
    """MERGE results into the runs table by run id; an ok row is never replaced.

    ``vocab_key``: the proxy vocabulary of these runs (None: the tokenizer's full ids).
    """
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    rows = [
        (
            spec.run_id,
            spec.kind,
            trainer,
            r["status"],
            r["error"],
            [float(x) for x in spec.theta] or None,
            [float(x) for x in spec.mixture] or None,
            r["n_train_tokens"],
            r["n_docs"],
            [(x["eval_set"], x["step_tokens"], x["loss"]) for x in r["losses"]],
            r["attempt"],
            r["seconds"],
            now,
            vocab_key,
        )
        for spec, r in results
    ]
    source = spark.createDataFrame(rows, TABLE)
    tables.ensure_table(spark, path, source.schema)  # race-free: two runs may create it at once
    if "vocab_key" not in spark.read.format("delta").load(path).columns:  # a table from before the column
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS (vocab_key string)")
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(source.alias("s"), "t.run_id = s.run_id")
        .whenMatchedUpdateAll(condition="t.status <> 'ok'")
        .whenNotMatchedInsertAll()
        .execute()
    )


def load_runs(spark: SparkSession, path: str, kind: str | None = None) -> pd.DataFrame:
    """The runs table (optionally one ``kind``) as pandas, one row per run."""
    df = spark.read.format("delta").load(path)
    if kind is not None:
        df = df.where(F.col("kind") == kind)
    return df.toPandas()


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
