"""The stats table as other code reads it: its schema, one run as the driver holds it, and checks.

The stats job (:mod:`quadmix_spark.pipeline.stats`) writes one run per commit; select, the proxy
datasets and the experiment read a run back with :func:`load_stats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quadmix_spark.config import ConfigError, PipelineConfig
from quadmix_spark.spark import tables

ALL_DOMAINS = "__all__"


STATS_SCHEMA = (
    "domain string, docs long, tokens long, scorer string, direction string, non_null long, "
    "mean double, sample_docs long, quantiles array<double>, token_quantiles array<double>"
)


@dataclass(frozen=True)
class NoDomain:
    """Documents of the annotated table whose domain column is null: no domain's statistics count
    them and select leaves them out of its pool (θ has no entry for them)."""

    column: str
    docs: int = 0
    tokens: int = 0

    def sentence(self) -> str:
        """ "6 documents (1,704 tokens) have no domain (column 'domain' is null)"."""
        many = self.docs != 1
        return (
            f"{self.docs} document{'s' if many else ''} ({self.tokens:,} tokens) {'have' if many else 'has'} "
            f"no domain (column {self.column!r} is null)"
        )

    def to_json(self) -> dict:
        return {"column": self.column, "docs": self.docs, "tokens": self.tokens}


@dataclass(frozen=True)
class Stats:
    """Statistics of one stats run, as the driver holds them (small)."""

    stats_version: int
    annotated_version: int
    docs: dict[str, int]  # per domain
    tokens: dict[str, int]  # per domain
    quantiles: dict[tuple[str, str], np.ndarray]  # (domain or __all__, scorer) → raw cut points
    # Per domain, documents with a domain probability below ``low_confidence_below``; empty when
    # the annotated table has no probability column (or the stats run predates the count).
    low_confidence: dict[str, int] = field(default_factory=dict)
    low_confidence_below: float | None = None
    no_domain: NoDomain = NoDomain("domain")
    # The run's cost (quadmix_spark.spark.cost.Cost.to_json) when the stats job just computed it.
    cost: dict[str, Any] | None = None

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
    low = {d: int(n) for d, n in (meta.get("low_confidence") or {}).items()}
    below = meta.get("low_confidence_below") if low else None
    no_domain = _no_domain(meta, rows, path, at_version)
    return Stats(at_version, int(meta["annotated_version"]), docs, tokens, quantiles, low, below, no_domain)


def _no_domain(meta: dict, rows: list, path: str, at_version: int) -> NoDomain:
    """The run's count of documents without a domain. A run from before the count wrote their
    group as a second ``__all__`` row per scorer, which may have replaced the global sketch."""
    if "no_domain" in meta:
        return NoDomain(**meta["no_domain"])
    scorers = [r["scorer"] for r in rows if r["domain"] == ALL_DOMAINS]
    if len(scorers) != len(set(scorers)):
        raise ConfigError(
            f"select.stats_version: stats version {at_version} of {path} mixed documents with a null domain "
            "into its global sketch (a stats run from before they were counted): run quadmix stats again"
        )
    return NoDomain("domain")
