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
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig, SearchConfig
from quadmix_spark.core.params import read_structured
from quadmix_spark.core.realised import DomainSample
from quadmix_spark.mixing import sources
from quadmix_spark.pipeline import inputs
from quadmix_spark.proxy.runs import runs_long
from quadmix_spark.search import REGRESSORS
from quadmix_spark.search.candidates import (
    DirichletSampler,
    RegMixSampler,
    RunRegion,
    SearchResult,
    search_theta,
)
from quadmix_spark.search.features import FEATURE_MODES, feature_map
from quadmix_spark.search.regression import plot_predicted_vs_actual
from quadmix_spark.search.regressors import regressor_from_bytes
from quadmix_spark.search.validation import Choice, choose_regressor
from quadmix_spark.spark import files
from quadmix_spark.spark.cost import Cost, CostMeter
from quadmix_spark.spark.stats_table import load_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolSample:
    """What realised features are estimated from: a pool sample, the proxies' aim in tokens and,
    when the proxies' datasets compose θ with a mixture, its shares in θ's domain order."""

    sample: DomainSample
    aim_tokens: float
    shares: np.ndarray | None = None


MIN_FIT_RUNS = 20  # 5-fold CV then fits on 16; LightGBM keeps 10% of those for early stopping (≥ 2)
RUN_COLUMNS = ("run_id", "theta", "eval_set", "step_tokens", "loss")


def load_runs(cfg: SearchConfig, spark=None) -> pd.DataFrame:
    """Read proxy-run metrics (CSV with ``theta`` as a JSON list, Parquet, or Delta; path or URI).

    RegMix-mode runs may name their vector column ``mixture``; it is read as ``theta``."""
    if cfg.runs_format == "delta":
        if spark is None:
            raise ValueError("reading a Delta runs table needs a SparkSession")
        runs = spark.read.format("delta").load(cfg.runs_path).toPandas()
        if "losses" in runs.columns:  # a proxy_runs table: one row per run
            vector = "theta" if cfg.mode == "quadmix" else "mixture"
            _check_vectors(runs, vector, cfg)
            runs = runs_long(runs, vector)
    else:
        runs = inputs.read_table(cfg.runs_path, "search.runs_path", cfg.runs_format)
        runs = _vector_column(runs, cfg)
        if cfg.runs_format == "csv":
            runs["theta"] = runs["theta"].map(json.loads)
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ConfigError(f"search.runs_path: column(s) {missing} missing from {cfg.runs_path}")
    return runs


def _vector_column(runs: pd.DataFrame, cfg: SearchConfig) -> pd.DataFrame:
    """The runs with their vector as ``theta``: a ``mixture`` column is RegMix's, refused in
    QuaDMix mode rather than read as θ."""
    if "mixture" not in runs.columns:
        return runs
    if cfg.mode != "regmix":
        if "theta" in runs.columns:
            return runs.drop(columns=["mixture"])
        raise ConfigError(
            f"search.mode: the runs at {cfg.runs_path} carry a `mixture` column (RegMix runs), not θ: "
            "set search.mode=regmix"
        )
    return runs.drop(columns=[c for c in ["theta"] if c in runs.columns]).rename(columns={"mixture": "theta"})


