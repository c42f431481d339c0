"""How well a BiMix law predicts what it was not fitted on: later checkpoints and unseen mixtures.

- :func:`extrapolation_error`: fit on every checkpoint but the last of each run, relative error on
  the last (the paper's held-out 200k-step loss: 0.16–0.19% mean, worst domain 0.95%).
- :func:`unseen_mixture_error`: leave-k-mixtures-out; the held-out mixtures' curves are predicted
  by a law fitted on the others (the paper: mean R² of log loss 0.975 on the Pile, 0.994 on
  SlimPajama).
- :func:`plot_fit`: observed and predicted loss curves per domain, one panel each, as PNG.

Rows where the law diverges (r = 0 or s = 0) are left out of every error and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bimix import BiMixLaw, law_errors, validate_runs

__all__ = [
    "LawErrors",
    "extrapolation_error",
    "fit_summary",
    "format_errors",
    "mixture_groups",
    "plot_fit",
    "unseen_mixture_error",
]


@dataclass(frozen=True)
class LawErrors:
    """Errors of a law on held-out rows, per domain and over domains.

    ``per_domain``: one row per domain with r2_log (R² of log loss), mean_rel_error,
    max_rel_error (|pred − obs| / obs), n (rows scored), n_zero_share / n_zero_step (held-out rows
    left out because the law diverges there). ``split`` says what was held out; ``n_fits`` how
    many laws were fitted to get there.
    """

    per_domain: pd.DataFrame
    split: str
    n_fits: int

    @property
    def mean(self) -> dict[str, Any]:
        """Means over domains of R² and mean relative error; the largest error and its domain."""
        d = self.per_domain
        worst = d["max_rel_error"].idxmax() if d["max_rel_error"].notna().any() else None
        return {
            "r2_log": float(d["r2_log"].mean()) if d["r2_log"].notna().any() else math.nan,
            "mean_rel_error": float(d["mean_rel_error"].mean()),
            "max_rel_error": float(d["max_rel_error"].max()),
            "worst_domain": worst,
            "worst_domain_mean_rel_error": float(d["mean_rel_error"].max()),
            "n": int(d["n"].sum()),
            "n_zero_share": int(d["n_zero_share"].sum()),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a provenance block: the split, the means, and per-domain errors."""
        per = {
            str(k): {c: (None if isinstance(v, float) and math.isnan(v) else v) for c, v in row.items()}
            for k, row in self.per_domain.to_dict(orient="index").items()
        }
        means = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.mean.items()}
        return {"split": self.split, "n_fits": self.n_fits, **means, "per_domain": per}


