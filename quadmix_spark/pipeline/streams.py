"""The streams job: per-domain token streams for online reweighting (TANDEM, DoReMi) as Delta.

From ``reweight.streams.input_table`` (the annotated table, or one selection of a selected table),
minus the held-out slice of ``targets`` (drawn with ``experiment.seed``, the experiment's slice):

1. each domain's available tokens and documents (one aggregation);
2. the documents of each domain in hash order (``core.stream_order``: ``hash_uniform(doc_key,
   seed, STREAMS_STREAM)``) until ``tokens_per_domain`` tokens, or ``max_tokens[domain]`` for a
   data-restricted domain. Only a hash-thresholded sample of each domain is looked at (its narrow
   columns: key, tokens), widened while it holds too few tokens, so no domain is scanned whole
   into one task and the choice is independent of partitioning;
3. the chosen documents tokenized on the workers and assembled per domain into the stream of
   ``core.domain_stream`` (each document + end-of-text, cut to the domain's tokens), written in
   chunks of ``chunk_tokens``;
4. the validation streams: the held-out sets ``heldout:<domain>`` and the target sets, as the
   experiment builds them (``pipeline.targets``).

Table ``domain_streams`` (overwritten per run; one row per chunk)::

    streams_key string, split string ('train' | 'val'), domain string (val: the eval set's name),
    chunk int, tokens array<int>, n_tokens int, available_tokens long (train: the domain's tokens
    in the input before any cap; val: null)

A domain whose stream is shorter than ``tokens_per_domain`` (capped, or small) is repeated by its
consumers; the job logs how many epochs ``tokens_per_domain`` tokens of it are.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig, StreamsConfig
from quadmix_spark.pipeline.targets import check_heldout_filter, heldout_sets, split_pool, target_sets
from quadmix_spark.spark import tables
from quadmix_spark.spark.cost import Cost, CostMeter, commit_cost
from quadmix_spark.spark.reading import read_latest
from quadmix_spark.spark.scoring import hash_uniform_column

log = logging.getLogger(__name__)

SCHEMA = T.StructType(
    [
        T.StructField("streams_key", T.StringType()),
        T.StructField("split", T.StringType()),
        T.StructField("domain", T.StringType()),
        T.StructField("chunk", T.IntegerType()),
        T.StructField("tokens", T.ArrayType(T.IntegerType())),
        T.StructField("n_tokens", T.IntegerType()),
        T.StructField("available_tokens", T.LongType()),
    ]
)
_OVERSAMPLE = 1.25  # the first hash threshold aims at this × the tokens a domain needs
_MARGIN = 1.1  # chosen documents cover this × the need in annotated tokens (the cut is on real ones)
_MAX_ROUNDS = 8
TOKENIZER = "cl100k_base"  # as the annotate job's token counts and the evaluation sets


@dataclass
class DomainStream:
    available_tokens: int  # in the input (minus the held-out slice), before any cap
    available_docs: int
    requested: int  # min(tokens_per_domain, max_tokens[domain])
    capped: bool  # max_tokens restricted the domain
    stream_tokens: int = 0  # written
    epochs: float = 0.0  # tokens_per_domain / stream_tokens: how often a consumer repeats it


@dataclass
class StreamsSummary:
    table: str
    streams_key: str
    version: int | None
    input_table: str
    input_version: int
    tokens_per_domain: int
    domains: dict[str, DomainStream]
    val: dict[str, int]  # eval set → tokens
    reused: bool = False
    rounds: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    cost: dict[str, Any] | None = None  # quadmix_spark.spark.cost: wall, executor seconds, tokens


def streams_key(config: PipelineConfig, input_version: int) -> str:
    """Identity of a streams table: everything that shapes its rows."""
    st = config.reweight.streams
    shape = [
        config.table_path(st.input_table),
        input_version,
        {k: v for k, v in asdict(st).items() if k != "output_table"},
        asdict(config.targets),
        config.experiment.seed,
        config.domain_column,
        config.token_column,
    ]
    return core.content_key(shape, 12)


def _input(spark: SparkSession, config: PipelineConfig) -> tuple[DataFrame, str, int]:
    st = config.reweight.streams
    source = config.table_path(st.input_table)
    df, version = read_latest(spark, source, "reweight.streams.input_table", "run quadmix annotate")
    needed = [config.domain_column, config.token_column, "doc_key", "text"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ConfigError(
            f"reweight.streams.input_table: {source} lacks column(s) {missing} "
            f"(domain_column, token_column, doc_key, text)"
        )
    if st.selection_id is not None:
        if "selection_id" not in df.columns:
            raise ConfigError(f"reweight.streams.selection_id: {source} is not a selected table")
        df = df.where(F.col("selection_id") == st.selection_id)
    check_heldout_filter(df, config.targets, source)
    return df, source, version


def _plan(config: PipelineConfig, available: dict[str, tuple[int, int]]) -> dict[str, DomainStream]:
    st = config.reweight.streams
    domains = list(st.domains) or sorted(available)
    absent = [d for d in domains if d not in available]
    if absent:
        raise ConfigError(
            f"reweight.streams.domains: {absent} have no documents in the input (it has {sorted(available)})"
        )
    unknown = sorted(set(st.max_tokens) - set(domains))
    if unknown:
        raise ConfigError(f"reweight.streams.max_tokens.{unknown[0]}: not a domain of the streams {domains}")
    plan = {}
    for d in domains:
        cap = st.max_tokens.get(d)
        requested = st.tokens_per_domain if cap is None else min(cap, st.tokens_per_domain)
        tokens, docs = available[d]
        plan[d] = DomainStream(tokens, docs, requested, cap is not None and cap < st.tokens_per_domain)
    return plan


def choose_documents(
    candidates: pd.DataFrame, need: int, seed: int, complete: bool
) -> tuple[np.ndarray, bool]:
    """The doc keys of one domain's stream from a hash-thresholded sample of it.

    ``candidates`` has ``doc_key`` and ``tokens`` (annotated counts) of every document whose
    uniform is below the threshold, so it holds the first documents of the stream order. Chosen:
    the first documents in that order while the tokens before them are below ``need × _MARGIN``
    (+ one end-of-text per document). Returns (keys, enough): ``enough`` is False when the sample
    ran out before that and is not the whole domain (``complete``): widen the threshold.
    """
    keys = candidates["doc_key"].to_numpy(np.int64)
    order = core.stream_order(keys, seed)
    lengths = candidates["tokens"].to_numpy(np.int64)[order] + 1
    before = np.cumsum(lengths) - lengths
    take = before < math.ceil(need * _MARGIN)
    enough = complete or bool(lengths.sum() >= math.ceil(need * _MARGIN))
    return keys[order][take], enough


def _assemble(plan: dict[str, DomainStream], seed: int, chunk: int, tokenizer: str, key: str):
    needs = {d: p.requested for d, p in plan.items()}
    available = {d: p.available_tokens for d, p in plan.items()}

    def assemble(pdf: pd.DataFrame) -> pd.DataFrame:
        from udfs.models import end_of_text, load_tokenizer

        domain = str(pdf["domain"].iloc[0])
        ids = load_tokenizer(tokenizer).encode_ordinary_batch(pdf["text"].tolist(), num_threads=1)
        stream = core.domain_stream(
            ids, pdf["doc_key"].to_numpy(np.int64), seed, needs[domain], eot=end_of_text(tokenizer)
        )
        parts = core.split_tokens(stream, chunk)
        return pd.DataFrame(
            {
                "streams_key": key,
                "split": "train",
                "domain": domain,
                "chunk": np.arange(len(parts), dtype=np.int32),
                "tokens": [p.astype(np.int32) for p in parts],
                "n_tokens": np.array([p.size for p in parts], dtype=np.int32),
                "available_tokens": available[domain],
            }
        )

    return assemble


@dataclass(frozen=True)
class StreamsInput:
    """The input table at one version, split into the pool and the held-out slice."""

    pool: DataFrame
    heldout: DataFrame
    source: str
    version: int
    key: str  # :func:`streams_key`


def run_streams(spark: SparkSession, config: PipelineConfig, *, force: bool = False) -> StreamsSummary:
    """Write the ``domain_streams`` table (unless it already holds these streams); a summary."""
    started = time.time()
    st = config.reweight.streams
    with CostMeter(spark, "streams") as meter:
        inputs = read_pool(spark, config)
        plan = _plan(config, domain_sizes(inputs.pool, config))
        tokens = sum(p.available_tokens for p in plan.values())  # the pool the streams are drawn from
        out = config.table_path(st.output_table)
        summary = StreamsSummary(
            out, inputs.key, None, inputs.source, inputs.version, st.tokens_per_domain, plan, {}
        )
        current = _version_with_key(spark, out, inputs.key)
        if not force and current is not None:
            summary.version, summary.reused = current, True
            _fill_from_table(spark, summary)
        else:
            chosen, summary.rounds = sample_documents(inputs.pool, plan, config)
            train = train_rows(spark, inputs, chosen, plan, config)
            rows = train.unionByName(val_rows(spark, inputs, plan, config))
            metadata = {**_metadata(inputs, plan, st), **commit_cost(meter, tokens)}
            summary.version = tables.write(rows, out, "overwrite", metadata)
            _fill_from_table(spark, summary)
            _check_lengths(plan)
    summary.cost = meter.cost.with_tokens(tokens).to_json()
    summary.seconds = round(time.time() - started, 1)
    _log_domains(summary)
    return summary


def read_pool(spark: SparkSession, config: PipelineConfig) -> StreamsInput:
    """The input at its latest version less the held-out slice (drawn with ``experiment.seed``)."""
    df, source, version = _input(spark, config)
    key = streams_key(config, version)
    pool, heldout = split_pool(df, config.targets, config.experiment.seed)
    return StreamsInput(pool, heldout, source, version, key)


def domain_sizes(pool: DataFrame, config: PipelineConfig) -> dict[str, tuple[int, int]]:
    """Domain → (tokens, documents) of the pool, in one aggregation."""
    dom, tok = config.domain_column, config.token_column
    counts = pool.groupBy(dom).agg(F.sum(tok).alias("t"), F.count(F.lit(1)).alias("n")).collect()
    return {r[dom]: (int(r["t"] or 0), int(r["n"])) for r in counts if r[dom] is not None}


def _version_with_key(spark: SparkSession, path: str, key: str) -> int | None:
    """The table's latest version when its commit holds the streams ``key``, else None."""
    latest = tables.version(spark, path)
    meta = tables.commit_info(spark, path, latest)["user_metadata"] if latest is not None else None
    return latest if meta and meta.get("streams_key") == key else None