def _check_vectors(table: pd.DataFrame, vector: str, cfg: SearchConfig) -> None:
    """Fail naming the cause when no ok run of a runs table carries ``vector`` but some carry the
    other one (runs imported in the other mode), instead of fitting on nothing."""
    ok = table[table["status"] == "ok"]

    def has(column: str) -> pd.Series:
        return ok[column].map(lambda v: v is not None and len(v) > 0)

    other = "mixture" if vector == "theta" else "theta"
    if len(ok) and not has(vector).any() and has(other).any():
        mode = "regmix" if other == "mixture" else "quadmix"
        raise ConfigError(
            f"search.mode: none of the {len(ok)} ok runs in {cfg.runs_path} has a {vector} vector "
            f"({cfg.mode} mode reads it); {int(has(other).sum())} carry a {other} vector, as "
            f"import-runs stores runs in search.mode={mode}: set search.mode={mode}, or import the runs "
            f"again with the right search.mode and --replace"
        )


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
    """Runs kept out of the fit and scored after it: ``search.holdout_runs``, or the
    ``search.holdout_fraction`` of the runs (rounded up) whose hash of the run id is smallest, so
    the share is what was asked for whatever the ids (none by default: cross-validation scores
    every run)."""
    if cfg.holdout_runs is None:
        u = core.hash_uniform(core.text_keys(run_ids), cfg.seed, core.RUN_HOLDOUT_STREAM)
        n = math.ceil(cfg.holdout_fraction * len(run_ids) - 1e-9)
        held = np.zeros(len(run_ids), dtype=bool)
        held[np.lexsort((np.asarray(run_ids, dtype=object), u))[:n]] = True
        return held
    named = set(inputs.read_lines(cfg.holdout_runs, "search.holdout_runs"))
    unknown = sorted(named - set(run_ids))
    if unknown:
        raise ConfigError(f"search.holdout_runs: {len(unknown)} ids are not runs, e.g. {unknown[:3]}")
    return np.array([r in named for r in run_ids])


def prior_fallback(config: PipelineConfig, spark=None) -> str | None:
    """Why RegMix mode centres on ``uniform`` instead of ``search.prior``: a prior read from the
    pool's tokens (``natural``, the default) with no stats table, as with runs trained elsewhere;
    None when the prior stands (or a stats URI cannot be checked without ``spark``)."""
    cfg = config.search
    if cfg.mode != "regmix" or not sources.parse(cfg.prior, "search.prior").needs_tokens:
        return None
    stats = config.table_path(config.select.stats_table)
    if files.is_local_path(stats):
        there = (Path(stats) / "_delta_log").is_dir()
    elif spark is not None:
        from quadmix_spark.spark import tables

        there = tables.exists(spark, stats)
    else:
        return None
    if there:
        return None
    return (
        f"search.prior: {cfg.prior} reads the pool's token shares, and there is no stats table at {stats}: "
        "the candidates centre on uniform shares (set search.prior to a mixture file, or run quadmix "
        "stats, to centre them elsewhere)"
    )


def check_regmix_domains(config: PipelineConfig) -> None:
    """Fail before any input is read when RegMix mode has no names for the runs' vector entries."""
    cfg = config.search
    if cfg.mode != "regmix" or cfg.domains or files.is_file(cfg.template_params):
        return
    if inputs.mixture_file(config, cfg.prior, "search.prior") is None:
        raise ConfigError(
            "search.domains: RegMix mode needs the order of the runs' mixture vectors (the domain of each "
            "entry): set search.domains=[dom1,dom2,...], or search.prior to a mixture file naming them "
            f"(search.prior={cfg.prior} names none), or search.template_params to a θ file"
        )


def regmix_prior(
    config: PipelineConfig, spark=None, prior: str | None = None
) -> tuple[list[str], core.Mixture]:
    """RegMix mode's domains (the runs' vector order) and the candidates' centre (a mixture).

    The order is ``search.domains``, else the prior's own domains (a source read from a file),
    else the template's; the prior is any mixture source (``natural``: the stats table's token
    shares, read through ``spark``); ``prior`` replaces ``search.prior`` (:func:`prior_fallback`).
    """
    cfg = config.search
    prior_name = prior or cfg.prior
    check_regmix_domains(config)
    stats_path = config.table_path(config.select.stats_table)
    tokens = None if spark is None else (lambda: load_stats(spark, stats_path).tokens)
    ctx = inputs.mixture_context(config, "search.prior", None, tokens, stats_table=stats_path)
    if cfg.domains:
        domains = list(cfg.domains)
    elif sources.parse(prior_name, "search.prior").file(ctx) is not None:  # a file names its domains
        mixture = sources.resolve(prior_name, ctx)
        return mixture.domains, mixture
    else:
        domains = list(inputs.read_params(cfg.template_params, "search.template_params").domains)
    return domains, sources.resolve(prior_name, dataclasses.replace(ctx, domains=tuple(domains)))


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


