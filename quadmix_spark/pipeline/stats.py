"""The stats job: per-domain and global statistics of every scorer.

``rollup(domain)`` computes the per-domain rows and the global row (domain ``__all__``) in one
scan with map-side partial aggregation, so a huge domain is never one task. Documents whose
domain column is null belong to no domain: they are counted (documents and tokens, in the
summary and the commit metadata) and left out of every row, the global one included, because
select leaves them out of the pool too (:class:`quadmix_spark.spark.stats_table.NoDomain`).
Each row holds exact document and token counts and a quantile sketch: ``n_quantiles + 1`` exact
quantiles of a sample chosen by a hash of ``doc_key``, so the sketch does not depend on
partitioning. The select job turns the global sketches into σ's reference distribution.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import __version__, core
from quadmix_spark.config import PipelineConfig
from quadmix_spark.spark import tables
from quadmix_spark.spark.cost import Cost, CostMeter, commit_cost
from quadmix_spark.spark.reading import read_latest
from quadmix_spark.spark.scoring import hash_uniform_column
from quadmix_spark.spark.stats_table import (
    ALL_DOMAINS,
    STATS_SCHEMA,
    NoDomain,
    Stats,
    check_columns,
    load_stats,
)

log = logging.getLogger(__name__)


def run_stats(spark: SparkSession, config: PipelineConfig) -> Stats:
    """Compute and append one stats run; return what was written.

    Two scans of the narrow columns (never the text): domain counts, which fix the sampling
    rates, then one ``rollup(domain)`` with exact counts and token sums and hash-chosen samples
    of every scorer (``collect_list``), whose exact quantiles the driver computes.
    """
    started = time.time()
    with CostMeter(spark, "stats") as meter:
        df, source, annotated_version = read_annotated(spark, config)
        counts = domain_counts(df, config)
        tokens = sum(t for _, t in counts.values())  # every document is scanned, null domain too
        no_domain = NoDomain(config.domain_column, *counts.pop(None, (0, 0)))
        # A null group of rollup() would read as its grand total: the pool is the documents with a domain.
        pool = df.where(F.col(config.domain_column).isNotNull())
        aggs = aggregations(pool, config, {d: n for d, (n, _) in counts.items()})
        rows = pool.rollup(F.col(config.domain_column).alias("domain")).agg(*aggs).collect()
        metadata = run_metadata(config, source, annotated_version, rows, df, no_domain)
        metadata.update(commit_cost(meter, tokens))
        out = config.table_path(config.stats.output_table)
        version = write_run(spark, stats_records(rows, config), out, metadata)
        stats = load_stats(spark, out, version)
    stats = dataclasses.replace(stats, cost=meter.cost.with_tokens(tokens).to_json())
    if no_domain.docs:  # also in the log: a cluster run's stdout may go unread
        log.warning("stats: %s and are left out of the statistics", no_domain.sentence())
    print(format_stats(stats, time.time() - started))
    return stats


def read_annotated(spark: SparkSession, config: PipelineConfig) -> tuple[DataFrame, str, int]:
    """The annotated table at its latest version, its path and that version; columns checked."""
    source = config.table_path(config.stats.input_table)
    df, annotated_version = read_latest(spark, source, "stats.input_table", "run quadmix annotate first")
    check_columns(df, config, source)
    return df, source, annotated_version


def domain_counts(df: DataFrame, config: PipelineConfig) -> dict[str | None, tuple[int, int]]:
    """Documents and tokens per value of the domain column, null included (one scan)."""
    agg = df.groupBy(config.domain_column).agg(F.count(F.lit(1)), F.sum(config.token_column))
    return {r[0]: (int(r[1]), int(r[2] or 0)) for r in agg.collect()}


def aggregations(df: DataFrame, config: PipelineConfig, counts: dict[str, int]) -> list[Column]:
    """Per group: documents, tokens, low-confidence documents and, per scorer, its mean, non-null
    count and (value, tokens) samples for the domain (``d__``) and global (``g__``) sketches.

    ``counts``, the documents of each domain of ``df``, fix each domain's sampling rate.
    """
    cfg = config.stats
    domain = F.col(config.domain_column)
    total = sum(counts.values())
    domain_rate = F.create_map(
        *[x for d, n in counts.items() for x in (F.lit(d), F.lit(min(1.0, cfg.domain_sample_size / n)))]
    )
    # Samples by (doc_key, stream) alone: the same on every partitioning and rerun.
    in_domain_sample = hash_uniform_column(0, core.STATS_DOMAIN_STREAM) < domain_rate[domain]
    in_global_sample = hash_uniform_column(0, core.STATS_GLOBAL_STREAM) < min(
        1.0, cfg.sample_size / max(total, 1)
    )
    aggs = [F.count(F.lit(1)).alias("docs"), F.sum(config.token_column).alias("tokens")]
    if _probability(config) in df.columns:
        low = F.col(_probability(config)) < cfg.low_confidence_below
        aggs.append(F.count(F.when(low, 1)).alias("low_confidence"))
    tokens = F.col(config.token_column).cast("double")
    for scorer in config.scorers:
        value = F.col(scorer).cast("double")
        aggs += [
            F.avg(value).alias(f"mean__{scorer}"),
            F.count(value).alias(f"n__{scorer}"),
            F.collect_list(F.when(in_domain_sample & value.isNotNull(), F.array(value, tokens))).alias(
                f"d__{scorer}"
            ),
            F.collect_list(F.when(in_global_sample & value.isNotNull(), F.array(value, tokens))).alias(
                f"g__{scorer}"
            ),
        ]
    return aggs


def _probability(config: PipelineConfig) -> str:
    """The domain classifier's probability column, when the annotated table has one."""
    return f"{config.domain_column}_prob"


