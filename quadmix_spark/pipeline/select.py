"""The select job: annotated table + stats + θ + seed → selected Delta table, shards, manifest, report.

Steps: load and check θ (and a mixture) against the stats (before any scan) → σ, q̄, r̄, S per
document in pandas UDFs over the core → optional budget calibration (one scale for the pool, or
one per domain when a mixture gives each domain its share of the budget) → selected rows (one per
kept document, with its ``copies``) replacing this selection's slice of the Delta table → shards →
report → manifest. The manifest is written last and names the table version it describes; a rerun
removes the old manifest before it replaces anything, so a run killed midway leaves no manifest
pointing at outputs that are gone. Files go through :mod:`quadmix_spark.spark.files`, so
``select.output_dir`` may be a path or a URI (``file://``, ``hdfs://``, ``s3a://``). Baseline
selectors (uniform, top-k by one scorer, union of top-k sets) share every step but the
expected-copies rule, so a mixture composes with any of them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig
from quadmix_spark.core import ParamsError, QuadMixParams
from quadmix_spark.pipeline import inputs
from quadmix_spark.report import ReportData, render_report
from quadmix_spark.spark import files, tables
from quadmix_spark.spark.budget import Calibration, calibrate, margin_column, realised_tokens, scale_column
from quadmix_spark.spark.scoring import (
    ScoringModel,
    copies_column,
    domain_index_column,
    hash_uniform_column,
    rank_sample,
    with_exact_rank,
    with_expected_copies,
    with_merged,
    with_oriented,
    with_sampling_inputs,
)
from quadmix_spark.spark.selectors import Selector, make_selector
from quadmix_spark.spark.shards import write_shards
from quadmix_spark.spark.stats_table import Stats, check_columns, load_stats

log = logging.getLogger(__name__)


@dataclass
class SelectSummary:
    """What one select run wrote."""

    selection_id: str
    out_dir: str
    selected_docs: int
    selected_copies: int
    tokens_before: dict[str, int]
    tokens_requested: dict[str, float]
    tokens_after: dict[str, int]
    budget: int | None
    scales: dict[str, float]  # per domain (one value everywhere without a mixture)
    seconds: float
    tokens_target: dict[str, float] | None = None  # per domain, with a mixture
    capped_domains: list[str] | None = None  # with mixture_shortfall: redistribute


def load_checked_params(config: PipelineConfig) -> QuadMixParams:
    """θ from ``select.params``, checked against the configured scorers (no Spark work)."""
    path = config.select.params
    params = inputs.read_params(path, "select.params")
    unknown = [s for s in params.scorers if s not in config.scorers]
    if unknown:
        raise ConfigError(f"select.params ({path}): scorer {unknown[0]!r} is not in scorers")
    return params


def load_mixture(config: PipelineConfig, domains: list[str], stats: Stats) -> core.Mixture | None:
    """``select.mixture``: a built-in (``natural``, ``uniform``) or a mixture file; None when unset.

    ``domains`` are the pool's domains (θ's domains the stats have): the mixture must name
    exactly these.
    """
    cfg = config.select
    if cfg.mixture is None:
        return None
    if cfg.token_budget is None:
        raise ConfigError("select.token_budget is required with select.mixture")
    if cfg.mixture == "natural":
        return core.Mixture.natural({d: stats.tokens[d] for d in domains}, stats_version=stats.stats_version)
    if cfg.mixture == "uniform":
        return core.Mixture.uniform(domains)
    if not files.is_file(cfg.mixture):
        raise ConfigError(f"select.mixture: neither natural, uniform nor a mixture file: {cfg.mixture}")
    mixture = inputs.read_mixture(cfg.mixture, "select.mixture")
    try:
        mixture.as_vector(domains)
    except core.MixtureError as err:
        raise ConfigError(f"select.mixture: {err}") from err
    return mixture


def selection_id(
    config: PipelineConfig, params: QuadMixParams, stats: Stats, mixture: core.Mixture | None = None
) -> str:
    cfg = config.select
    key = [
        cfg.selector,
        core.params_hash(params),
        cfg.seed,
        cfg.token_budget,
        cfg.rank_mode,
        cfg.rank_sample_size,
        stats.stats_version,
        stats.annotated_version,
    ]
    if mixture is not None:
        key += [mixture.key(), cfg.max_repeats, cfg.mixture_shortfall]
    return f"{cfg.selector.replace(':', '-')}-{core.content_key(key, 12)}"


def _fit_mapping(base: DataFrame, model: ScoringModel, stats: Stats, cfg, token_col: str):
    """The scalable rank: per-domain q̄ → r̄ mapping from a hash-chosen sample of each domain."""
    domains = model.params.domains
    docs = [stats.docs.get(d, 0) for d in domains]
    sample = rank_sample(base, docs, cfg.rank_sample_size, cfg.seed, core.SAMPLE_STREAM)
    rows = with_merged(sample, model).select("merged", "domain_idx", token_col).toPandas()
    return core.fit_rank_mapping(
        rows["merged"].to_numpy(np.float64),
        rows["domain_idx"].to_numpy(np.int64),
        rows[token_col].to_numpy(np.int64),
        len(domains),
    )


def run_select(spark: SparkSession, config: PipelineConfig) -> SelectSummary:
    """Run the select job and return its summary."""
    started = time.time()
    cfg, tok, dom = config.select, config.token_column, config.domain_column
    params = load_checked_params(config)
    if cfg.selector != "quadmix" and cfg.token_budget is None:
        raise ConfigError(f"select.token_budget is required for selector {cfg.selector}")
    stats = load_stats(spark, config.table_path(cfg.stats_table), cfg.stats_version)
    spark.conf.set("spark.sql.files.maxRecordsPerFile", str(config.spark.max_records_per_file))
    try:
        core.check_against(
            params, stats.domains, list(config.scorers), allow_unused_domains=cfg.allow_unused_domains
        )
    except ParamsError as err:
        raise ConfigError(f"select.params ({cfg.params}): {err}") from err
    pool_domains = [d for d in params.domains if d in stats.docs]
    mixture = load_mixture(config, pool_domains, stats)
    source = config.table_path(cfg.input_table)
    annotated = spark.read.format("delta").option("versionAsOf", stats.annotated_version).load(source)
    check_columns(annotated, config, source)

    model = ScoringModel.from_raw_quantiles(
        params, {s: stats.reference(s) for s in params.scorers}, config.scorers
    )
    base = annotated.withColumn("domain_idx", domain_index_column(params.domains, dom))
    if cfg.selector == "quadmix":  # the baselines need no rank, only oriented scores and σ
        if cfg.rank_mode == "exact":
            scored = with_expected_copies(with_exact_rank(with_merged(base, model), tok), model, cfg.seed)
        else:
            mapping = _fit_mapping(base, model, stats, cfg, tok)
            scored = with_sampling_inputs(base, model, mapping, cfg.seed)
    else:
        scored = with_oriented(base, model).withColumn("u", hash_uniform_column(cfg.seed, 0))

    selector = make_selector(cfg.selector, params.scorers)
    expected = selector.expected
    if mixture is not None:  # up-sampling capped at max_repeats copies per document
        expected = lambda c: F.least(selector.expected(c), F.lit(float(cfg.max_repeats)))  # noqa: E731
    group = "domain_idx" if mixture is not None else None
    scales, budget, margins = [1.0], cfg.token_budget, ()
    targets, capped = None, None
    if budget is not None:
        # Calibration aggregates many times over the few columns it needs: cache those only.
        narrow_cols = ["doc_key", "domain_idx", tok, "u"] + [
            c for c in scored.columns if c == "S" or c.startswith(("o__", "sigma__"))
        ]
        narrow = scored.select(*narrow_cols).persist(StorageLevel.MEMORY_AND_DISK)
        if mixture is None:
            # Threshold rules reach at most the pool's tokens; scale rules grow without bound.
            top = None if selector.unbounded else _capacity(narrow, expected, 1, None, tok)
            calibration = _calibrate(narrow, selector, expected, [budget], cfg, tok, None, top)
        else:
            capacity = _capacity(narrow, expected, len(params.domains), group, tok)
            targets, capped = _mixture_targets(mixture, params.domains, capacity, cfg)
            calibration = _calibrate(narrow, selector, expected, targets, cfg, tok, group, capacity)
        scales, margins = calibration.scales, calibration.margins
        narrow.unpersist()
    scale = scale_column(scales, group)

    scales_by_domain = {d: scales[i if group else 0] for i, d in enumerate(params.domains)}
    sel_id = selection_id(config, params, stats, mixture)
    out_dir = files.join(cfg.output_dir, sel_id)
    manifest_file = files.join(out_dir, "manifest.json")
    # Before anything is replaced: a manifest must never describe shards or a slice that are gone.
    files.delete(manifest_file)
    # Per-domain totals are observed while the selected table is written: no extra pass.
    totals = Observation(f"select-{sel_id}")
    keep = [c for c in annotated.columns if c not in ("domain_idx",)]
    extra_copy = margin_column(margins, expected, selector.priority, group)
    selected = (
        scored.withColumn("expected", expected(scale))
        .withColumn("copies", copies_column(F.col("expected"), F.col("u")) + extra_copy)
        .observe(totals, *_domain_totals(len(params.domains), tok))
        .where(F.col("copies") > 0)
        .select(
            F.lit(sel_id).alias("selection_id"),
            *keep,
            *[c for c in ("merged", "rank", "S") if c in scored.columns],
            "expected",
            "copies",
        )
    )
    manifest = {
        "selection_id": sel_id,
        "selector": cfg.selector,
        "params_file": cfg.params,
        "params_hash": core.params_hash(params),
        "seed": cfg.seed,
        "token_budget": budget,
        "scales": scales_by_domain,
        "margin_documents": sum(m.documents for m in margins),
        "mixture": None
        if mixture is None
        else {
            "source": cfg.mixture,
            "key": mixture.key(),
            "shares": dict(mixture.shares),
            "provenance": dict(mixture.provenance),
            "max_repeats": cfg.max_repeats,
            "shortfall": cfg.mixture_shortfall,
            "capped_domains": capped,
        },
        "rank_mode": cfg.rank_mode if cfg.selector == "quadmix" else None,
        "annotated_table": source,
        "annotated_version": stats.annotated_version,
        "stats_version": stats.stats_version,
        "code_version": __version__,
    }
    out_table = config.table_path(cfg.output_table)
    version = tables.write(
        selected,
        out_table,
        "overwrite",
        manifest,
        options={"replaceWhere": f"selection_id = '{sel_id}'"},
        partition_by=["selection_id"],
    )
    observed = totals.get
    requested = {d: float(observed[f"requested_{i}"] or 0.0) for i, d in enumerate(params.domains)}
    after = {
        d: (
            int(observed[f"docs_{i}"] or 0),
            int(observed[f"copies_{i}"] or 0),
            int(observed[f"tokens_{i}"] or 0),
        )
        for i, d in enumerate(params.domains)
    }
    written = (
        spark.read.format("delta")
        .option("versionAsOf", version)
        .load(out_table)
        .where(F.col("selection_id") == sel_id)
    )
    shards = None
    if cfg.shard_formats:
        columns = ["id", "text", dom, tok]
        shards = write_shards(
            written, files.join(out_dir, "shards"), cfg.seed, cfg.shard_target_mb, cfg.shard_formats, columns
        )
    summary = SelectSummary(
        selection_id=sel_id,
        out_dir=str(out_dir),
        selected_docs=sum(a[0] for a in after.values()),
        selected_copies=sum(a[1] for a in after.values()),
        tokens_before=dict(stats.tokens),
        tokens_requested=requested,
        tokens_after={d: a[2] for d, a in after.items()},
        budget=budget,
        scales=scales_by_domain,
        seconds=0.0,
        tokens_target=None if targets is None else dict(zip(params.domains, targets, strict=True)),
        capped_domains=capped,
    )
    manifest.update(
        selected_table=out_table,
        selected_version=version,
        selected_docs=summary.selected_docs,
        selected_copies=summary.selected_copies,
        tokens_achieved=sum(summary.tokens_after.values()),
        shards=shards,
        per_domain={
            d: {
                "docs_before": stats.docs[d],
                "tokens_before": stats.tokens[d],
                "tokens_requested": round(requested.get(d, 0.0), 1),
                "tokens_target": round(summary.tokens_target[d], 1) if summary.tokens_target else None,
                "docs_after": after.get(d, (0, 0, 0))[1],  # counting copies, as the report does
                "tokens_after": after.get(d, (0, 0, 0))[2],
            }
            for d in stats.domains
        },
    )
    if cfg.report:
        _report(scored, model, stats, summary, manifest, cfg, files.join(out_dir, "report"))
    files.write_text(manifest_file, json.dumps(manifest, indent=2, default=str))  # last: the run is whole
    summary.seconds = round(time.time() - started, 1)
    return summary


def _domain_totals(n_domains: int, tok: str) -> list[Column]:
    """Aggregates per domain index: requested tokens (Σ tokens·e), kept docs, copies, tokens."""
    out = []
    for i in range(n_domains):
        here = F.col("domain_idx") == i
        out += [
            F.sum(F.when(here, F.col(tok) * F.col("expected"))).alias(f"requested_{i}"),
            F.sum(F.when(here & (F.col("copies") > 0), 1)).alias(f"docs_{i}"),
            F.sum(F.when(here, F.col("copies"))).alias(f"copies_{i}"),
            F.sum(F.when(here, F.col(tok) * F.col("copies"))).alias(f"tokens_{i}"),
        ]
    return out


def _capacity(narrow: DataFrame, expected, n_groups: int, group: str | None, tok: str) -> list[float]:
    """The most tokens each group can give: realised tokens at an unbounded scale (one aggregate).

    With a mixture a domain gives at most its tokens × ``max_repeats`` (fewer when θ gives some
    of its documents no copy at any scale); a threshold rule at most the pool's tokens.
    """
    unbounded = scale_column([core.UNBOUNDED] * n_groups, group)
    return realised_tokens(narrow, expected(unbounded), tok, n_groups, group).astype(float).tolist()


def _mixture_targets(
    mixture: core.Mixture, domains: list[str], capacity: list[float], cfg
) -> tuple[list[float], list[str]]:
    """Each domain's token target: budget × share, checked against what the domain can give."""
    vector = np.array([mixture.shares.get(d, 0.0) for d in domains])  # 0: θ's domains the pool lacks
    try:
        budget, policy = cfg.token_budget, cfg.mixture_shortfall
        targets, capped = core.domain_targets(vector, budget, capacity, policy, domains)
    except core.MixtureError as err:
        raise ConfigError(f"select.mixture ({cfg.mixture}): {err}") from err
    if capped:
        log.warning("mixture: %s capped at what they hold; the rest spread over the others", capped)
    return targets.tolist(), capped