def _errors(law: BiMixLaw, held: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per-domain observed and predicted losses of ``held`` (divergent rows flagged, not scored)."""
    out = held.assign(pred=law.predict_runs(held))
    out["ok"] = (out["r"] > 0) & (out["step_tokens"] > 0)
    return dict(tuple(out.groupby("domain", sort=True)))


def _per_domain(parts: list[pd.DataFrame], domains: list[str]) -> pd.DataFrame:
    table = pd.concat(parts, ignore_index=True)
    rows = {}
    for domain in domains:
        g = table[table["domain"] == domain]
        ok = g[g["ok"]]
        rows[domain] = {
            **law_errors(ok["loss"].to_numpy(), ok["pred"].to_numpy()),
            "n_zero_share": int((g["r"] == 0).sum()),
            "n_zero_step": int(((g["step_tokens"] == 0) & (g["r"] > 0)).sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def extrapolation_error(runs: pd.DataFrame, law: BiMixLaw | None = None) -> LawErrors:
    """Fit on all but the last checkpoint of every run; errors on the last checkpoints.

    ``law``: an (unfitted) estimator whose settings are used; default ``BiMixLaw()``.
    """
    if law is not None and law.fixed_step:
        raise ValueError(
            "the fixed-step law L_i = A_i / r_i^α_i does not depend on the step: nothing to extrapolate"
        )
    table = validate_runs(runs)
    last = table.groupby("run_id")["step_tokens"].transform("max") == table["step_tokens"]
    if last.all():
        raise ValueError("every run has one checkpoint: nothing is left to fit on")
    model = BiMixLaw(**(law or BiMixLaw()).get_params()).fit(table[~last])
    held = table[last]
    parts = list(_errors(model, held).values())
    domains = sorted(held["domain"].unique())
    return LawErrors(_per_domain(parts, domains), "last checkpoint of every run", 1)


def mixture_groups(runs: pd.DataFrame) -> list[list[str]]:
    """Run ids grouped by mixture (runs with equal shares of every domain, e.g. seeds), in a stable order."""
    table = validate_runs(runs)
    shares = table.groupby(["run_id", "domain"])["r"].first().unstack("domain").sort_index()
    key = shares.round(12).astype(str).agg("|".join, axis=1)
    groups: dict[str, list[str]] = {}
    for run_id, k in key.items():
        groups.setdefault(k, []).append(str(run_id))
    return sorted(groups.values(), key=lambda ids: ids[0])


def unseen_mixture_error(runs: pd.DataFrame, k: int = 1, law: BiMixLaw | None = None) -> LawErrors:
    """Leave-k-mixtures-out: the mixtures, in order, are cut into folds of ``k``; each fold's runs
    (every checkpoint) are predicted by a law fitted on the other folds.

    Runs of one mixture (seeds) stay in one fold, so no mixture is seen in its own test. R² and
    relative errors pool every held-out row of a domain over the folds.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    table = validate_runs(runs)
    groups = mixture_groups(table)
    if len(groups) - k < 2:
        raise ValueError(f"{len(groups)} mixtures: leaving {k} out leaves fewer than 2 to fit on")
    params = (law or BiMixLaw()).get_params()
    parts: list[pd.DataFrame] = []
    folds = [groups[i : i + k] for i in range(0, len(groups), k)]
    for fold in folds:
        held_ids = {run for group in fold for run in group}
        held = table["run_id"].isin(held_ids)
        model = BiMixLaw(**params).fit(table[~held])
        parts.extend(_errors(model, table[held]).values())
    domains = sorted(table["domain"].unique())
    split = f"leave-{k}-mixtures-out over {len(groups)} mixtures"
    return LawErrors(_per_domain(parts, domains), split, len(folds))


def fit_summary(law: BiMixLaw) -> dict[str, Any]:
    """The in-sample fit in plain values: mean R² of log loss, mean relative error, rows used and excluded."""
    d = law.diagnostics_
    if d is None:
        raise ValueError("the law was not fitted on runs (from_coefficients): no fit to summarise")
    return {
        "r2_log": float(d["r2_log"].mean()),
        "mean_rel_error": float(d["mean_rel_error"].mean()),
        "n_points": int(d["n_points"].sum()),
        "n_zero_share": int(d["n_zero_share"].sum()),
        "n_zero_step": int(d["n_zero_step"].sum()),
        "n_other_step": int(d["n_other_step"].sum()),
        "fixed_step": law.fixed_step,
        "at_bound": {str(k): v for k, v in d["at_bound"].items() if v},
        "s_ref": law.s_ref_,
    }


def format_errors(extrapolation: LawErrors | None, unseen: LawErrors | None, law: BiMixLaw) -> str:
    """A table per domain: fitted α, β, in-sample R², extrapolation and unseen-mixture errors."""
    lines = [
        f"{'domain':<20} {'alpha':>7} {'beta':>7} {'fit R2':>8} {'extrap %':>9} {'unseen R2':>10} "
        f"{'unseen %':>9} {'r=0 rows':>8}"
    ]
    d = law.diagnostics_

    def cell(errors: LawErrors | None, domain: str, col: str, scale: float, fmt: str) -> str:
        if errors is None or domain not in errors.per_domain.index:
            return "-"
        value = errors.per_domain.loc[domain, col]
        return "nan" if pd.isna(value) else format(value * scale, fmt)

    for domain in law.domains_:
        coef = law.coef_.loc[domain]
        beta = "-" if law.fixed_step else f"{coef['beta']:.4f}"  # not determined at one step
        lines.append(
            f"{domain:<20} {coef['alpha']:>7.4f} {beta:>7} "
            f"{d.loc[domain, 'r2_log'] if d is not None else math.nan:>8.4f} "
            f"{cell(extrapolation, domain, 'mean_rel_error', 100, '.3f'):>9} "
            f"{cell(unseen, domain, 'r2_log', 1, '.4f'):>10} "
            f"{cell(unseen, domain, 'mean_rel_error', 100, '.3f'):>9} "
            f"{int(d.loc[domain, 'n_zero_share']) if d is not None else 0:>8}"
        )
    means = []
    if extrapolation is not None:
        m = extrapolation.mean
        means.append(
            f"extrapolation ({extrapolation.split}): mean relative error {100 * m['mean_rel_error']:.3f}%, "
            f"max {100 * m['max_rel_error']:.3f}% ({m['worst_domain']})"
        )
    if unseen is not None:
        m = unseen.mean
        means.append(
            f"unseen mixtures ({unseen.split}): mean R² of log loss {m['r2_log']:.4f} "
            f"(worst domain {unseen.per_domain['r2_log'].min():.4f}), "
            f"mean relative error {100 * m['mean_rel_error']:.3f}%"
        )
    return "\n".join(lines + means)


def plot_fit(law: BiMixLaw, runs: pd.DataFrame, path: str | Path, *, title: str = "BiMix fit") -> Path:
    """Observed loss (points) and the law's curve (lines) against tokens, one panel per domain, one
    colour per run; PNG at ``path``. Rows with r = 0 have no curve and are counted in the panel title.
    """
    # Figure + Agg canvas directly: no pyplot, so no global figure registry or GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = validate_runs(runs)
    domains = [d for d in law.domains_ if d in set(table["domain"])]
    if not domains:
        raise ValueError("runs has none of the law's domains")
    ncols = min(len(domains), 5)
    nrows = math.ceil(len(domains) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if law.fixed_step or table.loc[table["step_tokens"] > 0, "step_tokens"].nunique() == 1:
        _plot_shares(fig, law, table, domains, (nrows, ncols))
        fig.suptitle(f"{title}: points observed, lines the law (share → loss, one step)", fontsize=10)
        return _save(fig, path)
    run_ids = sorted(table["run_id"].unique())
    colours = {run: f"C{i % 10}" for i, run in enumerate(run_ids)}
    positive = table["step_tokens"][table["step_tokens"] > 0]
    dense = np.geomspace(positive.min(), positive.max(), 64)
    coef = law.coef_
    for n, domain in enumerate(domains):
        ax = fig.add_subplot(nrows, ncols, n + 1)
        g = table[table["domain"] == domain]
        zero = int((g["r"] == 0).sum())
        c = coef.loc[domain]
        for run, rows in g[g["r"] > 0].groupby("run_id", sort=True):
            r = float(rows["r"].iloc[0])
            curve = c["A"] * r ** -c["alpha"] * (c["B"] * dense ** -c["beta"] + c["C"])
            ax.plot(dense, curve, color=colours[run], linewidth=1)
            ax.scatter(rows["step_tokens"], rows["loss"], color=colours[run], s=8, edgecolors="none")
        ax.set_xscale("log")
        label = f"{domain}  α={c['alpha']:.3f} β={c['beta']:.2f}"
        ax.set_title(label + (f"\n{zero} rows with r = 0 left out" if zero else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}: points observed, lines the law (tokens → loss)", fontsize=10)
    return _save(fig, path)


def _plot_shares(fig, law: BiMixLaw, table: pd.DataFrame, domains: list[str], grid: tuple[int, int]) -> None:
    """One panel per domain: loss against r_i at the fitted step (a curve over tokens would be a point)."""
    step = law.s_ref_ if math.isfinite(law.s_ref_) else float(table["step_tokens"].max())
    for n, domain in enumerate(domains):
        ax = fig.add_subplot(*grid, n + 1)
        g = table[(table["domain"] == domain) & (table["step_tokens"] == step) & (table["r"] > 0)]
        c = law.coef_.loc[domain]
        if len(g):
            dense = np.geomspace(g["r"].min(), g["r"].max(), 64)
            curve = c["A"] * dense ** -c["alpha"] * (c["B"] * step ** -c["beta"] + c["C"])
            ax.plot(dense, curve, "k-", linewidth=1)
            ax.scatter(g["r"], g["loss"], s=8, edgecolors="none")
        ax.set_xscale("log")
        ax.set_title(f"{domain}  A={c['A']:.3f} α={c['alpha']:.3f}", fontsize=8)
        ax.tick_params(labelsize=7)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