def sample_documents(
    pool: DataFrame, plan: dict[str, DomainStream], config: PipelineConfig
) -> tuple[dict[str, np.ndarray], int]:
    """Domain → doc keys of its stream, and the sampling rounds it took.

    Each round collects a hash-thresholded sample of the domains still short (key and tokens
    only); a domain whose sample holds too few tokens is sampled again at 4× the rate.
    """
    st, dom = config.reweight.streams, config.domain_column
    narrow = pool.where(F.col(dom).isin(list(plan))).select(
        F.col(dom).alias("domain"),
        "doc_key",
        F.col(config.token_column).cast("long").alias("tokens"),
        hash_uniform_column(st.seed, core.STREAMS_STREAM).alias("_u"),
    )
    rates = {
        d: min(1.0, _OVERSAMPLE * _MARGIN * p.requested / max(p.available_tokens, 1)) for d, p in plan.items()
    }
    chosen: dict[str, np.ndarray] = {}
    todo, rounds = list(plan), 0
    while todo:
        rounds += 1
        if rounds > _MAX_ROUNDS:  # cannot happen: the rate reaches 1 by then
            raise RuntimeError(f"streams: no complete sample of {todo} after {_MAX_ROUNDS} rounds")
        rate = F.create_map(*[x for d in todo for x in (F.lit(d), F.lit(float(rates[d])))])
        sample = narrow.where(F.col("domain").isin(todo) & (F.col("_u") < rate[F.col("domain")]))
        frame = sample.select("domain", "doc_key", "tokens").toPandas()
        groups = dict(tuple(frame.groupby("domain", sort=False)))
        empty = pd.DataFrame({"doc_key": np.zeros(0, np.int64), "tokens": np.zeros(0, np.int64)})
        short = []
        for d in todo:
            keys, enough = choose_documents(groups.get(d, empty), plan[d].requested, st.seed, rates[d] >= 1.0)
            if enough:
                chosen[d] = keys
            else:
                rates[d] = min(1.0, rates[d] * 4)
                short.append(d)
        if short:
            log.info("streams: round %d: %s short of tokens, widening the sample", rounds, short)
        todo = short
    return chosen, rounds