def _calibrate(narrow, selector: Selector, expected, targets, cfg, tok: str, group, capacity) -> Calibration:
    lo, hi = selector.brackets(narrow, targets, tok, group)
    result = calibrate(
        narrow,
        expected,
        selector.priority,
        targets,
        tok,
        lo,
        hi,
        cfg.budget_tolerance,
        grow=selector.unbounded,
        group_col=group,
        idle_scale=selector.idle_scale,
        capacity=capacity,
    )
    log.info(
        "budget %d: scales %s (+%d margin documents) give %d tokens (%+.3f%%) after %d aggregates",
        result.budget,
        ", ".join(f"{c:.6g}" for c in result.scales),
        result.margin_documents,
        result.achieved,
        100 * result.relative_error,
        result.rounds,
    )
    return result


def _report(scored, model, stats, summary, manifest, cfg, report_dir: str) -> None:
    """Small samples for the histograms; everything else comes from the aggregates above."""
    rate = min(1.0, cfg.report_sample_size / max(sum(stats.docs.values()), 1))
    cols = [*model.params.scorers, "domain_idx"] + (["rank"] if "rank" in scored.columns else [])
    sample = scored.where(hash_uniform_column(cfg.seed, core.SAMPLE_STREAM + 1) < rate).select(*cols)
    pdf = sample.toPandas()
    domains = model.params.domains
    rank_samples = {}
    if "rank" in pdf:
        rank_samples = {d: pdf.loc[pdf["domain_idx"] == i, "rank"].to_numpy() for i, d in enumerate(domains)}
    data = ReportData(
        title=f"selection {summary.selection_id} (seed {cfg.seed})",
        params=model.params if cfg.selector == "quadmix" else None,
        selector=cfg.selector,
        docs_before=dict(stats.docs),
        tokens_before=dict(stats.tokens),
        docs_after={d: v["docs_after"] for d, v in manifest["per_domain"].items()},
        tokens_after={d: v["tokens_after"] for d, v in manifest["per_domain"].items()},
        tokens_requested={d: v["tokens_requested"] for d, v in manifest["per_domain"].items()},
        score_samples={s: pdf[s].to_numpy(np.float64) for s in model.params.scorers},
        rank_samples=rank_samples,
        manifest=manifest,
        low_confidence=dict(stats.low_confidence),
        low_confidence_below=stats.low_confidence_below,
    )
    for name, content in render_report(data).items():
        if content is None:
            files.delete(files.join(report_dir, name))  # a figure an earlier run drew
        else:
            files.write_bytes(files.join(report_dir, name), content)