def regressor_families(cfg: SearchConfig) -> list[str]:
    """``search.regressor`` as the registered families to cross-validate (``auto``: all)."""
    names = [cfg.regressor] if isinstance(cfg.regressor, str) else list(cfg.regressor)
    families = sorted(REGRESSORS) if names == ["auto"] else names
    unknown = [f for f in families if f not in REGRESSORS]
    if unknown:
        raise ConfigError(
            f"search.regressor: {unknown} not among auto and the registered families "
            f"({', '.join(sorted(REGRESSORS))})"
        )
    extra = sorted(set(cfg.regressor_params) - set(REGRESSORS))
    if extra:
        raise ConfigError(f"search.regressor_params.{extra[0]}: not a registered family")
    return families


def fit_surrogate(
    ids: list[str], X: np.ndarray, y: np.ndarray, names: list[str], cfg: SearchConfig
) -> Choice:
    """Cross-validate the configured families on the runs (n_runs, F) and fit the chosen one."""
    params = {family: dict(p) for family, p in cfg.regressor_params.items()}
    if cfg.min_child_samples is not None:
        params.setdefault("lightgbm", {})["min_child_samples"] = cfg.min_child_samples
    try:
        return choose_regressor(
            regressor_families(cfg),
            X,
            y,
            ids,
            mode=cfg.mode,
            feature_names=names,
            seed=cfg.seed,
            k=cfg.cv_folds,
            repeats=cfg.cv_repeats,
            params=params,
        )
    except ValueError as err:
        raise ConfigError(f"search.regressor: {err}") from err


def feature_modes(cfg: SearchConfig, sample: DomainSample | None) -> list[str]:
    """The feature modes to cross-validate: RegMix reads mixtures; QuaDMix ``auto`` tries all
    three where a pool sample is at hand, else θ alone."""
    if cfg.mode == "regmix":
        return ["theta"]
    if cfg.features != "auto":
        if cfg.features != "theta" and sample is None:
            raise ConfigError(
                f"search.features: {cfg.features} needs the pool (select.input_table, its stats)"
            )
        return [cfg.features]
    return list(FEATURE_MODES) if sample is not None else ["theta"]


def fit_and_search(
    ids: list[str],
    X: np.ndarray,
    y: np.ndarray,
    sampler: core.ParamSampler | DirichletSampler,
    cfg: SearchConfig,
    pool: PoolSample | None = None,
    propose: int = 0,
) -> tuple[dict, SearchResult]:
    """Choose and fit the surrogate, search, and keep the candidate only where the evidence allows.

    ``X`` (n_runs, D) in ``sampler``'s layout, ``y`` (n_runs,) target losses; ``pool`` (QuaDMix
    mode) the sample and budget realised features are estimated at; ``propose``: how many of the
    best candidates to return as the next round's runs (``SearchResult.proposals``). Returns the
    summary (the CV tables, held-out metrics, the candidate's predicted loss next to the best
    observed run, which of the two is the output) and the search result (θ* or r*, or the best
    run's)."""
    X, renormalised = _check_layout(ids, X, sampler, cfg)
    test = _held_out(ids, cfg)
    fit_ids = [r for r, t in zip(ids, test, strict=True) if not t]
    if len(fit_ids) < MIN_FIT_RUNS or (test.any() and test.sum() < 2):
        raise ConfigError(
            f"search: {len(ids)} runs ({int(test.sum())} held out) are too few: need ≥ {MIN_FIT_RUNS} to "
            "fit and cross-validate, and ≥ 2 held out when runs are held out"
        )
    fits = _fit_feature_modes(fit_ids, X[~test], y[~test], sampler.names, cfg, pool)
    mode = min(fits, key=lambda m: _choice_rank(fits[m][0]))
    choice, features = fits[mode]
    F = features.transform(X)
    searched = None if mode == "theta" else features
    result = search_theta(
        choice.model,
        sampler,
        cfg.n_candidates,
        cfg.top_k,
        cfg.seed,
        features=searched,
        region=RunRegion(F[~test]),
        propose=propose,
    )
    summary = {
        "mode": cfg.mode,
        "runs": len(ids),
        "held_out": int(test.sum()),
        "renormalised_runs": renormalised,
        "features": mode,
        "regressor": choice.chosen,
        "cv": choice.as_dict(),
        "cv_by_features": {m: fits[m][0].as_dict() for m in fits},
        "metrics": _cv_metrics(choice),
        "n_candidates": cfg.n_candidates,
        "top_k": cfg.top_k,
        "candidates_inside_region": result.candidate_stats["inside_region"],
    }
    if test.any():
        summary["held_out_metrics"] = _rounded(choice.model.evaluate(F[test], y[test]))
    _save_surrogate(choice, y[~test], cfg, mode)
    decision, result = _against_the_evidence(result, choice, ids, X, F, y, cfg)
    return {**summary, **decision}, result


