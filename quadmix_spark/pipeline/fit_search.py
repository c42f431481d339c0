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

import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig, SearchConfig
from quadmix_spark.proxy.runs import runs_long
from quadmix_spark.search.candidates import DirichletSampler, SearchResult, search_theta
from quadmix_spark.search.regression import LossRegressor, plot_predicted_vs_actual

MIN_FIT_RUNS = 20  # LightGBM keeps 10% of these for early stopping and needs ≥ 2 there
RUN_COLUMNS = ("run_id", "theta", "eval_set", "step_tokens", "loss")


def load_runs(cfg: SearchConfig, spark=None) -> pd.DataFrame:
    """Read proxy-run metrics (CSV with ``theta`` as a JSON list, Parquet, or Delta)."""
    path = Path(cfg.runs_path)
    if cfg.runs_format == "delta":
        if spark is None:
            raise ValueError("reading a Delta runs table needs a SparkSession")
        runs = spark.read.format("delta").load(cfg.runs_path).toPandas()
        if "losses" in runs.columns:  # a proxy_runs table: one row per run
            runs = runs_long(runs, "theta" if cfg.mode == "quadmix" else "mixture")
    elif not path.exists():
        raise ConfigError(f"search.runs_path: {cfg.runs_path} does not exist")
    elif cfg.runs_format == "csv":
        runs = pd.read_csv(path)
        runs["theta"] = runs["theta"].map(json.loads)
    else:
        runs = pd.read_parquet(path)
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


def _held_out(run_ids: list[str], fraction: float, seed: int) -> np.ndarray:
    return core.hash_uniform(core.text_keys(run_ids), seed, core.RUN_HOLDOUT_STREAM) < fraction


def make_sampler(cfg: SearchConfig) -> core.ParamSampler | DirichletSampler:
    """The candidate sampler of ``search.mode`` over the template's domains (and scorers)."""
    template = core.load_params(cfg.template_params)
    if cfg.mode == "regmix":
        return DirichletSampler(template.domains)
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
        raise ConfigError(
            f"search: θ vectors have {X.shape[1]} entries, the layout of "
            f"{cfg.template_params} has {sampler.n_params} ({cfg.mode} mode)"
        )
    test = _held_out(ids, cfg.holdout_fraction, cfg.seed)
    if test.sum() < 2 or (~test).sum() < MIN_FIT_RUNS:
        raise ConfigError(
            f"search: {len(ids)} runs ({int(test.sum())} held out by search.holdout_fraction) are too few "
            f"to fit and evaluate: need ≥ 2 held out and ≥ {MIN_FIT_RUNS} to fit"
        )
    n_fit = int((~test).sum())
    # LightGBM's default leaf size (20) leaves one split per tree on a few dozen runs.
    leaf = cfg.min_child_samples or min(20, max(5, n_fit // 10))
    model = LossRegressor(cfg.mode, feature_names=sampler.names, seed=cfg.seed, min_child_samples=leaf)
    model.fit(X[~test], y[~test])
    metrics = model.evaluate(X[test], y[test])
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_predicted_vs_actual(y[test], model.predict(X[test]), out / "predicted_vs_actual.png")
    result = search_theta(model, sampler, cfg.n_candidates, cfg.top_k, cfg.seed)
    summary = {
        "runs": len(ids),
        "held_out": int(test.sum()),
        "metrics": {k: round(float(v), 4) for k, v in metrics.items()},
        "theta_star_predicted_loss": round(result.predicted_loss_of_mean, 5),
        "best_observed_loss": round(float(y.min()), 5),
        "best_observed_run": ids[int(np.argmin(y))],
        "n_candidates": cfg.n_candidates,
        "top_k": cfg.top_k,
    }
    return summary, result


def write_theta_star(result: SearchResult, cfg: SearchConfig) -> str | None:
    """θ* as a params file ``quadmix select`` reads (a JSON mixture in RegMix mode); its hash."""
    if cfg.mode == "quadmix":
        params = result.to_params()
        core.save_params(params, cfg.output_params)
        return core.params_hash(params)
    Path(cfg.output_params).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.output_params).write_text(json.dumps(result.to_mixture(), indent=2))
    return None


def run_fit_search(config: PipelineConfig, spark=None) -> dict:
    """Fit, evaluate, search and write θ*; return the summary (also written as JSON)."""
    started = time.time()
    cfg = config.search
    runs = load_runs(cfg, spark)
    ids, X, y = run_targets(runs, config.targets.weights)
    summary, result = fit_and_search(ids, X, y, make_sampler(cfg), cfg)
    params_hash = write_theta_star(result, cfg)
    if params_hash:
        summary["params_hash"] = params_hash
    summary["output_params"] = cfg.output_params
    summary["seconds"] = round(time.time() - started, 1)
    (Path(cfg.output_dir) / "search_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(s: dict) -> str:
    m = s["metrics"]
    return (
        f"fit-search: {s['runs']} runs ({s['held_out']} held out): Spearman {m['spearman']:.3f}, "
        f"Pearson {m['pearson']:.3f}, MAE {m['mae']:.4f}\n"
        f"  θ* (mean of top {s['top_k']} of {s['n_candidates']} candidates): predicted loss "
        f"{s['theta_star_predicted_loss']:.4f}; best observed run {s['best_observed_run']}: "
        f"{s['best_observed_loss']:.4f}\n  wrote {s['output_params']} in {s['seconds']}s"
    )