def train_rows(
    spark: SparkSession,
    inputs: StreamsInput,
    chosen: dict[str, np.ndarray],
    plan: dict[str, DomainStream],
    config: PipelineConfig,
) -> DataFrame:
    """The chosen documents tokenized on the workers and assembled per domain (``SCHEMA`` rows)."""
    st = config.reweight.streams
    picked = spark.createDataFrame(
        [(d, int(k)) for d, keys in chosen.items() for k in keys], "domain string, doc_key long"
    )
    docs = inputs.pool.select(F.col(config.domain_column).alias("domain"), "doc_key", "text").join(
        F.broadcast(picked), ["domain", "doc_key"]
    )
    return (
        docs.repartition(min(len(plan), max(1, spark.sparkContext.defaultParallelism * 2)), "domain")
        .groupBy("domain")
        .applyInPandas(_assemble(plan, st.seed, st.chunk_tokens, TOKENIZER, inputs.key), SCHEMA)
    )


def val_rows(
    spark: SparkSession, inputs: StreamsInput, plan: dict[str, DomainStream], config: PipelineConfig
) -> DataFrame:
    """The held-out sets of the planned domains and the target sets, chunked (``SCHEMA`` rows)."""
    seed = config.experiment.seed
    val_all = {**heldout_sets(inputs.heldout, config, seed), **target_sets(spark, config.targets)}
    val_sets = {
        name: arr
        for name, arr in val_all.items()
        if not name.startswith("heldout:") or name[len("heldout:") :] in plan
    }
    rows = [
        (inputs.key, "val", name, i, part.astype(np.int32).tolist(), int(part.size), None)
        for name, arr in sorted(val_sets.items())
        for i, part in enumerate(core.split_tokens(arr, config.reweight.streams.chunk_tokens))
    ]
    return spark.createDataFrame(rows, SCHEMA)