def _fit_feature_modes(
    ids: list[str], X: np.ndarray, y: np.ndarray, names: list[str], cfg: SearchConfig, pool: PoolSample | None
) -> dict[str, tuple[Choice, object]]:
    """Per feature mode tried: the surrogate chosen on what the mode reads of the runs, and the map."""
    sample, aim, shares = (pool.sample, pool.aim_tokens, pool.shares) if pool else (None, None, None)
    fits = {}
    for mode in feature_modes(cfg, sample):
        features = feature_map(mode, names, sample, aim, shares)
        fits[mode] = (fit_surrogate(ids, features.transform(X), y, features.names, cfg), features)
    return fits


def _check_layout(ids: list[str], X: np.ndarray, sampler, cfg: SearchConfig) -> tuple[np.ndarray, int]:
    """X in the sampler's layout; RegMix rows renormalised (and how many changed)."""
    if X.shape[1] != sampler.n_params:
        layout = cfg.template_params if cfg.mode == "quadmix" else f"the domains {sampler.names}"
        raise ConfigError(
            f"search: θ vectors have {X.shape[1]} entries, the layout of {layout} has "
            f"{sampler.n_params} ({cfg.mode} mode)"
        )
    if cfg.mode == "regmix":
        return renormalise_mixtures(ids, X)
    return X, 0


def _choice_rank(choice: Choice) -> tuple[float, float]:
    """The order feature modes are chosen in: CV Spearman (to three decimals), then MAE."""
    row = choice.score
    return (-round(row.spearman, 3), row.mae)


def _rounded(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in metrics.items()}


def _cv_metrics(choice: Choice) -> dict[str, float]:
    row = choice.score
    n = row.oof.shape[1]
    return {
        "spearman": round(row.spearman, 4),
        "spearman_sd": round(row.spearman_sd, 4),
        "mae": round(row.mae, 5),
        "n": n,
    }


def _save_surrogate(choice: Choice, y: np.ndarray, cfg: SearchConfig, features: str) -> None:
    """The chosen model (``regressor.pkl`` + ``regressor.json``) and its out-of-fold plot."""
    row = choice.score
    meta = {
        "family": choice.chosen,
        "mode": cfg.mode,
        "features": features,
        "feature_names": list(choice.model.feature_names),
        "cv": choice.as_dict(),
    }
    files.write_bytes(regressor_file(cfg), choice.model.to_bytes())
    files.write_text(files.join(cfg.output_dir, "regressor.json"), json.dumps(meta, indent=2))
    with files.local_folder(cfg.output_dir) as out:  # matplotlib writes to local paths
        title = f"{choice.chosen}: out-of-fold predictions ({choice.k}-fold CV, repeat 1 of {choice.repeats})"
        plot_predicted_vs_actual(
            y, row.oof[0], out / "predicted_vs_actual.png", title=title, table=choice.as_dict()["table"]
        )


