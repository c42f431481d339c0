"""The select job: annotated table + stats + θ + seed → selected Delta table, shards, manifest, report.

Steps: :func:`plan_select` loads and checks θ, the selector and the mixture against the stats
(before any scan) → :func:`score`: σ, q̄, r̄, S per document in pandas UDFs over the core →
:func:`calibrate_budget`: the scale for the pool, or one per domain when a mixture gives each domain
its share of the budget → :func:`write_selected`: selected rows (one per kept document, with its
``copies``) replacing this selection's slice of the Delta table → :func:`publish`: shards → report
→ manifest. The manifest is written last and names the table version it describes; a rerun
removes the old manifest before it replaces anything, so a run killed midway leaves no manifest
pointing at outputs that are gone. Files go through :mod:`quadmix_spark.spark.files`, so
``select.output_dir`` may be a path or a URI (``file://``, ``hdfs://``, ``s3a://``). Baseline
selectors (uniform, top-k by one scorer, union of top-k sets) share every step but the
expected-copies rule, so a mixture composes with any of them. Selectors are found by name in
:mod:`quadmix_spark.spark.selectors`, mixtures by source in :mod:`quadmix_spark.mixing.sources`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig, resolve, validate
from quadmix_spark.core import ParamsError, QuadMixParams
from quadmix_spark.mixing import sources
from quadmix_spark.pipeline import inputs
from quadmix_spark.report import ReportData, render_report
from quadmix_spark.spark import files, tables
from quadmix_spark.spark.budget import (
    BudgetTargets,
    Calibration,
    CopiesRule,
    MarginCut,
    calibrate,
    margin_column,
    realised_tokens,
    scale_column,
)
from quadmix_spark.spark.cost import Cost, CostMeter, commit_cost
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
from quadmix_spark.spark.selectors import Selector, check_selector, make_selector
from quadmix_spark.spark.shards import write_shards
from quadmix_spark.spark.stats_table import NoDomain, Stats, check_columns, load_stats

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
    no_domain: NoDomain | None = None  # left out of the pool (counted by the stats run)
    cost: dict[str, Any] | None = None  # wall, executor core/CPU seconds, tokens per core-hour


def check_config(config: PipelineConfig) -> Selector:
    """The select settings that need no file and no Spark: the section's declared values and rules
    (the config's validator), the selector (its registry), the budget a baseline needs, the
    mixture source's name. Returns the selector."""
    cfg = config.select
    validate(cfg, "select")
    selector = check_selector(cfg.selector, list(config.scorers))
    if not selector.uses_theta and cfg.token_budget is None:
        raise ConfigError(
            f"select.token_budget is required for selector {cfg.selector} (a baseline fills a budget)"
        )
    if cfg.mixture is not None:
        sources.parse(cfg.mixture, "select.mixture")
    return selector


def load_checked_params(config: PipelineConfig) -> QuadMixParams:
    """θ from ``select.params``, checked against the configured scorers (no Spark work)."""
    path = config.select.params
    params = inputs.read_params(path, "select.params")
    unknown = [s for s in params.scorers if s not in config.scorers]
    if unknown:
        raise ConfigError(f"select.params ({path}): scorer {unknown[0]!r} is not in scorers")
    return params


def load_mixture(config: PipelineConfig, domains: list[str], stats: Stats) -> core.Mixture | None:
    """``select.mixture`` (any source of :mod:`quadmix_spark.mixing.sources`); None when unset.

    ``domains`` are the pool's domains (θ's domains the stats have): the mixture must name
    exactly these; ``natural`` is their token shares in ``stats``.
    """
    name = config.select.mixture
    if name is None:
        return None
    return inputs.resolve_mixture(
        config, name, "select.mixture", domains, lambda: stats.tokens, stats_version=stats.stats_version
    )


def selection_id(
    config: PipelineConfig, params: QuadMixParams, stats: Stats, mixture: core.Mixture | None = None
) -> str:
    """The same for the same input tables (location and version), θ, selector, budget and seed;
    different for another corpus, so warehouses sharing ``select.output_dir`` never share a folder."""
    cfg = config.select
    key = [
        table_identity(config.table_path(cfg.input_table)),
        table_identity(config.table_path(cfg.stats_table)),
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


def table_identity(path: str) -> str:
    """A table's location spelled one way: ``/w/t``, ``file:/w/t``, ``file:///w/t/``, a relative
    path or a symlink to it are all ``file:///w/t``; other URIs as given, less a trailing ``/``."""
    if path.startswith("file:"):
        path = "/" + path[len("file:") :].lstrip("/")
    if "://" in path:
        return path.rstrip("/")
    return "file://" + os.path.realpath(resolve(path))


@dataclass(frozen=True)
class SelectPlan:
    """What a select run reads and where it writes, decided before any scan of the data.

    ``group`` is the calibration's group column: ``domain_idx`` with a mixture (one scale per
    domain), None without (one scale for the pool).
    """

    params: QuadMixParams
    stats: Stats
    mixture: core.Mixture | None
    selector: Selector
    rule: CopiesRule  # the selector as calibrated: capped at max_repeats copies with a mixture
    selection_id: str
    source: str  # the annotated table
    out_dir: str

    @property
    def group(self) -> str | None:
        return "domain_idx" if self.mixture is not None else None

    @property
    def domains(self) -> tuple[str, ...]:
        return self.params.domains


@dataclass(frozen=True)
class Scored:
    """The annotated rows (at the stats' version) with what the selector reads: S or σ, and u."""

    annotated: DataFrame
    frame: DataFrame
    model: ScoringModel


@dataclass(frozen=True)
class Budget:
    """The calibrated scale(s) and margin cuts; per-domain targets with a mixture."""

    scales: list[float]
    margins: tuple[MarginCut, ...] = ()
    targets: list[float] | None = None
    capped: list[str] | None = None


@dataclass(frozen=True)
class Written:
    """The selected table's version and the totals observed while it was written, per domain."""

    table: str
    version: int
    requested: dict[str, float]
    after: dict[str, tuple[int, int, int]]  # docs, copies, tokens


def plan_select(spark: SparkSession, config: PipelineConfig) -> SelectPlan:
    """θ, the stats, the mixture and the selector, checked against each other (no scan)."""
    cfg = config.select
    params = load_checked_params(config)
    check_config(config)
    stats = load_stats(spark, config.table_path(cfg.stats_table), cfg.stats_version)
    spark.conf.set("spark.sql.files.maxRecordsPerFile", str(config.spark.max_records_per_file))
    try:
        core.check_against(
            params, stats.domains, list(config.scorers), allow_unused_domains=cfg.allow_unused_domains
        )
    except ParamsError as err:
        raise ConfigError(f"select.params ({cfg.params}): {err}") from err
    mixture = load_mixture(config, [d for d in params.domains if d in stats.docs], stats)
    selector = make_selector(cfg.selector, params.scorers)
    sel_id = selection_id(config, params, stats, mixture)
    if stats.no_domain.docs:
        log.warning("select %s: %s and are left out (as in the stats)", sel_id, stats.no_domain.sentence())
    return SelectPlan(
        params=params,
        stats=stats,
        mixture=mixture,
        selector=selector,
        rule=selector.rule(cap=cfg.max_repeats if mixture is not None else None),
        selection_id=sel_id,
        source=config.table_path(cfg.input_table),
        out_dir=files.join(cfg.output_dir, sel_id),
    )


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


def score(spark: SparkSession, config: PipelineConfig, plan: SelectPlan) -> Scored:
    """The annotated table at the stats' version, scored for the selector (lazy: no scan yet)."""
    cfg, tok = config.select, config.token_column
    annotated = (
        spark.read.format("delta").option("versionAsOf", plan.stats.annotated_version).load(plan.source)
    )
    check_columns(annotated, config, plan.source)
    model = ScoringModel.from_raw_quantiles(
        plan.params, {s: plan.stats.reference(s) for s in plan.params.scorers}, config.scorers
    )
    # The pool is what the stats describe: no document without a domain (counted there) reaches θ.
    annotated = annotated.where(F.col(config.domain_column).isNotNull())
    base = annotated.withColumn("domain_idx", domain_index_column(plan.domains, config.domain_column))
    if not plan.selector.uses_theta:  # the baselines need no rank, only oriented scores and σ
        scored = with_oriented(base, model).withColumn("u", hash_uniform_column(cfg.seed, 0))
    elif cfg.rank_mode == "exact":
        scored = with_expected_copies(with_exact_rank(with_merged(base, model), tok), model, cfg.seed)
    else:
        mapping = _fit_mapping(base, model, plan.stats, cfg, tok)
        scored = with_sampling_inputs(base, model, mapping, cfg.seed)
    return Scored(annotated, scored, model)


def calibrate_budget(config: PipelineConfig, plan: SelectPlan, scored: Scored) -> Budget:
    """The scale(s) that meet ``select.token_budget``: one for the pool, or one per domain with a
    mixture (each domain its share of the budget); scale 1 without a budget."""
    cfg, tok = config.select, config.token_column
    if cfg.token_budget is None:
        return Budget(scales=[1.0])
    # Calibration aggregates many times over the few columns it needs: cache those only.
    frame = scored.frame
    narrow_cols = ["doc_key", "domain_idx", tok, "u"] + [
        c for c in frame.columns if c == "S" or c.startswith(("o__", "sigma__"))
    ]
    narrow = frame.select(*narrow_cols).persist(StorageLevel.MEMORY_AND_DISK)
    targets, capped = None, None
    if plan.mixture is None:
        # Threshold rules reach at most the pool's tokens; scale rules grow without bound.
        capacity = None if plan.selector.unbounded else _capacity(narrow, plan.rule, 1, None, tok)
        calibration = _calibrate(narrow, plan, [cfg.token_budget], cfg, tok, capacity)
    else:
        capacity = _capacity(narrow, plan.rule, len(plan.domains), plan.group, tok)
        targets, capped = _mixture_targets(plan.mixture, list(plan.domains), capacity, cfg)
        calibration = _calibrate(narrow, plan, targets, cfg, tok, capacity)
    narrow.unpersist()
    return Budget(calibration.scales, calibration.margins, targets, capped)


def write_selected(config: PipelineConfig, plan: SelectPlan, scored: Scored, budget: Budget, manifest: dict):
    """The selected rows (one per kept document, with its ``copies``) replace this selection's
    slice of the Delta table; per-domain totals are observed while it is written (no extra pass)."""
    totals = Observation(f"select-{plan.selection_id}")
    keep = [c for c in scored.annotated.columns if c not in ("domain_idx",)]
    expected = plan.rule.expected(scale_column(budget.scales, plan.group))
    extra_copy = margin_column(budget.margins, plan.rule, plan.group)
    selected = (
        scored.frame.withColumn("expected", expected)
        .withColumn("copies", copies_column(F.col("expected"), F.col("u")) + extra_copy)
        .observe(totals, *_domain_totals(len(plan.domains), config.token_column))
        .where(F.col("copies") > 0)
        .select(
            F.lit(plan.selection_id).alias("selection_id"),
            *keep,
            *[c for c in ("merged", "rank", "S") if c in scored.frame.columns],
            "expected",
            "copies",
        )
    )
    out_table = config.table_path(config.select.output_table)
    version = tables.write(
        selected,
        out_table,
        "overwrite",
        manifest,
        options={"replaceWhere": f"selection_id = '{plan.selection_id}'"},
        partition_by=["selection_id"],
    )
    observed = totals.get
    requested = {d: float(observed[f"requested_{i}"] or 0.0) for i, d in enumerate(plan.domains)}
    after = {
        d: tuple(int(observed[f"{what}_{i}"] or 0) for what in ("docs", "copies", "tokens"))
        for i, d in enumerate(plan.domains)
    }
    return Written(out_table, version, requested, after)


def run_select(spark: SparkSession, config: PipelineConfig) -> SelectSummary:
    """Run the select job and return its summary: plan → score → calibrate → write → publish."""
    started = time.time()
    with CostMeter(spark, "select") as meter:
        plan = plan_select(spark, config)
        tokens = sum(plan.stats.tokens.values())  # the pool scored, whatever is kept
        scored = score(spark, config, plan)
        budget = calibrate_budget(config, plan, scored)
        manifest = _manifest(config, plan, budget)
        manifest_file = files.join(plan.out_dir, "manifest.json")
        # Before anything is replaced: a manifest must never describe shards or a slice that are gone.
        files.delete(manifest_file)
        written = write_selected(config, plan, scored, budget, {**manifest, **commit_cost(meter, tokens)})
        summary = _summary(config, plan, budget, written)
        publish(config, plan, scored, written, summary, manifest)
        # The manifest is written last, so it holds the whole run's cost (but its own write).
        summary.cost = meter.so_far(tokens).to_json()
        manifest["cost"] = {**summary.cost, "scope": "job"}
        files.write_text(manifest_file, json.dumps(manifest, indent=2, default=str))  # last: the run is whole
    summary.seconds = round(time.time() - started, 1)
    return summary


def publish(
    config: PipelineConfig, plan: SelectPlan, scored: Scored, written: Written, summary, manifest: dict
) -> None:
    """Shards of the written slice and the report; completes ``manifest`` (written last, by the caller)."""
    cfg = config.select
    shards = None
    if cfg.shard_formats:
        slice_ = (
            scored.frame.sparkSession.read.format("delta")
            .option("versionAsOf", written.version)
            .load(written.table)
            .where(F.col("selection_id") == plan.selection_id)
        )
        columns = ["id", "text", config.domain_column, config.token_column]
        out = files.join(plan.out_dir, "shards")
        shards = write_shards(slice_, out, cfg.seed, cfg.shard_target_mb, cfg.shard_formats, columns)
    manifest.update(_manifest_outputs(plan, summary, written, shards))
    if cfg.report:
        _report(plan, scored, summary, manifest, cfg)


def _manifest(config: PipelineConfig, plan: SelectPlan, budget: Budget) -> dict:
    """The run's provenance, written as the Delta commit's metadata and (completed) beside it."""
    cfg = config.select
    mixture = plan.mixture
    return {
        "selection_id": plan.selection_id,
        "selector": cfg.selector,
        "params_file": cfg.params,
        "params_hash": core.params_hash(plan.params),
        "seed": cfg.seed,
        "token_budget": cfg.token_budget,
        "scales": _scales_by_domain(plan, budget),
        "margin_documents": sum(m.documents for m in budget.margins),
        "mixture": None
        if mixture is None
        else {
            "source": cfg.mixture,
            "key": mixture.key(),
            "shares": dict(mixture.shares),
            "provenance": dict(mixture.provenance),
            "max_repeats": cfg.max_repeats,
            "shortfall": cfg.mixture_shortfall,
            "capped_domains": budget.capped,
        },
        "rank_mode": cfg.rank_mode if plan.selector.uses_theta else None,
        "annotated_table": plan.source,
        "annotated_version": plan.stats.annotated_version,
        "stats_version": plan.stats.stats_version,
        "no_domain": plan.stats.no_domain.to_json(),  # left out; with the per-domain docs, every row
        "code_version": __version__,
    }


def _scales_by_domain(plan: SelectPlan, budget: Budget) -> dict[str, float]:
    return {d: budget.scales[i if plan.group else 0] for i, d in enumerate(plan.domains)}


def _summary(config: PipelineConfig, plan: SelectPlan, budget: Budget, written: Written) -> SelectSummary:
    after = written.after
    return SelectSummary(
        selection_id=plan.selection_id,
        out_dir=str(plan.out_dir),
        selected_docs=sum(a[0] for a in after.values()),
        selected_copies=sum(a[1] for a in after.values()),
        tokens_before=dict(plan.stats.tokens),
        tokens_requested=written.requested,
        tokens_after={d: a[2] for d, a in after.items()},
        budget=config.select.token_budget,
        scales=_scales_by_domain(plan, budget),
        seconds=0.0,
        tokens_target=None
        if budget.targets is None
        else dict(zip(plan.domains, budget.targets, strict=True)),
        capped_domains=budget.capped,
        no_domain=plan.stats.no_domain,
    )


def _manifest_outputs(plan: SelectPlan, summary: SelectSummary, written: Written, shards) -> dict:
    """What the run wrote, for the manifest: the table version, counts, shards, tokens per domain."""
    stats, target = plan.stats, summary.tokens_target
    return {
        "selected_table": written.table,
        "selected_version": written.version,
        "selected_docs": summary.selected_docs,
        "selected_copies": summary.selected_copies,
        "tokens_achieved": sum(summary.tokens_after.values()),
        "shards": shards,
        "per_domain": {
            d: {
                "docs_before": stats.docs[d],
                "tokens_before": stats.tokens[d],
                "tokens_requested": round(written.requested.get(d, 0.0), 1),
                "tokens_target": round(target[d], 1) if target else None,
                "docs_after": written.after.get(d, (0, 0, 0))[1],  # counting copies, as the report does
                "tokens_after": written.after.get(d, (0, 0, 0))[2],
            }
            for d in stats.domains
        },
    }


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


def _capacity(narrow: DataFrame, rule: CopiesRule, n_groups: int, group: str | None, tok: str) -> list[float]:
    """The most tokens each group can give: realised tokens at an unbounded scale (one aggregate).

    With a mixture a domain gives at most its tokens × ``max_repeats`` (fewer when θ gives some
    of its documents no copy at any scale); a threshold rule at most the pool's tokens.
    """
    unbounded = scale_column([core.UNBOUNDED] * n_groups, group)
    return realised_tokens(narrow, rule.expected(unbounded), tok, n_groups, group).astype(float).tolist()


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


def _calibrate(narrow, plan: SelectPlan, targets, cfg, tok: str, capacity) -> Calibration:
    lo, hi = plan.selector.brackets(narrow, targets, tok, plan.group)
    goal = BudgetTargets(targets, lo, hi, cfg.budget_tolerance, tok, group_col=plan.group, capacity=capacity)
    result = calibrate(narrow, plan.rule, goal)
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


def _report(plan: SelectPlan, scored: Scored, summary: SelectSummary, manifest: dict, cfg) -> None:
    """Small samples for the histograms; everything else comes from the aggregates above."""
    stats, model, report_dir = plan.stats, scored.model, files.join(plan.out_dir, "report")
    scored = scored.frame
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
        params=model.params if plan.selector.uses_theta else None,
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
    if s.cost is not None:
        lines.append(f"  {Cost.from_json(s.cost).line()}")
    if s.capped_domains:
        lines.append(f"  capped (the rest spread over the others): {', '.join(s.capped_domains)}")
    if s.no_domain is not None and s.no_domain.docs:
        lines.append(f"  left out: {s.no_domain.sentence()}, as in the stats")
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
