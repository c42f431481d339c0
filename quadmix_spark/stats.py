"""The stats job: per-domain and global statistics of every scorer, in one aggregation pass.

``rollup(domain)`` computes the per-domain rows and the global row (domain ``__all__``) in a single
scan with map-side partial aggregation, so a huge domain is never one task. Each row holds document
and token counts and a quantile sketch (``n_quantiles + 1`` cut points of the raw score, from
``percentile_approx``). The select job turns the global sketches into σ's reference distribution.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import __version__, tables
from quadmix_spark.config import ConfigError, PipelineConfig

ALL_DOMAINS = "__all__"


@dataclass(frozen=True)
class Stats:
    """Statistics of one stats run, as the driver holds them (small)."""

    stats_version: int
    annotated_version: int
    docs: dict[str, int]  # per domain
    tokens: dict[str, int]  # per domain
    quantiles: dict[tuple[str, str], np.ndarray]  # (domain or __all__, scorer) → raw cut points

    @property
    def domains(self) -> list[str]:
        return sorted(self.docs)

    def reference(self, scorer: str) -> np.ndarray:
        """Global raw-score cut points of ``scorer`` (σ's reference before orientation)."""
        return self.quantiles[(ALL_DOMAINS, scorer)]


def check_columns(df: DataFrame, config: PipelineConfig, table: str) -> None:
    """Fail fast when the annotated table lacks a configured column."""
    if not config.scorers:
        raise ConfigError("scorers: at least one scorer column is required")
    needed = {
        "domain_column": config.domain_column,
        "token_column": config.token_column,
        **{f"scorers.{name}": name for name in config.scorers},
    }
    for key, column in needed.items():
        if column not in df.columns:
            raise ConfigError(f"{key}: column {column!r} is not in {table}")


def run_stats(spark: SparkSession, config: PipelineConfig) -> Stats:
    """Compute and append one stats run; return what was written."""
    started = time.time()
    cfg = config.stats
    source = config.table_path(cfg.input_table)
    annotated_version = tables.version(spark, source)
    if annotated_version is None:
        raise ConfigError(f"stats.input_table: no Delta table at {source} (run quadmix annotate first)")
    df = spark.read.format("delta").option("versionAsOf", annotated_version).load(source)
    check_columns(df, config, source)

    probs = [i / cfg.n_quantiles for i in range(cfg.n_quantiles + 1)]
    domain = F.col(config.domain_column)
    aggs = [F.count(F.lit(1)).alias("docs"), F.sum(config.token_column).alias("tokens")]
    for scorer in config.scorers:
        value = F.col(scorer).cast("double")
        aggs += [
            F.percentile_approx(value, probs, cfg.accuracy).alias(f"q__{scorer}"),
            F.avg(value).alias(f"mean__{scorer}"),
            F.count(value).alias(f"n__{scorer}"),
        ]
    grouped = df.rollup(domain.alias("domain")).agg(*aggs)
    rows = grouped.withColumn("domain", F.coalesce("domain", F.lit(ALL_DOMAINS)))
    # Long format: one row per (domain, scorer), the shape readers filter on.
    stats_id = uuid.uuid4().hex[:12]
    long = (
        rows.select(
            F.lit(stats_id).alias("stats_id"),
            F.lit(annotated_version).cast("long").alias("annotated_version"),
            "domain",
            "docs",
            F.col("tokens").cast("long").alias("tokens"),
            F.explode(
                F.array(
                    *[
                        F.struct(
                            F.lit(s).alias("scorer"),
                            F.lit(d).alias("direction"),
                            F.col(f"n__{s}").alias("non_null"),
                            F.col(f"mean__{s}").alias("mean"),
                            F.col(f"q__{s}").alias("quantiles"),
                        )
                        for s, d in config.scorers.items()
                    ]
                )
            ).alias("s"),
        )
        .select("*", "s.*")
        .drop("s")
    )
    metadata = {
        "job": "stats",
        "input_table": source,
        "annotated_version": annotated_version,
        "stats_id": stats_id,
        "n_quantiles": cfg.n_quantiles,
        "accuracy": cfg.accuracy,
        "code_version": __version__,
    }
    out = config.table_path(cfg.output_table)
    version = tables.write(long, out, "append", metadata)
    stats = load_stats(spark, out, version)
    print(format_stats(stats, time.time() - started))
    return stats


def load_stats(spark: SparkSession, path: str, at_version: int | None = None) -> Stats:
    """Read one stats run (the one committed at ``at_version``; default: the latest)."""
    at_version = tables.version(spark, path) if at_version is None else at_version
    if at_version is None:
        raise ConfigError(f"select.stats_table: no Delta table at {path} (run quadmix stats first)")
    info = tables.commit_info(spark, path, at_version)
    meta = info["user_metadata"] or {}
    if "stats_id" not in meta:
        raise ConfigError(f"select.stats_version: version {at_version} of {path} is not a stats run")
    rows = (
        spark.read.format("delta")
        .option("versionAsOf", at_version)
        .load(path)
        .where(F.col("stats_id") == meta["stats_id"])
        .collect()
    )
    docs = {r["domain"]: int(r["docs"]) for r in rows if r["domain"] != ALL_DOMAINS}
    tokens = {r["domain"]: int(r["tokens"] or 0) for r in rows if r["domain"] != ALL_DOMAINS}
    quantiles = {(r["domain"], r["scorer"]): np.asarray(r["quantiles"], dtype=np.float64) for r in rows}
    return Stats(at_version, int(meta["annotated_version"]), docs, tokens, quantiles)


def format_stats(stats: Stats, seconds: float) -> str:
    """End-of-job summary."""
    lines = [
        f"stats: version {stats.stats_version} of annotated v{stats.annotated_version}: "
        f"{sum(stats.docs.values())} docs, {sum(stats.tokens.values())} tokens, "
        f"{len(stats.docs)} domains in {seconds:.1f}s",
        f"  {'domain':<24} {'docs':>9} {'tokens':>12}",
    ]
    for d in stats.domains:
        lines.append(f"  {d:<24} {stats.docs[d]:>9} {stats.tokens[d]:>12}")
    return "\n".join(lines)