def _against_the_evidence(
    result: SearchResult,
    choice: Choice,
    ids: list[str],
    X: np.ndarray,
    F: np.ndarray,
    y: np.ndarray,
    cfg: SearchConfig,
) -> tuple[dict, SearchResult]:
    """The candidate, when it is predicted better than the best observed run by more than
    ``search.evidence_margin`` CV MAEs; else the best run itself (unless ``search.keep_candidate``).
    ``X`` holds the runs' θ (or mixtures), ``F`` what the surrogate reads of them.

    Both sides are the surrogate's: the best of n noisy runs is observed below its true loss (the
    winner's curse), so its observed loss is no fair match for a prediction; the run's prediction
    is, moved towards its observation only by what exceeds ``RESIDUAL_NOISE`` MAEs (a run the
    surrogate cannot reach). ``benchmarks/search_evidence.py`` compares this with the observed
    loss and with wider margins."""
    best = int(np.argmin(y))
    what = "θ*" if cfg.mode == "quadmix" else "r*"
    mae = choice.score.mae
    margin = cfg.evidence_margin * mae
    predicted = float(choice.model.predict(F[best : best + 1])[0])
    reference = best_run_estimate(float(y[best]), predicted, mae)
    gain = reference - result.predicted_loss_of_mean
    decision = {
        "theta_star_predicted_loss": round(result.predicted_loss_of_mean, 5),
        "best_observed_loss": round(float(y[best]), 5),
        "best_observed_run": ids[best],
        "best_run_predicted_loss": round(predicted, 5),
        "best_run_estimate": round(reference, 5),
        "cv_error": round(mae, 5),
        "evidence_margin": round(margin, 5),
        "output_source": "searched candidate",
    }
    if gain > margin:
        return decision, result
    message = _evidence_message(what, result.predicted_loss_of_mean, ids[best], y[best], decision, margin)
    if cfg.keep_candidate:
        decision["warning"] = f"{message}; search.keep_candidate: writing {what} anyway"
        log.warning(decision["warning"])
        return decision, result
    decision["output_source"] = f"best run {ids[best]}"
    decision["warning"] = (
        f"{message}: writing the best run's {'θ' if cfg.mode == 'quadmix' else 'mixture'} instead"
    )
    log.warning(decision["warning"])
    decision["candidate"] = [float(x) for x in result.theta_star]  # what was searched, not written
    best_run = replace(
        result, theta_star=X[best].copy(), predicted_loss_of_mean=decision["best_run_predicted_loss"]
    )
    return decision, best_run


RESIDUAL_NOISE = 2.0  # CV MAEs of a run's residual taken as noise when judging the best run


def best_run_estimate(observed: float, predicted: float, mae: float) -> float:
    """The best run's loss as the search compares it: the surrogate's ``predicted`` loss, moved
    towards the ``observed`` one by the part of the residual beyond ``RESIDUAL_NOISE`` × ``mae``
    (nats, all three)."""
    residual = observed - predicted
    return predicted + float(np.sign(residual)) * max(abs(residual) - RESIDUAL_NOISE * mae, 0.0)


def regressor_file(cfg: SearchConfig) -> str:
    """Where the surrogate is saved, as every process sees it (local paths absolute)."""
    return files.qualify(files.join(cfg.output_dir, "regressor.pkl"))


def _evidence_message(
    what: str, cand: float, run: str, observed: float, decision: dict, margin: float
) -> str:
    """The warning with both sides predicted by the same surrogate, and the run's observed loss: a
    run observed below what the surrogate predicts for it (a lucky run) reads as such."""
    predicted, reference = decision["best_run_predicted_loss"], decision["best_run_estimate"]
    message = (
        f"{what} is predicted at {cand:.4f}, not better than the best run {run} by more than "
        f"{margin:.4f}: the same surrogate predicts that run at {predicted:.4f} (observed {observed:.4f}"
    )
    if reference != predicted:
        side = "below what the surrogate reaches" if reference < predicted else "above its prediction"
        message += (
            f"; {reference:.4f} counting the part of its residual beyond {RESIDUAL_NOISE:g} CV MAEs: "
            f"the run's observed loss is {side}"
        )
    return message + ")"


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
        "inputs": {
            "runs_path": cfg.runs_path,
            "prior": (summary or {}).get("prior", cfg.prior),
            "temperature": cfg.temperature,
        },
        "search": {"n_candidates": result.n_candidates, "top_k": len(result.top_predicted)},
        "predicted_loss": result.predicted_loss_of_mean,
        "regressor_file": regressor_file(cfg),  # predict-mixture finds the surrogate from r*
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
    regressor_families(cfg)  # a wrong name fails before any input is read
    with CostMeter(spark, "fit-search") as meter:
        note = prior_fallback(config, spark)
        regmix = regmix_prior(config, spark, "uniform" if note else None) if cfg.mode == "regmix" else None
        runs = load_runs(cfg, spark)
        ids, X, y = run_targets(runs, config.targets.weights)
        pool = pool_features(config, spark) if cfg.mode == "quadmix" and cfg.features != "theta" else None
        summary, result = fit_and_search(ids, X, y, make_sampler(cfg, regmix), cfg, pool)
        if note:  # said once, in the summary printed and written
            summary["prior"], summary["prior_note"] = "uniform", note
        summary["output"] = write_theta_star(result, cfg, summary)
    if cfg.mode == "quadmix":
        summary["params_hash"] = core.params_hash(result.to_params())
    summary["regressor_file"] = regressor_file(cfg)
    summary["seconds"] = round(time.time() - started, 1)
    summary["cost"] = meter.cost.to_json()
    files.write_text(files.join(cfg.output_dir, "search_summary.json"), json.dumps(summary, indent=2))
    return summary


