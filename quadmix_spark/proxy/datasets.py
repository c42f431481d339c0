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
    mixture: np.ndarray | None = None,
) -> ProxyDatasets:
    """Select the pool (``select.input_table`` with its ``select.stats_table``) under every θ.

    Each θ's dataset aims at ``proxy.token_budget · (1 + proxy.overshoot)`` expected tokens; the
    trainer then cuts the stream to exactly the budget. With ``mixture`` (M,) domain shares in θ's
    domain order, each domain gets its share of the aim and θ decides only which documents inside
    it (one scale per θ and domain; no cap on copies). ``proxy.seed`` drives the rank sample and
    the rounding draws, shared by all runs (common random numbers).
    """
    started = time.time()
    cfg = config.proxy
    if len(params) != len(run_ids) or len(set(run_ids)) != len(run_ids):
        raise ValueError("run_ids must be unique, one per θ")
    plan = _plan(spark, config, params, run_ids)
    expected = _expected_by_domain(plan)
    totals = expected.sum(axis=1)
    if np.any(totals <= 0):
        raise ValueError(f"θ of run {run_ids[int(np.argmin(totals))]} selects no tokens from {plan.source}")
    aim = cfg.token_budget * (1.0 + cfg.overshoot)
    scales = _scales(expected, aim, mixture)
    metadata = {
        "job": "proxy-datasets",
        "pool_table": plan.source,
        "pool_version": plan.stats.annotated_version,
        "stats_version": plan.stats.stats_version,
        "token_budget": cfg.token_budget,
        "overshoot": cfg.overshoot,
        "seed": cfg.seed,
        "mixture": None if mixture is None else [float(x) for x in mixture],
        "code_version": __version__,
    }
    written = _write_with_top_ups(spark, config, plan, list(run_ids), scales, metadata)
    result = ProxyDatasets(
        run_ids=list(run_ids),
        domains=plan.thetas.params[0].domains,
        scales=scales,
        expected_tokens=totals,
        tokens=written.domain_tokens.sum(axis=1),
        docs=written.docs,
        domain_tokens=written.domain_tokens,
        table=config.table_path(cfg.datasets_table),
        version=written.version,
        pool_table=plan.source,
        pool_version=plan.stats.annotated_version,
        seconds=round(time.time() - started, 1),
    )
    log.info(
        "proxy datasets: %d runs from %s in %.1fs, realised tokens %d..%d (aim %d)",
        len(run_ids),
        plan.source,
        result.seconds,
        int(result.tokens.min()),
        int(result.tokens.max()),
        int(aim),
    )
    return result


@dataclass(frozen=True)
class _Plan:
    """The pool's narrow columns, its stats, σ's model and every θ with its rank mapping."""

    base: DataFrame
    stats: Stats
    source: str
    model: ScoringModel
    thetas: ThetaSet


def _plan(
    spark: SparkSession, config: PipelineConfig, params: Sequence[QuadMixParams], run_ids: Sequence[str]
) -> _Plan:
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
        F.col(config.token_column).cast("long").alias("tokens"),
        *first.scorers,
    ).where(F.col("domain_idx").isNotNull())  # no domain: out of the pool, as in stats and select
    docs = [stats.docs.get(d, 0) for d in first.domains]
    cfg = config.proxy
    sample = rank_sample(base, docs, cfg.rank_sample_size, cfg.seed, SAMPLE_STREAM).toPandas()
    thetas = ThetaSet.fit(
        params,
        _sigma(model, sample),
        sample["domain_idx"].to_numpy(np.int64),
        sample["tokens"].to_numpy(np.int64),
    )
    return _Plan(base, stats, source, model, thetas)


def _expected_by_domain(plan: _Plan) -> np.ndarray:
    """Σ tokens·S per θ and domain at scale 1, (K, M), summed as fixed-point integers (any order)."""
    thetas, model = plan.thetas, plan.model
    n_domains = len(thetas.params[0].domains)

    def expected_fixed_point(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        total = np.zeros((len(thetas), n_domains), dtype=np.int64)
        for pdf in batches:
            d = pdf["domain_idx"].to_numpy(np.int64)
            s = thetas.expected_copies(_sigma(model, pdf), d)
            fixed = np.floor(s * pdf["tokens"].to_numpy(np.float64) * _FIXED_POINT).astype(np.int64)
            for m in np.unique(d):
                total[:, m] += fixed[:, d == m].sum(axis=1)
        k, m = np.nonzero(total)
        yield pd.DataFrame({"k": k.astype(np.int32), "m": m.astype(np.int32), "e": total[k, m]})

    sums = (
        plan.base.mapInPandas(expected_fixed_point, "k int, m int, e long").groupBy("k", "m").agg(F.sum("e"))
    )
    expected = np.zeros((len(thetas), n_domains))
    for row in sums.collect():
        expected[row[0], row[1]] = row[2] / _FIXED_POINT
    return expected


def _scales(expected: np.ndarray, aim: float, mixture: np.ndarray | None) -> np.ndarray:
    """One scale per θ, (K,): aim / its expected tokens; with a mixture one per θ and domain,
    (K, M): aim · share / the domain's expected tokens (0 where a domain has none)."""
    if mixture is None:
        return aim / expected.sum(axis=1)
    shares = np.asarray(mixture, dtype=np.float64)
    if shares.shape != (expected.shape[1],):
        raise ValueError(f"mixture must hold {expected.shape[1]} shares in θ's domain order")
    return np.divide(aim * shares[None, :], expected, out=np.zeros_like(expected), where=expected > 0)


@dataclass(frozen=True)
class _Written:
    domain_tokens: np.ndarray  # (K, M)
    docs: np.ndarray  # (K,)
    version: int | None


def _write_with_top_ups(
    spark: SparkSession,
    config: PipelineConfig,
    plan: _Plan,
    run_ids: list[str],
    scales: np.ndarray,
    metadata: dict,
) -> _Written:
    """Write every run; runs the rounding left short of the budget are rescaled and written again."""
    cfg = config.proxy
    table = config.table_path(cfg.datasets_table)
    aim = cfg.token_budget * (1.0 + cfg.overshoot)
    domain_tokens = np.zeros((len(run_ids), len(plan.thetas.params[0].domains)), dtype=np.int64)
    n_docs = np.zeros(len(run_ids), dtype=np.int64)
    todo, version = np.arange(len(run_ids)), None
    for _ in range(1 + MAX_TOP_UPS):
        subset = ThetaSet(
            tuple(plan.thetas.params[k] for k in todo), tuple(plan.thetas.mappings[k] for k in todo)
        )
        ids = [run_ids[k] for k in todo]
        version = (
            _write(plan.base, plan.model, subset, scales[todo], ids, cfg.seed, table, metadata) or version
        )
        tokens, docs_k = _totals(spark, table, ids, domain_tokens.shape[1])
        domain_tokens[todo], n_docs[todo] = tokens, docs_k
        realised = tokens.sum(axis=1)
        short = realised < cfg.token_budget
        if not short.any():
            break
        # Rounding noise left these runs short of the budget: scale up by the shortfall and redo them.
        scales[todo[short]] *= (aim / np.maximum(realised[short], 1)).reshape(
            (-1,) + (1,) * (scales.ndim - 1)
        )
        todo = todo[short]
        log.info("proxy datasets: %d runs short of the budget, rescaled", len(todo))
    return _Written(domain_tokens, n_docs, version)


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
        {**metadata, "runs": len(run_ids), "scales": np.asarray(scales, dtype=float).tolist()},
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
