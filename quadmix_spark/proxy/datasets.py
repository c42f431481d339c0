"""Proxy datasets: K parameter vectors, one scan of the pool, K selections at one token budget.

Steps: the pool's stats → the hash-chosen rank sample ``select`` uses, σ on the driver and one
rank mapping per θ (:class:`core.ThetaSet`) → a pass over the narrow columns for each θ's
expected tokens Σ tokens·S, which fixes its scale c_k = budget·(1 + overshoot) / Σ tokens·S →
a pass that evaluates S for all K θ per Arrow batch and writes one row per (run, kept document)
to the datasets Delta table → the realised tokens per run and domain, from what was written.

Only keys, tokens and copies are written: the text is not copied K times, the trainers join it
by ``doc_key``. A run's dataset is exactly the selection ``quadmix select`` makes with the same θ,
seed, rank sample and scale (tested), so a fitted θ* means the same thing in both places.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig
from quadmix_spark.core import QuadMixParams, ThetaSet
from quadmix_spark.core.realised import DomainSample
from quadmix_spark.core.sampling import SAMPLE_STREAM
from quadmix_spark.spark import tables
from quadmix_spark.spark.scoring import ScoringModel, domain_index_column, rank_sample
from quadmix_spark.spark.stats_table import Stats, check_columns, load_stats

log = logging.getLogger(__name__)
_FIXED_POINT = 1024  # expected tokens are summed as integers of 1/1024 token: exact in any order
MAX_TOP_UPS = 3  # passes over the runs that came out short of the budget


@dataclass
class ProxyDatasets:
    """What one build wrote: K datasets in ``table`` at ``version``, keyed by ``run_ids``.

    ``scales`` (K,) are the c_k; ``expected_tokens`` (K,) the Σ tokens·S at scale 1;
    ``tokens`` (K,) and ``docs`` (K,) the realised tokens and distinct documents of each run;
    ``domain_tokens`` (K, M) the realised tokens per domain in θ's domain order.
    """

    run_ids: list[str]
    domains: tuple[str, ...]
    scales: np.ndarray
    expected_tokens: np.ndarray
    tokens: np.ndarray
    docs: np.ndarray
    domain_tokens: np.ndarray
    table: str
    version: int | None
    pool_table: str
    pool_version: int
    seconds: float


def _pool(spark: SparkSession, config: PipelineConfig) -> tuple[DataFrame, Stats, str]:
    source = config.table_path(config.select.input_table)
    stats = load_stats(spark, config.table_path(config.select.stats_table), config.select.stats_version)
    pool = spark.read.format("delta").option("versionAsOf", stats.annotated_version).load(source)
    check_columns(pool, config, source)
    return pool, stats, source


def _sigma(model: ScoringModel, pdf: pd.DataFrame) -> np.ndarray:
    return model.sigma(np.column_stack([pdf[s].to_numpy(np.float64) for s in model.params.scorers]))


def pool_sample(
    spark: SparkSession, config: PipelineConfig, template: QuadMixParams, size: int
) -> DomainSample:
    """About ``size`` documents per domain of the pool (``select.input_table`` at the version of
    ``select.stats_table``), drawn by the rank sample's hash (``proxy.seed``): their σ under the
    stats, tokens, and each domain's tokens in the pool. What realised features are estimated from.
    """
    pool, stats, _ = _pool(spark, config)
    model = ScoringModel.from_raw_quantiles(
        template, {s: stats.reference(s) for s in template.scorers}, config.scorers
    )
    base = pool.select(
        domain_index_column(template.domains, config.domain_column).alias("domain_idx"),
        F.col(config.token_column).cast("long").alias("tokens"),
        "doc_key",
        *template.scorers,
    ).where(F.col("domain_idx").isNotNull() & (F.col("tokens") > 0))
    docs = [stats.docs.get(d, 0) for d in template.domains]
    sample = rank_sample(base, docs, size, config.proxy.seed, SAMPLE_STREAM).toPandas()
    sample = sample.sort_values("doc_key", kind="stable")  # row order never depends on partitions
    return DomainSample(
        domains=tuple(template.domains),
        scorers=tuple(template.scorers),
        sigma=_sigma(model, sample),
        domain_idx=sample["domain_idx"].to_numpy(np.int64),
        tokens=sample["tokens"].to_numpy(np.int64),
        pool_tokens=np.array([stats.tokens.get(d, 0) for d in template.domains], dtype=np.float64),
    )


def build_proxy_datasets(
    spark: SparkSession,
    config: PipelineConfig,
    params: Sequence[QuadMixParams],
    run_ids: Sequence[str],
) -> ProxyDatasets:
    """Select the pool (``select.input_table`` with its ``select.stats_table``) under every θ.

    Each θ's dataset aims at ``proxy.token_budget · (1 + proxy.overshoot)`` expected tokens; the
    trainer then cuts the stream to exactly the budget. ``proxy.seed`` drives the rank sample and
    the rounding draws, shared by all runs (common random numbers).
    """
    started = time.time()
    cfg, tok = config.proxy, config.token_column
    if len(params) != len(run_ids) or len(set(run_ids)) != len(run_ids):
        raise ValueError("run_ids must be unique, one per θ")
    pool, stats, source = _pool(spark, config)
    for k, p in enumerate(params):
        try:
            core.check_against(p, stats.domains, list(config.scorers), allow_unused_domains=True)
        except core.ParamsError as err:
            raise ConfigError(f"proxy run {run_ids[k]}: {err}") from err
    first = params[0]
    model = ScoringModel.from_raw_quantiles(
        first, {s: stats.reference(s) for s in first.scorers}, config.scorers
    )
    base = pool.select(
        "doc_key",
        domain_index_column(first.domains, config.domain_column).alias("domain_idx"),
        F.col(tok).cast("long").alias("tokens"),
        *first.scorers,
    )

    docs = [stats.docs.get(d, 0) for d in first.domains]
    sample = rank_sample(base, docs, cfg.rank_sample_size, cfg.seed, SAMPLE_STREAM).toPandas()
    thetas = ThetaSet.fit(
        params,
        _sigma(model, sample),
        sample["domain_idx"].to_numpy(np.int64),
        sample["tokens"].to_numpy(np.int64),
    )

    def expected_fixed_point(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        total = np.zeros(len(thetas), dtype=np.int64)
        for pdf in batches:
            s = thetas.expected_copies(_sigma(model, pdf), pdf["domain_idx"].to_numpy(np.int64))
            t = pdf["tokens"].to_numpy(np.float64)
            total += np.floor(s * t * _FIXED_POINT).astype(np.int64).sum(axis=1)
        yield pd.DataFrame({"k": np.arange(len(thetas), dtype=np.int32), "e": total})

    sums = base.mapInPandas(expected_fixed_point, "k int, e long").groupBy("k").agg(F.sum("e")).collect()
    expected = np.zeros(len(thetas))
    for row in sums:
        expected[row[0]] = row[1] / _FIXED_POINT
    if np.any(expected <= 0):
        raise ValueError(f"θ of run {run_ids[int(np.argmin(expected))]} selects no tokens from {source}")
    aim = cfg.token_budget * (1.0 + cfg.overshoot)
    scales = aim / expected
    table = config.table_path(cfg.datasets_table)
    metadata = {
        "job": "proxy-datasets",
        "pool_table": source,
        "pool_version": stats.annotated_version,
        "stats_version": stats.stats_version,
        "token_budget": cfg.token_budget,
        "overshoot": cfg.overshoot,
        "seed": cfg.seed,
        "code_version": __version__,
    }
    domain_tokens = np.zeros((len(run_ids), len(first.domains)), dtype=np.int64)
    n_docs = np.zeros(len(run_ids), dtype=np.int64)
    todo = np.arange(len(run_ids))
    version = None
    for _ in range(1 + MAX_TOP_UPS):
        subset = ThetaSet(tuple(params[k] for k in todo), tuple(thetas.mappings[k] for k in todo))
        ids = [run_ids[k] for k in todo]
        version = _write(base, model, subset, scales[todo], ids, cfg.seed, table, metadata) or version
        tokens, docs_k = _totals(spark, table, ids, len(first.domains))
        domain_tokens[todo], n_docs[todo] = tokens, docs_k
        realised = tokens.sum(axis=1)
        short = realised < cfg.token_budget
        if not short.any():
            break
        # Rounding noise left these runs short of the budget: scale up by the shortfall and redo them.
        scales[todo[short]] *= aim / np.maximum(realised[short], 1)
        todo = todo[short]
        log.info("proxy datasets: %d runs short of the budget, rescaled", len(todo))
    result = ProxyDatasets(
        run_ids=list(run_ids),
        domains=first.domains,
        scales=scales,
        expected_tokens=expected,
        tokens=domain_tokens.sum(axis=1),
        docs=n_docs,
        domain_tokens=domain_tokens,
        table=table,
        version=version,
        pool_table=source,
        pool_version=stats.annotated_version,
        seconds=round(time.time() - started, 1),
    )
    log.info(
        "proxy datasets: %d runs from %s in %.1fs, realised tokens %d..%d (aim %d)",
        len(run_ids),
        source,
        result.seconds,
        int(result.tokens.min()),
        int(result.tokens.max()),
        int(cfg.token_budget * (1 + cfg.overshoot)),
    )
    return result


def _write(
    base: DataFrame,
    model: ScoringModel,
    thetas: ThetaSet,
    scales: np.ndarray,
    run_ids: list[str],
    seed: int,
    table: str,
    metadata: dict,
) -> int | None:
    """One pass: copies under every θ per Arrow batch; kept rows replace these runs' rows."""

    def select_all(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            keys = pdf["doc_key"].to_numpy(np.int64)
            d = pdf["domain_idx"].to_numpy(np.int64)
            copies = thetas.copies(_sigma(model, pdf), d, core.hash_uniform(keys, seed, 0), scales)
            run, row = np.nonzero(copies)
            yield pd.DataFrame(
                {
                    "run_idx": run.astype(np.int32),
                    "doc_key": keys[row],
                    "domain_idx": d[row].astype(np.int32),
                    "tokens": pdf["tokens"].to_numpy(np.int64)[row],
                    "copies": copies[run, row],
                }
            )

    ids = F.array(*[F.lit(r) for r in run_ids])
    selected = base.mapInPandas(
        select_all, "run_idx int, doc_key long, domain_idx int, tokens long, copies long"
    ).select(
        F.element_at(ids, F.col("run_idx") + 1).alias("run_id"), "doc_key", "domain_idx", "tokens", "copies"
    )
    return tables.write(
        selected,
        table,
        "overwrite",
        {**metadata, "runs": len(run_ids), "scales": [float(c) for c in scales]},
        options={"replaceWhere": f"run_id IN ({_quoted(run_ids)})"},
    )


def _quoted(run_ids: Sequence[str]) -> str:
    return ", ".join("'" + r.replace("'", "''") + "'" for r in run_ids)


def _totals(
    spark: SparkSession, table: str, run_ids: list[str], n_domains: int
) -> tuple[np.ndarray, np.ndarray]:
    """Realised tokens (K, M) per run and domain and distinct documents (K,), from the table."""
    index = {r: k for k, r in enumerate(run_ids)}
    tokens = np.zeros((len(run_ids), n_domains), dtype=np.int64)
    docs = np.zeros(len(run_ids), dtype=np.int64)
    written = spark.read.format("delta").load(table).where(f"run_id IN ({_quoted(run_ids)})")
    for row in (
        written.groupBy("run_id", "domain_idx")
        .agg(F.sum(F.col("tokens") * F.col("copies")).alias("t"), F.count("*").alias("n"))
        .collect()
    ):
        tokens[index[row["run_id"]], row["domain_idx"]] = row["t"]
        docs[index[row["run_id"]]] += row["n"]
    return tokens, docs