def format_summary(s: SelectSummary) -> str:
    """End-of-job summary: tokens per domain before, requested and achieved."""
    total_req, total_after = sum(s.tokens_requested.values()), sum(s.tokens_after.values())
    lines = [
        f"select {s.selection_id}: {s.selected_docs} documents, {s.selected_copies} copies, "
        f"{total_after} tokens (requested {total_req:.0f}"
        + (f", budget {s.budget}, {100 * (total_after - s.budget) / s.budget:+.3f}%" if s.budget else "")
        + f") in {s.seconds}s → {s.out_dir}",
    ]
    if s.capped_domains:
        lines.append(f"  capped (the rest spread over the others): {', '.join(s.capped_domains)}")
    target = f" {'target':>12}" if s.tokens_target else ""
    header = f"{'tokens before':>14}{target} {'requested':>12} {'achieved':>12} {'keep':>7}"
    lines.append(f"  {'domain':<24} {header}")
    for d in sorted(s.tokens_before):
        before, after = s.tokens_before[d], s.tokens_after.get(d, 0)
        target = f" {s.tokens_target.get(d, 0.0):>12.0f}" if s.tokens_target else ""
        lines.append(
            f"  {d:<24} {before:>14}{target} {s.tokens_requested.get(d, 0.0):>12.0f} {after:>12} "
            f"{after / before if before else 0:>7.3f}"
        )
    return "\n".join(lines)
