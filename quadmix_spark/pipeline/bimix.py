"""The bimix job: proxy runs → a BiMix law per domain → diagnostics → the optimal mixture r*.

Runs come from the ``proxy_runs`` Delta table (every checkpoint of every ok run; domain i's loss
is the run's loss on ``heldout:<domain>`` and its share r_i the run's realised ``mixture``, whose
order is ``search.domains`` or the domains of ``search.template_params``), or from a file in
BiMix's long format at ``bimix.runs_path`` (``run_id, domain, r, step_tokens, loss``). Either way
the job fits :class:`~quadmix_spark.mixing.bimix.BiMixLaw`, measures extrapolation to every run's
last checkpoint and (given enough distinct mixtures) leave-k-mixtures-out error, plots the curves,
and writes r* = argmin Σ_i w_i L_i(r_i, s_target) as a mixture file with the fit in its
provenance. Caps come from the latest stats table (``max_repeats × tokens_i / budget``); without a
stats table r* is uncapped and the summary says so. Runs with one step (a swarm that logged only
its final loss) get the fixed-step law ``L_i = A_i / r_i^α_i`` (``bimix.fixed_step``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig
from quadmix_spark.mixing.bimix import RUN_COLUMNS, BiMixLaw, single_step, validate_runs
from quadmix_spark.mixing.bimix_diagnostics import (
    extrapolation_error,
    fit_summary,
    format_errors,
    mixture_groups,
    plot_fit,
    unseen_mixture_error,
)
from quadmix_spark.mixing.bimix_optimum import BiMixOptimum, optimal_mixture, share_caps
from quadmix_spark.pipeline import inputs
from quadmix_spark.spark import files
from quadmix_spark.spark.cost import Cost, CostMeter

log = logging.getLogger(__name__)

HELDOUT = "heldout:"
PLOT_NAME = "bimix_fit.png"
SUMMARY_NAME = "bimix_summary.json"
#: Folds of the unseen-mixture error when ``bimix.unseen_k`` is null: each fold refits the law.
MAX_UNSEEN_FOLDS = 20


def _plain(value: Any) -> Any:
    """JSON-ready values: NaN and ±inf → None, numpy scalars → Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def mixture_domains(config: PipelineConfig) -> list[str]:
    """The order of the runs' mixture vectors: ``search.domains``, else the template's domains."""
    if config.search.domains:
        return list(config.search.domains)
    if files.is_file(config.search.template_params):
        return list(inputs.read_params(config.search.template_params, "search.template_params").domains)
    raise ConfigError(
        "search.domains: the bimix job needs the order of the runs' mixture vectors: set "
        "search.domains or search.template_params"
    )


