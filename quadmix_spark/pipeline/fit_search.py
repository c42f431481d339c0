"""The fit-search job: proxy-run metrics → LightGBM loss regressor → search → θ* params file.

Proxy runs come in long format, one row per (run, evaluation set, step), with the run's θ as a
flat vector (the documented (N+4)·M layout) or, in RegMix mode, its domain mixture:

    run_id: string, theta: list<double>, eval_set: string, step_tokens: long, loss: double

A ``proxy_runs`` Delta table (:mod:`quadmix_spark.proxy.runs`) is read as is: its ok runs give the
same long format (θ in QuaDMix mode, the realised domain mixture in RegMix mode).

Each run's target is its loss at its last step combined over the eval sets by ``targets.weights``
(the mean by default). Runs are split by a hash of ``run_id`` into fit and held-out sets; the held-out
Spearman, Pearson and MAE are printed and plotted; θ* is the mean of the top-k of fresh
Algorithm-1 (or Dirichlet) candidates and is written as a params file ``quadmix select`` reads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig, SearchConfig
from quadmix_spark.mixing import sources
from quadmix_spark.pipeline import inputs
from quadmix_spark.proxy.runs import runs_long
from quadmix_spark.search.candidates import DirichletSampler, RegMixSampler, SearchResult, search_theta
from quadmix_spark.search.regression import LossRegressor, plot_predicted_vs_actual
from quadmix_spark.spark import files
from quadmix_spark.spark.stats_table import load_stats

log = logging.getLogger(__name__)

MIN_FIT_RUNS = 20  # LightGBM keeps 10% of these for early stopping and needs ≥ 2 there
RUN_COLUMNS = ("run_id", "theta", "eval_set", "step_tokens", "loss")


def load_runs(cfg: SearchConfig, spark=None) -> pd.DataFrame:
    """Read proxy-run metrics (CSV with ``theta`` as a JSON list, Parquet, or Delta; path or URI)."""
    if cfg.runs_format == "delta":
        if spark is None:
            raise ValueError("reading a Delta runs table needs a SparkSession")
        runs = spark.read.format("delta").load(cfg.runs_path).toPandas()
        if "losses" in runs.columns:  # a proxy_runs table: one row per run
            runs = runs_long(runs, "theta" if cfg.mode == "quadmix" else "mixture")
    else:
        runs = inputs.read_table(cfg.runs_path, "search.runs_path", cfg.runs_format)
        if cfg.runs_format == "csv":
            runs["theta"] = runs["theta"].map(json.loads)
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ConfigError(f"search.runs_path: column(s) {missing} missing from {cfg.runs_path}")
    return runs


def run_targets(runs: pd.DataFrame, weights: Mapping[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per run: (run ids, θ matrix (n_runs, D), target loss (n_runs,)) at each run's last step."""
    last = runs.groupby("run_id")["step_tokens"].transform("max")
    final = runs[runs["step_tokens"] == last]
    if weights:
        unknown = sorted(set(weights) - set(final["eval_set"]))
        if unknown:
            raise ConfigError(f"targets.weights: {unknown} not among the runs' eval sets")
        final = final[final["eval_set"].isin(list(weights))]
        w = final["eval_set"].map(weights).astype(np.float64)
        target = (final["loss"] * w).groupby(final["run_id"]).sum() / w.groupby(final["run_id"]).sum()
    else:
        target = final.groupby("run_id")["loss"].mean()
    theta = final.groupby("run_id")["theta"].first()
    ids = sorted(target.index)
    return ids, np.vstack([np.asarray(theta[i], np.float64) for i in ids]), target[ids].to_numpy()


def renormalise_mixtures(ids: list[str], X: np.ndarray) -> tuple[np.ndarray, int]:
    """RegMix-mode rows that sum to 1 within ``core.SUM_TOLERANCE`` (published mixtures are rounded)
    renormalised; returns the rows and how many changed. Other rows are a config error naming runs."""
    sums = X.sum(axis=1)
    bad = (X < 0).any(axis=1) | (np.abs(sums - 1.0) > core.SUM_TOLERANCE)
    if bad.any():
        shown = ", ".join(f"{ids[i]} (sum {sums[i]:.4g})" for i in np.flatnonzero(bad)[:5])
        raise ConfigError(
            f"search.runs_path: {int(bad.sum())} run(s) have no valid mixture (≥ 0, sum 1 ± "
            f"{core.SUM_TOLERANCE}): {shown}"
        )
    changed = int(np.count_nonzero(sums != 1.0))
    return X / sums[:, None], changed


def _held_out(run_ids: list[str], cfg: SearchConfig) -> np.ndarray:
    """The held-out runs: those listed in ``search.holdout_runs``, or a hash-chosen fraction."""
    if cfg.holdout_runs is None:
        u = core.hash_uniform(core.text_keys(run_ids), cfg.seed, core.RUN_HOLDOUT_STREAM)
        return u < cfg.holdout_fraction
    named = set(inputs.read_lines(cfg.holdout_runs, "search.holdout_runs"))
    unknown = sorted(named - set(run_ids))
    if unknown:
        raise ConfigError(f"search.holdout_runs: {len(unknown)} ids are not runs, e.g. {unknown[:3]}")
    return np.array([r in named for r in run_ids])