def stats_records(rows: list[Row], config: PipelineConfig) -> list[tuple]:
    """``STATS_SCHEMA`` rows: per group and scorer, its counts and sketches (quantiles on the driver)."""
    probs = np.linspace(0.0, 1.0, config.stats.n_quantiles + 1)
    records = []
    for row in rows:
        name = ALL_DOMAINS if row["domain"] is None else row["domain"]
        for scorer, direction in config.scorers.items():
            sample = row[f"{'g' if row['domain'] is None else 'd'}__{scorer}"]
            pairs = np.asarray(sample, np.float64).reshape(-1, 2)  # (value, tokens)
            pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # by value, then tokens: order-free
            values, weights = pairs[:, 0], pairs[:, 1]
            cuts = np.quantile(values, probs, method="inverted_cdf").tolist() if len(values) else []
            records.append(
                (name, int(row["docs"]), int(row["tokens"] or 0), scorer, direction,
                 int(row[f"n__{scorer}"]), row[f"mean__{scorer}"], len(values), cuts,
                 token_weighted_quantiles(values, weights, probs).tolist())
            )  # fmt: skip
    return records


def run_metadata(
    config: PipelineConfig,
    source: str,
    annotated_version: int,
    rows: list[Row],
    df: DataFrame,
    no_domain: NoDomain,
) -> dict[str, Any]:
    """The Delta commit metadata of a new stats run, under a new ``stats_id``."""
    cfg = config.stats
    return {
        "job": "stats",
        "input_table": source,
        "annotated_version": annotated_version,
        "stats_id": uuid.uuid4().hex[:12],
        "n_quantiles": cfg.n_quantiles,
        "sample_size": cfg.sample_size,
        "domain_sample_size": cfg.domain_sample_size,
        "low_confidence_below": cfg.low_confidence_below,
        # Per domain (small): in the commit, so the stats table's schema stays as it was.
        "low_confidence": {r["domain"]: int(r["low_confidence"]) for r in rows if r["domain"] is not None}
        if _probability(config) in df.columns
        else None,
        "no_domain": no_domain.to_json(),
        "code_version": __version__,
    }


def write_run(spark: SparkSession, records: list[tuple], out: str, metadata: dict[str, Any]) -> int | None:
    """Append ``records`` as one run, each row keyed by the run's ``stats_id`` and input version."""
    long = spark.createDataFrame(records, STATS_SCHEMA).select(
        F.lit(metadata["stats_id"]).alias("stats_id"),
        F.lit(metadata["annotated_version"]).cast("long").alias("annotated_version"),
        "*",
    )
    return tables.write(long, out, "append", metadata)


def token_weighted_quantiles(values: np.ndarray, weights: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles where each value counts with its tokens: the smallest v with P_tokens(≤ v) ≥ p.

    ``values`` sorted ascending, (n,); ``weights`` (n,) ≥ 0 tokens; ``probs`` (k,) in [0, 1].
    """
    if len(values) == 0:
        return np.empty(0)
    cum = np.cumsum(weights)
    idx = np.searchsorted(cum, probs * cum[-1], side="left")
    return values[np.minimum(idx, len(values) - 1)]


def format_stats(stats: Stats, seconds: float) -> str:
    """End-of-job summary."""
    low = stats.low_confidence
    lines = [
        f"stats: version {stats.stats_version} of annotated v{stats.annotated_version}: "
        f"{sum(stats.docs.values())} docs"
        + (f" (+ {stats.no_domain.docs} with no domain, below)" if stats.no_domain.docs else "")
        + f", {sum(stats.tokens.values())} tokens, "
        f"{len(stats.docs)} domains in {seconds:.1f}s",
        *([f"  {Cost.from_json(stats.cost).line()}"] if stats.cost else []),
        f"  {'domain':<24} {'docs':>9} {'tokens':>12}" + (f" {'low-confidence':>15}" if low else ""),
    ]
    for d in stats.domains:
        extra = f" {low.get(d, 0):>15}" if low else ""
        lines.append(f"  {d:<24} {stats.docs[d]:>9} {stats.tokens[d]:>12}{extra}")
    if low:
        lines.append(
            f"  low-confidence: domain probability below {stats.low_confidence_below} "
            "(stats.low_confidence_below)"
        )
    if stats.no_domain.docs:
        lines.append(
            f"  {stats.no_domain.sentence()} and are left out of the statistics; select leaves them out too"
        )
    return "\n".join(lines)