def pool_features(config: PipelineConfig, spark=None) -> PoolSample | None:
    """The pool sample realised features are estimated from (``search.feature_sample`` documents
    per domain of ``select.input_table``, σ under ``select.stats_table``) at the proxies' aim,
    ``proxy.token_budget · (1 + proxy.overshoot)``; None for ``features: auto`` without a pool."""
    from quadmix_spark.proxy.datasets import pool_sample
    from quadmix_spark.spark import tables

    cfg = config.search
    stats = config.table_path(config.select.stats_table)
    if spark is None or not tables.exists(spark, stats):
        if cfg.features == "auto":
            log.info("search.features: no stats table at %s: the surrogate reads θ alone", stats)
            return None
        raise ConfigError(
            f"search.features: {cfg.features} needs the pool the runs selected from: no stats table at "
            f"{stats} (select.stats_table; run quadmix stats first, or search.features=theta)"
        )
    template = inputs.read_params(cfg.template_params, "search.template_params")
    proxy = config.proxy
    sample = pool_sample(spark, config, template, cfg.feature_sample)
    return PoolSample(sample, proxy.token_budget * (1.0 + proxy.overshoot))


def _named_regressor(path: str) -> str | None:
    """The regressor a file of fit-search's names: itself (a pickle), the ``regressor_file`` of its
    summary JSON or of an r* mixture file's provenance; None when it names none."""
    if path.endswith(".pkl"):
        return path
    try:
        with files.local_copy(path) as local:
            data = read_structured(local)
    except (ValueError, OSError, core.ParamsError):
        return None
    if not isinstance(data, dict):
        return None
    named = (data.get("provenance") or {}) if "mixture" in data else data
    return named.get("regressor_file") if isinstance(named.get("regressor_file"), str) else None


def locate_surrogate(config: PipelineConfig, regressor: str | None = None, mixtures=()) -> str:
    """Where fit-search's RegMix surrogate is: ``regressor`` (a ``regressor.pkl``, the folder holding
    it or a ``search_summary.json``), else ``search.output_dir``, else the one named by the r* file
    at ``search.output_mixture`` or any of ``mixtures`` (fit-search records it there), so
    predict-mixture finds it without fit-search's ``search.output_dir``. The error lists every
    place looked."""
    looked: list[str] = []
    places = [regressor] if regressor else []
    places.append(files.join(config.search.output_dir, "regressor.pkl"))
    places += [config.search.output_mixture, *mixtures]
    for place in places:
        if regressor and place == regressor and not place.endswith((".pkl", ".json")):
            place = files.join(place, "regressor.pkl")  # a folder fit-search wrote
        looked.append(place)
        named = _named_regressor(place) if files.is_file(place) else None
        if named and named != place:
            looked.append(f"{named} (named by {place})")
        if named and files.is_file(named):
            return named
    shown = "\n  ".join(looked)
    raise ConfigError(
        "search.output_dir: no fitted surrogate (regressor.pkl) found; looked at:\n  "
        f"{shown}\nrun quadmix fit-search (search.mode: regmix) first, or pass --regressor with the "
        "regressor.pkl or search_summary.json it wrote, or set search.output_dir to its folder"
    )


def load_surrogate(config: PipelineConfig, regressor: str | None = None, mixtures=()):
    """The surrogate fit-search saved (:func:`locate_surrogate`)."""
    return regressor_from_bytes(files.read_bytes(locate_surrogate(config, regressor, mixtures)))