def _metadata(inputs: StreamsInput, plan: dict[str, DomainStream], st: StreamsConfig) -> dict[str, Any]:
    """The Delta commit metadata of a streams run."""
    return {
        "job": "streams",
        "streams_key": inputs.key,
        "input": inputs.source,
        "input_version": inputs.version,
        "tokens_per_domain": st.tokens_per_domain,
        "max_tokens": st.max_tokens,
        "seed": st.seed,
        "tokenizer": TOKENIZER,
        "available_tokens": {d: p.available_tokens for d, p in plan.items()},
        "code_version": __version__,
    }


def _check_lengths(plan: dict[str, DomainStream]) -> None:
    """Fail when a written stream is shorter than asked although the input held enough tokens."""
    for d, p in plan.items():
        if p.stream_tokens < p.requested and p.stream_tokens < p.available_tokens + p.available_docs:
            raise RuntimeError(
                f"streams: domain {d} has {p.stream_tokens} tokens, fewer than the {p.requested} asked "
                f"although the input holds {p.available_tokens} (annotated token counts disagree with "
                f"{TOKENIZER}?)"
            )


def _fill_from_table(spark: SparkSession, summary: StreamsSummary) -> None:
    rows = (
        spark.read.format("delta")
        .load(summary.table)
        .groupBy("split", "domain")
        .agg(F.sum("n_tokens").alias("t"))
        .collect()
    )
    for r in rows:
        if r["split"] == "train" and r["domain"] in summary.domains:
            p = summary.domains[r["domain"]]
            p.stream_tokens = int(r["t"])
            p.epochs = summary.tokens_per_domain / p.stream_tokens if p.stream_tokens else math.inf
        elif r["split"] == "val":
            summary.val[r["domain"]] = int(r["t"])


def _log_domains(s: StreamsSummary) -> None:
    for d, p in s.domains.items():
        log.info(
            "streams: %s: %d tokens in %d documents available%s; stream %d tokens; %d tokens per domain "
            "are %.2f epochs of it",
            d,
            p.available_tokens,
            p.available_docs,
            f", capped at {p.requested} (data-restricted)" if p.capped else "",
            p.stream_tokens,
            s.tokens_per_domain,
            p.epochs,
        )


def load_streams(
    spark: SparkSession, path: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int], str]:
    """(train streams: domain → int64 tokens, val streams: name → tokens, available tokens, key)."""
    if not tables.exists(spark, path):
        raise ConfigError(f"reweight.streams.output_table: no Delta table at {path} (run quadmix streams)")
    pdf = spark.read.format("delta").load(path).toPandas().sort_values(["split", "domain", "chunk"])
    out: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}}
    available: dict[str, int] = {}
    for (split, domain), g in pdf.groupby(["split", "domain"], sort=True):
        out[split][domain] = np.concatenate([np.asarray(t, dtype=np.int64) for t in g["tokens"]])
        if split == "train":
            available[domain] = int(g["available_tokens"].iloc[0])
    keys = pdf["streams_key"].unique()
    return out["train"], out["val"], available, str(keys[0]) if len(keys) else ""


def format_summary(s: StreamsSummary) -> str:
    head = "up to date" if s.reused else f"written in {s.rounds} sampling round(s)"
    lines = [
        f"streams {s.streams_key}: {len(s.domains)} domains from {s.input_table} v{s.input_version} → "
        f"{s.table} v{s.version} ({head})",
        f"  {'domain':<24} {'available':>11} {'requested':>10} {'stream':>10} "
        f"{'epochs @ ' + str(s.tokens_per_domain):>16}",
    ]
    for d, p in s.domains.items():
        mark = "  capped" if p.capped else ""
        lines.append(
            f"  {d:<24} {p.available_tokens:>11} {p.requested:>10} {p.stream_tokens:>10} "
            f"{p.epochs:>16.2f}{mark}"
        )
    if s.val:
        lines.append("  validation: " + ", ".join(f"{k} {v}" for k, v in sorted(s.val.items())))
    lines.append(f"  in {s.seconds}s")
    if s.cost is not None:
        lines.append(f"  {Cost.from_json(s.cost).line()}")
    return "\n".join(lines)