def runs_table_long(runs: pd.DataFrame, domains: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ``proxy_runs`` rows (one per run) as BiMix's long table, and what was left out.

    One row per (ok run, domain, checkpoint) from the eval set ``heldout:<domain>``, r the run's
    realised share of the domain. A run with no ``heldout:`` set at all (runs trained elsewhere,
    imported with their per-domain sets named by the domain, as a RegMix swarm names them) gives
    the eval set named as the domain itself. Failed runs and runs without a mixture are counted,
    not used.
    """
    ok = runs["status"] == "ok"
    has_mixture = runs["mixture"].map(lambda m: m is not None and len(m) > 0)
    used = runs[ok & has_mixture]
    index = {d: i for i, d in enumerate(domains)}
    rows, other_sets = [], set()
    for run in used.itertuples():
        mixture = np.asarray(run.mixture, dtype=np.float64)
        if len(mixture) != len(domains):
            raise ConfigError(
                f"search.domains: run {run.run_id} has a mixture of {len(mixture)} shares, the order "
                f"{domains} has {len(domains)}"
            )
        plain = not any(str(x["eval_set"]).startswith(HELDOUT) for x in run.losses)
        for x in run.losses:
            name = str(x["eval_set"])
            domain = name[len(HELDOUT) :] if name.startswith(HELDOUT) else (name if plain else None)
            if domain not in index:
                other_sets.add(name)
                continue
            rows.append(
                (str(run.run_id), domain, mixture[index[domain]], int(x["step_tokens"]), float(x["loss"]))
            )
    info = {
        "runs_used": int(len(used)),
        "runs_failed": int((~ok).sum()),
        "runs_without_mixture": int((ok & ~has_mixture).sum()),
        "other_eval_sets": sorted(other_sets),
    }
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS)), info


def check_config(config: PipelineConfig) -> None:
    """What can be checked before a SparkSession starts: a local runs file (its columns and values,
    the weights and whether every domain can be fitted), or the order of the runs table's vectors."""
    path = config.bimix.runs_path
    if path is not None:
        if files.is_local_path(path):  # a URI is read once Spark (its Hadoop client) is up
            check_runs(config, *load_long_runs(config))
    elif files.is_local_path(config.search.template_params) or config.search.domains:
        mixture_domains(config)


def needs_spark(config: PipelineConfig) -> bool:
    """Whether the job reads through Spark: the runs table, a URI, or a stats table for the caps."""
    cfg = config.bimix
    if cfg.runs_path is None or not all(
        map(files.is_local_path, (cfg.runs_path, cfg.output_dir, cfg.output_mixture))
    ):
        return True
    stats = config.table_path(config.select.stats_table)
    return not files.is_local_path(stats) or files.exists(files.join(stats, "_delta_log"))


def runs_key(config: PipelineConfig) -> str:
    """The key that names where the runs come from, for the errors about them."""
    return "proxy.runs_table" if config.bimix.runs_path is None else "bimix.runs_path"


def fixed_step(config: PipelineConfig, table: pd.DataFrame) -> bool:
    """Whether the fixed-step law is fitted: ``bimix.fixed_step``, or (null) whether the runs have
    one step."""
    chosen = config.bimix.fixed_step
    return single_step(table) is not None if chosen is None else chosen


def check_runs(config: PipelineConfig, table: pd.DataFrame, info: dict[str, Any]) -> None:
    """Refuse, naming the key, what fitting ``table`` would refuse: the weights, a domain's rows, a
    ``bimix.s_target`` the fixed-step law does not hold at."""
    domain_weights(config.targets.weights, sorted(table["domain"].unique()), info.get("other_eval_sets", ()))
    fixed = fixed_step(config, table)
    try:
        BiMixLaw(fixed_step=fixed).check(table)
    except ValueError as err:
        hint = ""
        if "distinct steps" in str(err):  # the full law's refusal: say which key offers the one-step law
            hint = (
                " (bimix.fixed_step: false; null fits L_i = A_i / r_i^α_i to runs with one step)"
                if config.bimix.fixed_step is False
                else " (bimix.fixed_step: true fits L_i = A_i / r_i^α_i at the largest step)"
            )
        raise ConfigError(f"{runs_key(config)}: {info['source']}: {err}{hint}") from err
    step = float(table.loc[(table["r"] > 0) & (table["step_tokens"] > 0), "step_tokens"].max())
    if fixed and config.bimix.s_target not in (None, step):
        raise ConfigError(
            f"bimix.s_target: {config.bimix.s_target:,.0f}, but the fixed-step law holds only at the step "
            f"it was fitted at ({step:,.0f} tokens): set bimix.s_target to null (or give runs with 3 steps "
            "per domain and bimix.fixed_step: false)"
        )


def load_long_runs(config: PipelineConfig, spark=None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The long table from ``bimix.runs_path`` or else the ``proxy_runs`` table; and its counts."""
    path = config.bimix.runs_path
    if path is not None:
        fmt = "csv" if path.lower().endswith(".csv") else "parquet"
        table = inputs.read_table(path, "bimix.runs_path", fmt)
        missing = [c for c in RUN_COLUMNS if c not in table.columns]
        if missing:
            raise ConfigError(
                f"bimix.runs_path: column(s) {missing} missing from {path} (its columns: "
                f"{list(table.columns)}; BiMix's long format: {', '.join(RUN_COLUMNS)})"
            )
        info = {"source": path, "runs_used": int(table["run_id"].nunique())}
    else:
        from quadmix_spark.proxy.runs import load_runs
        from quadmix_spark.spark import tables

        source = config.table_path(config.proxy.runs_table)
        if spark is None or not tables.exists(spark, source):
            raise ConfigError(f"proxy.runs_table: no Delta table at {source} (run quadmix experiment first)")
        domains = mixture_domains(config)
        table, info = runs_table_long(load_runs(spark, source), domains)
        info["source"] = source
        if table.empty:
            raise ConfigError(
                f"proxy.runs_table: no ok run at {source} has a loss on a held-out set heldout:<domain> "
                f"(or, without heldout: sets, one named as the domain) of {domains}; their eval sets: "
                f"{info['other_eval_sets'][:20]} (proxy runs log heldout:<domain> when "
                f"targets.heldout_fraction > 0)"
            )
    try:
        table = validate_runs(table)
    except ValueError as err:
        raise ConfigError(f"{runs_key(config)}: {info['source']}: {err}") from err
    return table, info


def domain_weights(
    weights: dict[str, float], domains: list[str], other_sets: Sequence[str] = ()
) -> tuple[dict[str, float], list[str]]:
    """Domain → w_i from ``targets.weights``, {} = all 1. A key is a domain's name (as the long
    format's ``domain`` column and fit-search's eval sets name it) or ``heldout:<domain>`` (the
    runs table's eval set of it). Domains not named get 0.

    Keys naming another eval set of the runs (``other_sets``: a target set the law is not fitted
    on) are returned as ignored; a key naming nothing the runs have is a ConfigError.
    """
    if not weights:
        return {d: 1.0 for d in domains}, []
    named: dict[str, float] = {}
    ignored, unknown = [], []
    for key, value in weights.items():
        domain = key[len(HELDOUT) :] if key.startswith(HELDOUT) else key
        if domain not in domains:
            (ignored if key in other_sets else unknown).append(key)
        elif named.setdefault(domain, float(value)) != float(value):
            raise ConfigError(
                f"targets.weights: {domain} and {HELDOUT}{domain} name one domain with two weights: keep one"
            )
    if unknown:
        raise ConfigError(
            f"targets.weights: {sorted(unknown)} name no domain of the runs; their domains: {domains} "
            f"(key a weight by the domain's name or {HELDOUT}<domain>)"
        )
    if not any(v > 0 for v in named.values()):
        raise ConfigError(f"targets.weights: no held-out set heldout:<domain> of {domains} has a weight > 0")
    return {d: named.get(d, 0.0) for d in domains}, sorted(ignored)


def available_tokens(config: PipelineConfig, spark, domains: list[str]) -> tuple[dict[str, int] | None, str]:
    """Tokens per domain of the latest stats run, or None (and why) when there is no stats table."""
    from quadmix_spark.spark import tables
    from quadmix_spark.spark.stats_table import load_stats

    path = config.table_path(config.select.stats_table)
    if spark is None or not tables.exists(spark, path):
        return None, f"no stats table at {path}: r* is not capped by available tokens"
    stats = load_stats(spark, path)
    missing = [d for d in domains if d not in stats.tokens]
    if missing:
        raise ConfigError(f"select.stats_table: the stats at {path} lack the fitted domains {missing}")
    return {d: stats.tokens[d] for d in domains}, f"stats table {path} version {stats.stats_version}"


def _diagnose(table: pd.DataFrame, law: BiMixLaw, k: int | None) -> dict[str, Any]:
    """Extrapolation and unseen-mixture errors, each None with the reason when it cannot be run."""
    out: dict[str, Any] = {"mixtures": len(mixture_groups(table))}
    k = k or max(1, math.ceil(out["mixtures"] / MAX_UNSEEN_FOLDS))
    try:
        out["extrapolation"] = extrapolation_error(table, law)
    except ValueError as err:
        out["extrapolation"], out["extrapolation_skipped"] = None, str(err)
    if out["mixtures"] - k < 2:
        out["unseen"] = None
        out["unseen_skipped"] = (
            f"{out['mixtures']} distinct mixtures: leaving {k} out leaves fewer than 2 to fit on"
        )
    else:
        try:
            out["unseen"] = unseen_mixture_error(table, k, law)
        except ValueError as err:
            out["unseen"], out["unseen_skipped"] = None, f"a fold cannot be fitted: {err}"
    return out


@dataclass(frozen=True)
class FittedRuns:
    """The runs' long table, where it came from, and the law fitted to it with its diagnostics."""

    table: pd.DataFrame
    info: dict[str, Any]  # source and run counts (:func:`load_long_runs`)
    law: BiMixLaw
    weights: dict[str, float]  # domain → w_i
    ignored_weights: list[str]
    unfitted: list[str]  # domains of the mixture vectors without a held-out loss
    diagnostics: dict[str, Any]  # :func:`_diagnose`
    fixed_step: dict[str, Any] | None = None  # the step, whether chosen automatically, rows left out

    @property
    def domains(self) -> list[str]:
        return list(self.law.domains_)


@dataclass(frozen=True)
class ShareCaps:
    """What bounds r*: the token budget and, from the latest stats run, each domain's cap."""

    budget: int
    tokens: dict[str, int] | None  # per domain; None without a stats table
    note: str  # where the tokens came from, or why there are none
    caps: dict[str, float] | None  # max_repeats × tokens_i / budget

    @property
    def natural(self) -> dict[str, float] | None:
        """The domains' shares of the available tokens (None without tokens)."""
        if self.tokens is None or sum(self.tokens.values()) <= 0:
            return None
        total = sum(self.tokens.values())
        return {d: n / total for d, n in self.tokens.items()}


def run_bimix(config: PipelineConfig, spark=None) -> dict[str, Any]:
    """Fit, diagnose, plot and write r*; return the summary (also written as JSON beside the plot)."""
    started = time.time()
    cfg = config.bimix
    with CostMeter(spark, "bimix") as meter:
        table, info = load_long_runs(config, spark)
        fitted = fit_runs(config, table, info)
        plot = write_plot(fitted, cfg.output_dir)
        caps = load_caps(config, spark, fitted.domains)
        s_target = cfg.s_target or float(fitted.table["step_tokens"].max())
        optimum = solve_optimum(fitted, caps, s_target)
        fit = fit_record(fitted)
        write_r_star(config, optimum, fit, caps, info["source"])
    summary = _summary(fitted, caps, optimum, fit, s_target)
    summary.update(output=str(cfg.output_mixture), plot=plot, cost=meter.cost.to_json())
    return publish_summary(_plain(summary), cfg.output_dir, started)


def fit_runs(config: PipelineConfig, table: pd.DataFrame, info: dict[str, Any]) -> FittedRuns:
    """The law fitted to ``table`` with the objective's weights and the diagnostics."""
    check_runs(config, table, info)
    names = sorted(table["domain"].unique())
    weights, ignored = domain_weights(config.targets.weights, names, info.get("other_eval_sets", ()))
    table, fixed = at_fixed_step(config, table)
    law = BiMixLaw(fixed_step=fixed is not None)
    try:
        law.fit(table)
    except ValueError as err:
        raise ConfigError(f"{runs_key(config)}: {info['source']}: {err}") from err
    domains = list(law.domains_)
    expected = mixture_domains(config) if config.bimix.runs_path is None else domains
    unfitted = [d for d in expected if d not in domains]
    diagnostics = _diagnose(table, law, config.bimix.unseen_k)
    return FittedRuns(table, info, law, weights, ignored, unfitted, diagnostics, fixed)


def at_fixed_step(config: PipelineConfig, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The rows the law is fitted and scored on and, for the fixed-step law, its step and how it was
    chosen: its unseen-mixture error must not score rows at other steps against a law of one step."""
    if not fixed_step(config, table):
        return table, None
    step = float(table.loc[(table["r"] > 0) & (table["step_tokens"] > 0), "step_tokens"].max())
    at_step = table["step_tokens"] == step
    note = {
        "step": step,
        "automatic": config.bimix.fixed_step is None,
        "rows_other_steps": int((~at_step).sum()),
    }
    log.info("bimix: fixed-step law L_i = A_i / r_i^α_i at %s tokens (%s)", f"{step:,.0f}", note)
    return table[at_step].reset_index(drop=True), note


def write_plot(fitted: FittedRuns, output_dir: str) -> str:
    """The fitted curves over the runs' losses as ``PLOT_NAME`` in ``output_dir``; its path."""
    with files.local_folder(output_dir) as out:  # matplotlib writes to a local path
        plot_fit(fitted.law, fitted.table, out / PLOT_NAME)
    return str(files.join(output_dir, PLOT_NAME))


def load_caps(config: PipelineConfig, spark, domains: list[str]) -> ShareCaps:
    """The budget r* spends and each domain's cap from the latest stats run, if there is one."""
    tokens, note = available_tokens(config, spark, domains)
    budget = config.bimix.budget or config.proxy.token_budget
    caps = None
    if tokens is not None:
        vector = share_caps([tokens[d] for d in domains], budget, config.select.max_repeats)
        caps = dict(zip(domains, map(float, vector), strict=True))
    return ShareCaps(budget, tokens, note, caps)


def solve_optimum(fitted: FittedRuns, caps: ShareCaps, s_target: float) -> BiMixOptimum:
    """r* = argmin Σ_i w_i L_i(r_i, s_target) within the caps; a ConfigError when none fits."""
    try:
        return optimal_mixture(fitted.law, s_target, weights=fitted.weights, upper=caps.caps)
    except ValueError as err:
        raise ConfigError(
            f"bimix.budget: no mixture of {fitted.domains} fits the caps {caps.caps} (select.max_repeats × "
            f"tokens / budget {caps.budget}): {err}"
        ) from err


def fit_record(fitted: FittedRuns) -> dict[str, Any]:
    """The fit's quality in a few numbers: in-sample, extrapolation and unseen-mixture errors."""
    diag = fitted.diagnostics
    extrapolation, unseen = diag["extrapolation"], diag["unseen"]
    fit = fit_summary(fitted.law) | {"runs": fitted.info["runs_used"], "mixtures": diag["mixtures"]}
    if extrapolation is not None:
        fit["extrapolation_mean_rel_error"] = extrapolation.mean["mean_rel_error"]
        fit["extrapolation_max_rel_error"] = extrapolation.mean["max_rel_error"]
    if unseen is not None:
        fit["unseen_r2_log"] = unseen.mean["r2_log"]
        fit["unseen_mean_rel_error"] = unseen.mean["mean_rel_error"]
    return _plain(fit)


def write_r_star(
    config: PipelineConfig, optimum: BiMixOptimum, fit: dict[str, Any], caps: ShareCaps, source: str
) -> None:
    """r* as a mixture file at ``bimix.output_mixture``, the fit and its inputs in its provenance."""
    provenance = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": __version__,
        "inputs": {
            "runs": source,
            "caps": caps.note,
            "budget": caps.budget,
            "max_repeats": config.select.max_repeats,
        },
    }
    if caps.caps is not None:
        provenance["caps"] = caps.caps
    mixture = optimum.to_mixture(fit=fit, **provenance)
    mixture = core.Mixture.from_shares(mixture.shares, _plain(dict(mixture.provenance)))
    with files.local_file(config.bimix.output_mixture) as path:
        mixture.to_file(path)


def _summary(
    fitted: FittedRuns, caps: ShareCaps, optimum: BiMixOptimum, fit: dict[str, Any], s_target: float
) -> dict[str, Any]:
    """Everything the job found, as :func:`format_summary` and the summary JSON read it."""
    domains, diag = fitted.domains, fitted.diagnostics
    extrapolation, unseen = diag["extrapolation"], diag["unseen"]
    zero = fitted.law.diagnostics_["n_zero_share"]
    return {
        **fitted.info,
        "domains": domains,
        "unfitted_domains": fitted.unfitted,
        "rows": int(len(fitted.table)),
        "excluded_zero_share": int(zero.sum()),
        "excluded_zero_share_per_domain": {d: int(n) for d, n in zero.items() if n},
        "mixtures": diag["mixtures"],
        "fit": fit,
        "coefficients": optimum.coefficients,
        "extrapolation": extrapolation.to_dict() if extrapolation is not None else None,
        "extrapolation_skipped": diag.get("extrapolation_skipped"),
        "unseen": unseen.to_dict() if unseen is not None else None,
        "unseen_skipped": diag.get("unseen_skipped"),
        "diagnostics_table": format_errors(extrapolation, unseen, fitted.law),
        "s_target": s_target,
        "weights": fitted.weights,
        "ignored_weights": fitted.ignored_weights,
        "budget": caps.budget,
        "caps": caps.caps,
        "caps_note": caps.note,
        "r_star": optimum.shares,
        "natural": caps.natural,
        "predicted_loss": dict(zip(domains, map(float, optimum.losses), strict=True)),
        "objective": optimum.objective,
        "fixed_step": fitted.fixed_step,
        "at_upper": optimum.at_upper,
        "at_lower": optimum.at_lower,
    }


def publish_summary(summary: dict[str, Any], output_dir: str, started: float) -> dict[str, Any]:
    """``summary`` with its time and path, written as ``SUMMARY_NAME`` in ``output_dir``."""
    summary["seconds"] = round(time.time() - started, 1)
    summary["summary"] = files.join(output_dir, SUMMARY_NAME)
    files.write_text(summary["summary"], json.dumps(summary, indent=2))
    return summary


def fixed_step_lines(fixed: dict[str, Any] | None) -> list[str]:
    """What the summary says about a fixed-step fit: which law, at which step, and why."""
    if fixed is None:
        return []
    why = (
        "the runs have one step per domain (bimix.fixed_step: null)"
        if fixed["automatic"]
        else "bimix.fixed_step: true"
    )
    lines = [
        f"  fixed-step law L_i = A_i / r_i^α_i at {fixed['step']:,.0f} tokens: {why}; β and C are not "
        "determined, so r* is for runs of this length and there is no extrapolation error"
    ]
    if fixed["rows_other_steps"]:
        lines.append(f"  {fixed['rows_other_steps']} rows at other steps not used")
    return lines


def format_summary(s: dict[str, Any]) -> str:
    skipped = [
        f"{s[k]} {what}"
        for k, what in (("runs_failed", "failed"), ("runs_without_mixture", "without a mixture"))
        if s.get(k)
    ]
    lines = [
        f"bimix: {s['runs_used']} runs{' (' + ', '.join(skipped) + ', not used)' if skipped else ''}, "
        f"{s['mixtures']} distinct mixtures, {len(s['domains'])} domains ({', '.join(s['domains'])}), "
        f"{s['rows']} rows from {s['source']}",
    ]
    lines += fixed_step_lines(s.get("fixed_step"))
    if s["excluded_zero_share"]:
        per = ", ".join(f"{d}: {n}" for d, n in s["excluded_zero_share_per_domain"].items())
        lines.append(
            f"  {s['excluded_zero_share']} rows with r = 0 excluded from the fit (the law diverges): {per}"
        )
    if s.get("unfitted_domains"):
        lines.append(f"  WARNING: no held-out loss for {s['unfitted_domains']}: not fitted, not in r*")
    f = s["fit"]
    lines.append(
        f"  in-sample: mean R² of log loss {f['r2_log']:.4f}, "
        f"mean relative error {100 * f['mean_rel_error']:.3f}%"
    )
    lines += ["  " + line for line in s["diagnostics_table"].splitlines()]
    if s.get("extrapolation_skipped"):
        lines.append(f"  extrapolation error skipped: {s['extrapolation_skipped']}")
    if s.get("unseen_skipped"):
        lines.append(f"  unseen-mixture error skipped: {s['unseen_skipped']}")
    weights = "equal" if all(w == 1.0 for w in s["weights"].values()) else "targets.weights"
    lines.append(
        f"  r* at s_target = {s['s_target']:,.0f} tokens (weights: {weights}); caps: "
        + (
            f"max_repeats × tokens / budget {s['budget']:,} ({s['caps_note']})"
            if s["caps"]
            else s["caps_note"]
        )
    )
    if s.get("ignored_weights"):
        lines.append(
            f"  targets.weights entries that name target sets, not domains, ignored: {s['ignored_weights']}"
        )
    lines.append(f"  {'domain':<20} {'r*':>8} {'natural':>8} {'cap':>8} {'pred loss':>10}")
    for d in s["domains"]:
        natural = f"{s['natural'][d]:.4f}" if s["natural"] else "-"
        cap = f"{s['caps'][d]:.4f}" if s["caps"] else "-"
        bound = " (at cap)" if d in s["at_upper"] and s["caps"] and s["caps"][d] < 1 else ""
        loss = s["predicted_loss"][d]  # None: r* = 0 for a domain weighted 0, where the law diverges
        loss = f"{loss:>10.4f}" if loss is not None else f"{'inf':>10}"
        lines.append(f"  {d:<20} {s['r_star'][d]:>8.4f} {natural:>8} {cap:>8} {loss}{bound}")
    lines.append(f"  objective Σ w_i L_i(r*_i) = {s['objective']:.5f}")
    lines.append(f"  wrote {s['output']}, {s['plot']} and {s['summary']} in {s['seconds']}s")
    if s.get("cost"):
        lines.append(f"  {Cost.from_json(s['cost']).line()}")
    return "\n".join(lines)