def predict_mixtures(
    config: PipelineConfig, names: list[str], spark=None, regressor: str | None = None
) -> list[tuple[str, float]]:
    """Predicted target loss of each mixture source (a file, ``uniform``, ``entropy:se``, ...) by
    the RegMix surrogate fit-search saved (found by :func:`locate_surrogate`); ``natural`` reads
    the stats table through ``spark``."""
    model = load_surrogate(config, regressor, inputs.mixture_needs(config, names, "--mixture")[0])
    if model.mode != "regmix":
        raise ConfigError(
            f"search.output_dir: the surrogate in {config.search.output_dir} is a {model.mode}-mode one"
        )
    stats_path = config.table_path(config.select.stats_table)
    tokens = None if spark is None else (lambda: load_stats(spark, stats_path).tokens)
    ctx = inputs.mixture_context(config, "--mixture", model.feature_names, tokens, stats_table=stats_path)
    rows = [sources.resolve(name, ctx).as_vector(model.feature_names) for name in names]
    return list(zip(names, model.predict(np.vstack(rows)).tolist(), strict=True))


def format_cv_table(cv: dict, label: str = "surrogate") -> list[str]:
    """The cross-validation table, one family (or ensemble) per line, best first; * = chosen."""
    lines = [f"  {label:<34} {'Spearman':>8} {'± sd':>7} {'MAE':>9} {'seconds':>8}"]
    for row in cv["table"]:
        mark = "*" if row["family"] == cv["chosen"] else " "
        if "error" in row:
            lines.append(f"  {mark}{row['family']:<33} failed: {row['error']}")
            continue
        lines.append(
            f"  {mark}{row['family']:<33} {row['spearman']:>8.3f} {row['spearman_sd']:>7.3f} "
            f"{row['mae']:>9.4f} {row['seconds']:>8.2f}"
        )
    return lines


def format_cv_tables(s: dict) -> list[str]:
    """One CV table per feature mode tried (QuaDMix ``features: auto`` tries three)."""
    by_features = s.get("cv_by_features") or {s.get("features", "theta"): s["cv"]}
    lines = []
    for mode, cv in by_features.items():
        chosen = " (chosen)" if mode == s.get("features") and len(by_features) > 1 else ""
        lines += format_cv_table(cv, f"features: {mode}{chosen}" if s["mode"] == "quadmix" else "surrogate")
    return lines


def format_summary(s: dict) -> str:
    m, cv = s["metrics"], s["cv"]
    what = "θ*" if s["mode"] == "quadmix" else "r*"
    held = f", {s['held_out']} held out" if s["held_out"] else ""
    lines = [
        f"fit-search: {s['runs']} runs{held}, {s['mode']} mode; surrogate {s['regressor']} by "
        f"{cv['k']}-fold CV ×{cv['repeats']}: Spearman {m['spearman']:.3f} ± {m['spearman_sd']:.3f}, "
        f"MAE {m['mae']:.4f}" + (f"; features: {s['features']}" if s["mode"] == "quadmix" else ""),
        *format_cv_tables(s),
    ]
    if "held_out_metrics" in s:
        h = s["held_out_metrics"]
        lines.append(f"  held-out runs ({h['n']}): Spearman {h['spearman']:.3f}, MAE {h['mae']:.4f}")
    lines.append(
        f"  {what} (mean of top {s['top_k']} of {s['n_candidates']} candidates): predicted loss "
        f"{s['theta_star_predicted_loss']:.4f}; best observed run {s['best_observed_run']}: "
        f"{s['best_observed_loss']:.4f} (predicted {s['best_run_predicted_loss']:.4f})"
    )
    if s.get("prior_note"):
        lines.append(f"  {s['prior_note']}")
    if s.get("renormalised_runs"):
        lines.append(f"  {s['renormalised_runs']} run mixtures summed to 1 only after rounding: renormalised")
    if s.get("warning"):
        lines.append(f"  WARNING: {s['warning']}")
    lines.append(f"  wrote {s['output']} ({s['output_source']}) in {s['seconds']}s")
    if s.get("cost"):
        lines.append(f"  {Cost.from_json(s['cost']).line()}")
    return "\n".join(lines)