def regmix_prior(config: PipelineConfig, spark=None) -> tuple[list[str], core.Mixture]:
    """RegMix mode's domains (the runs' vector order) and the candidates' centre (a mixture).

    The order is ``search.domains``, else the prior's own domains (a source read from a file),
    else the template's; the prior is any mixture source (``natural``: the stats table's token
    shares, read through ``spark``).
    """
    cfg = config.search
    stats_path = config.table_path(config.select.stats_table)
    tokens = None if spark is None else (lambda: load_stats(spark, stats_path).tokens)
    ctx = inputs.mixture_context(config, "search.prior", None, tokens, stats_table=stats_path)
    if cfg.domains:
        domains = list(cfg.domains)
    elif sources.parse(cfg.prior, "search.prior").file(ctx) is not None:  # a file names its domains
        prior = sources.resolve(cfg.prior, ctx)
        return prior.domains, prior
    elif files.is_file(cfg.template_params):
        domains = list(inputs.read_params(cfg.template_params, "search.template_params").domains)
    else:
        raise ConfigError(
            "search.domains: RegMix mode needs the order of the runs' mixture vectors: set "
            "search.domains, or search.prior to a mixture file, or search.template_params"
        )
    return domains, sources.resolve(cfg.prior, dataclasses.replace(ctx, domains=tuple(domains)))


def make_sampler(
    cfg: SearchConfig, regmix: tuple[list[str], core.Mixture] | None = None
) -> core.ParamSampler | DirichletSampler:
    """The candidate sampler of ``search.mode``: Algorithm 1 over the template's domains and
    scorers, or RegMix's draws around the prior of ``regmix = (domains, prior)``."""
    if cfg.mode == "regmix":
        if regmix is None:
            raise ValueError("RegMix mode needs (domains, prior) from regmix_prior")
        domains, prior = regmix
        shares = prior.as_vector(domains)
        if np.any(shares <= 0):
            zero = [d for d, s in zip(domains, shares, strict=True) if s <= 0]
            raise ConfigError(f"search.prior: every domain needs a share > 0 to draw around, not {zero}")
        return RegMixSampler(domains, shares, temperature=cfg.temperature, max_usage=cfg.max_usage)
    template = inputs.read_params(cfg.template_params, "search.template_params")
    for key, bounds in cfg.ranges.items():
        if len(bounds) != 2:
            raise ConfigError(f"search.ranges.{key}: expected [low, high], got {bounds}")
    try:
        ranges = {key: (float(lo), float(hi)) for key, (lo, hi) in cfg.ranges.items()}
        return core.ParamSampler(template.domains, template.scorers, ranges=ranges)
    except core.ParamsError as err:
        raise ConfigError(f"search.ranges: {err}") from err


def fit_and_search(
    ids: list[str],
    X: np.ndarray,
    y: np.ndarray,
    sampler: core.ParamSampler | DirichletSampler,
    cfg: SearchConfig,
) -> tuple[dict, SearchResult]:
    """Fit on the runs outside the hash-chosen held-out set, evaluate on it, plot, search.

    ``X`` (n_runs, D) in ``sampler``'s layout, ``y`` (n_runs,) target losses. Returns the summary
    (metrics, θ*'s predicted loss next to the best observed run) and the search result.
    """
    if X.shape[1] != sampler.n_params:
        layout = cfg.template_params if cfg.mode == "quadmix" else f"the domains {sampler.names}"
        raise ConfigError(
            f"search: θ vectors have {X.shape[1]} entries, the layout of {layout} has "
            f"{sampler.n_params} ({cfg.mode} mode)"
        )
    renormalised = 0
    if cfg.mode == "regmix":
        X, renormalised = renormalise_mixtures(ids, X)
    test = _held_out(ids, cfg)
    if test.sum() < 2 or (~test).sum() < MIN_FIT_RUNS:
        raise ConfigError(
            f"search: {len(ids)} runs ({int(test.sum())} held out) are too few to fit and evaluate: "
            f"need ≥ 2 held out and ≥ {MIN_FIT_RUNS} to fit"
        )
    n_fit = int((~test).sum())
    # LightGBM's default leaf size (20) leaves one split per tree on a few dozen runs.
    leaf = cfg.min_child_samples or min(20, max(5, n_fit // 10))
    model = LossRegressor(cfg.mode, feature_names=sampler.names, seed=cfg.seed, min_child_samples=leaf)
    model.fit(X[~test], y[~test])
    metrics = model.evaluate(X[test], y[test])
    with files.local_folder(cfg.output_dir) as out:  # LightGBM and matplotlib write to local paths
        plot_predicted_vs_actual(y[test], model.predict(X[test]), out / "predicted_vs_actual.png")
        model.save(out / "regressor.txt")
    result = search_theta(model, sampler, cfg.n_candidates, cfg.top_k, cfg.seed)
    summary = {
        "mode": cfg.mode,
        "runs": len(ids),
        "held_out": int(test.sum()),
        "renormalised_runs": renormalised,
        "metrics": {k: round(float(v), 4) for k, v in metrics.items()},
        "theta_star_predicted_loss": round(result.predicted_loss_of_mean, 5),
        "best_observed_loss": round(float(y.min()), 5),
        "best_observed_run": ids[int(np.argmin(y))],
        "n_candidates": cfg.n_candidates,
        "top_k": cfg.top_k,
        "regressor": files.join(cfg.output_dir, "regressor.txt"),
    }
    if result.predicted_loss_of_mean > y.min():
        summary["warning"] = (
            f"{'θ*' if cfg.mode == 'quadmix' else 'r*'} is predicted worse "
            f"({result.predicted_loss_of_mean:.4f}) than the best observed run "
            f"({y.min():.4f}): the surrogate may be unreliable here; compare both by training on them"
        )
        log.warning(summary["warning"])
    return summary, result


def write_theta_star(result: SearchResult, cfg: SearchConfig, summary: dict | None = None) -> str:
    """θ* as a params file ``quadmix select`` reads, or in RegMix mode r* as a mixture file
    (with the fit in its provenance); returns the path written."""
    if cfg.mode == "quadmix":
        with files.local_file(cfg.output_params) as path:
            core.save_params(result.to_params(), path)
        return cfg.output_params
    provenance = {
        "method": "regmix",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": __version__,
        "inputs": {"runs_path": cfg.runs_path, "prior": cfg.prior, "temperature": cfg.temperature},
        "search": {"n_candidates": result.n_candidates, "top_k": len(result.top_predicted)},
        "predicted_loss": result.predicted_loss_of_mean,
    }
    if summary:
        provenance["fit"] = {"runs": summary["runs"], "held_out": summary["held_out"], **summary["metrics"]}
    with files.local_file(cfg.output_mixture) as path:
        core.Mixture.from_shares(result.to_mixture(), provenance).to_file(path)
    return cfg.output_mixture


def run_fit_search(config: PipelineConfig, spark=None) -> dict:
    """Fit, evaluate, search and write θ* (or r*); return the summary (also written as JSON)."""
    started = time.time()
    cfg = config.search
    regmix = regmix_prior(config, spark) if cfg.mode == "regmix" else None
    runs = load_runs(cfg, spark)
    ids, X, y = run_targets(runs, config.targets.weights)
    summary, result = fit_and_search(ids, X, y, make_sampler(cfg, regmix), cfg)
    summary["output"] = write_theta_star(result, cfg, summary)
    if cfg.mode == "quadmix":
        summary["params_hash"] = core.params_hash(result.to_params())
    summary["seconds"] = round(time.time() - started, 1)
    files.write_text(files.join(cfg.output_dir, "search_summary.json"), json.dumps(summary, indent=2))
    return summary


def predict_mixtures(config: PipelineConfig, names: list[str], spark=None) -> list[tuple[str, float]]:
    """Predicted target loss of each mixture source (a file, ``uniform``, ``entropy:se``, ...) by
    the RegMix regressor fit-search saved; ``natural`` reads the stats table through ``spark``."""
    saved = files.join(config.search.output_dir, "regressor.txt")
    if not files.is_file(saved):
        raise ConfigError(f"search.output_dir: no {saved} (run quadmix fit-search in regmix mode first)")
    with files.local_copies(saved, f"{saved}.json") as (local, _):
        model = LossRegressor.load(local)
    if model.mode != "regmix":
        raise ConfigError(f"search.output_dir: the regressor at {saved} is a {model.mode}-mode one")
    stats_path = config.table_path(config.select.stats_table)
    tokens = None if spark is None else (lambda: load_stats(spark, stats_path).tokens)
    ctx = inputs.mixture_context(config, "--mixture", model.feature_names, tokens, stats_table=stats_path)
    rows = [sources.resolve(name, ctx).as_vector(model.feature_names) for name in names]
    return list(zip(names, model.predict(np.vstack(rows)).tolist(), strict=True))


def format_summary(s: dict) -> str:
    m = s["metrics"]
    what = "θ*" if s["mode"] == "quadmix" else "r*"
    lines = [
        f"fit-search: {s['runs']} runs ({s['held_out']} held out), {s['mode']} mode: "
        f"Spearman {m['spearman']:.3f}, Pearson {m['pearson']:.3f}, MAE {m['mae']:.4f}",
        f"  {what} (mean of top {s['top_k']} of {s['n_candidates']} candidates): predicted loss "
        f"{s['theta_star_predicted_loss']:.4f}; best observed run {s['best_observed_run']}: "
        f"{s['best_observed_loss']:.4f}",
    ]
    if s.get("renormalised_runs"):
        lines.append(f"  {s['renormalised_runs']} run mixtures summed to 1 only after rounding: renormalised")
    if s.get("warning"):
        lines.append(f"  WARNING: {s['warning']}")
    lines.append(f"  wrote {s['output']} and {s['regressor']} in {s['seconds']}s")
    return "\n".join(lines)
