"""BiMix: the bivariate data-mixing law, fitted per domain on proxy runs (Ge et al., arXiv 2405.14908).

Each domain i has a law of its own share r_i and the training step s (tokens seen)::

    L_i(r_i, s) = A_i / r_i^α_i · (B_i / s^β_i + C_i)

fitted on the tuples (r_i, s, L_i) of every checkpoint of every run (mixing_laws.md §1).

Gauge: A_i multiplies both B_i and C_i, so only A_i·B_i and A_i·C_i are determined by data; any
(k·A, B/k, C/k) predicts the same losses. The fit fixes the scale by ``B_i s_ref^-β_i + C_i = 1``
with ``s_ref`` the largest step fitted on (:func:`normalise_gauge`): A_i is then the loss of domain
i at r_i = 1 and s = s_ref, and C_i ∈ [0, 1] the share of that loss the law keeps as s → ∞.

Fit: trust-region-reflective least squares (``scipy.optimize.least_squares(method="trf")``) of
``log L_obs − log L_pred`` over (log A, α, β, C) with α, β ∈ [0, max] and C ∈ [0, 1]. For fixed
(β, C) the log-space model is linear in (log A, α), so a grid over (β, C) solved in closed form
picks the starting points (the ``n_starts`` best, distinct); TRF refines each and the lowest cost
wins. Everything is deterministic: no random starts.

Fixed step (``fixed_step=True``): runs that log only their final loss determine neither β nor C.
At one step s the law is ``L_i = A_i K_i(s) / r_i^α_i`` with K_i(s) a constant, so in the gauge
above (s_ref = that step, K_i = 1) it is ``L_i = A_i / r_i^α_i``: stored as B = 0, β = 0, C = 1,
and ``predict`` / the optimum need nothing else. Its log is linear in (log A, α), so the fit is
ordinary least squares of log L on log r: the exact minimiser of the same log-space objective the
full fit minimises (α bounded: the profile of that objective in α is a parabola, so clipping the
free α to [0, alpha_max] and refitting log A is exact), with no starts and no iterations. Only the
rows at the largest usable step are fitted on; rows at other steps are counted (``n_other_step``).

Shares of 0: the law diverges at r_i = 0 (and at s = 0), so such rows say nothing about the
coefficients. They are excluded from the fit and counted per domain (``diagnostics_``), never
clamped to a small share; :meth:`BiMixLaw.predict` returns ``inf`` there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeResult, least_squares

__all__ = [
    "COEFFICIENTS",
    "RUN_COLUMNS",
    "BiMixLaw",
    "law_errors",
    "normalise_gauge",
    "single_step",
    "synthetic_runs",
]

#: the long table :meth:`BiMixLaw.fit` reads: one row per (run, domain, checkpoint)
RUN_COLUMNS = ("run_id", "domain", "r", "step_tokens", "loss")
#: columns of ``coef_``: L = A / r^alpha · (B / s^beta + C)
COEFFICIENTS = ("A", "alpha", "B", "beta", "C")
#: fewest usable rows at its step a domain needs for the fixed-step law: 2 coefficients + 1 residual
FIXED_STEP_MIN_POINTS = 3


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def validate_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Check the long table (columns :data:`RUN_COLUMNS`) and return it typed, in a stable order.

    Rejected with a message naming the problem: a missing column, non-finite values, a share
    outside [0, 1], a negative step, a loss ≤ 0, a (run, domain, step) given twice, or a run
    whose share of a domain changes between checkpoints (a run has one mixture).
    """
    if not isinstance(runs, pd.DataFrame):
        raise TypeError(f"runs must be a pandas DataFrame, got {type(runs).__name__}")
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lacks columns {missing} (needs {list(RUN_COLUMNS)})")
    table = runs.loc[:, list(RUN_COLUMNS)].copy()
    table["run_id"] = table["run_id"].astype(str)
    table["domain"] = table["domain"].astype(str)
    for col in ("r", "step_tokens", "loss"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(np.float64)
        if not np.all(np.isfinite(table[col].to_numpy())):
            raise ValueError(f"runs.{col} has missing, non-numeric or infinite values")
    if ((table["r"] < 0) | (table["r"] > 1)).any():
        raise ValueError("runs.r must be shares in [0, 1]")
    if (table["step_tokens"] < 0).any():
        raise ValueError("runs.step_tokens must be >= 0")
    if (table["loss"] <= 0).any():
        raise ValueError("runs.loss must be > 0 (the law is fitted in log space)")
    keys = ["run_id", "domain", "step_tokens"]
    dup = table.duplicated(keys)
    if dup.any():
        first = table.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(
            f"runs has {int(dup.sum())} repeated (run_id, domain, step_tokens) rows, e.g. {first}"
        )
    by_run = table.groupby(["run_id", "domain"])["r"]
    spread = by_run.max() - by_run.min()
    if (spread > 1e-12).any():
        run, domain = spread[spread > 1e-12].index[0]
        raise ValueError(f"run {run!r} gives domain {domain!r} different shares at different steps")
    return table.sort_values(keys, kind="stable").reset_index(drop=True)


def single_step(runs: pd.DataFrame) -> float | None:
    """The step every usable row (r > 0, step > 0) of a validated long table is at, or None when
    there are several (or no usable row): runs that logged only their final loss have one."""
    usable = runs.loc[(runs["r"] > 0) & (runs["step_tokens"] > 0), "step_tokens"]
    steps = usable.unique()
    return float(steps[0]) if len(steps) == 1 else None


def normalise_gauge(coef: pd.DataFrame, s_ref: float) -> pd.DataFrame:
    """The same laws with A, B, C rescaled so that ``B s_ref^-β + C = 1`` (see the module docstring).

    ``coef``: one row per domain, columns :data:`COEFFICIENTS`; predictions are unchanged.
    """
    k = coef["B"] * float(s_ref) ** (-coef["beta"]) + coef["C"]
    out = coef.loc[:, list(COEFFICIENTS)].astype(np.float64).copy()
    out["A"] = coef["A"] * k
    out["B"] = coef["B"] / k
    out["C"] = coef["C"] / k
    return out


def law_errors(observed: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """R² of log loss, mean and max relative error |pred − obs| / obs, and the count, of one domain.

    R² is NaN when the observed log losses do not vary (one point, or all equal).
    """
    obs = np.asarray(observed, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    if obs.shape != pred.shape or obs.ndim != 1:
        raise ValueError(f"observed {obs.shape} and predicted {pred.shape} must be equal 1-D shapes")
    if obs.size == 0:
        return {"r2_log": math.nan, "mean_rel_error": math.nan, "max_rel_error": math.nan, "n": 0}
    rel = np.abs(pred - obs) / obs
    lo, lp = np.log(obs), np.log(pred)
    ss_tot = float(np.sum((lo - lo.mean()) ** 2))
    r2 = 1.0 - float(np.sum((lo - lp) ** 2)) / ss_tot if ss_tot > 0 else math.nan
    return {
        "r2_log": r2,
        "mean_rel_error": float(rel.mean()),
        "max_rel_error": float(rel.max()),
        "n": int(obs.size),
    }


class BiMixLaw:
    """The BiMix law per domain, fitted in log space by trust-region-reflective least squares.

    Parameters
    ----------
    n_starts : int
        Starting points refined by TRF per domain (the best distinct points of the (β, C) grid).
    grid_size : int
        Points per axis of the (β, C) grid that chooses the starts (β log-spaced, C linear).
    alpha_max, beta_max : float
        Upper bounds of α and β (lower bounds 0); a fit that ends on one is flagged in
        ``diagnostics_["at_bound"]``.
    min_points : int
        Fewest usable rows (r > 0, s > 0) a domain needs; it also needs 2 distinct shares and 3
        distinct steps, or α and (β, C) are not determined.
    fixed_step : bool
        Fit ``L_i = A_i / r_i^α_i`` at the largest usable step only (module docstring): a domain
        then needs :data:`FIXED_STEP_MIN_POINTS` usable rows at that step and 2 distinct shares.

    Attributes (after :meth:`fit`)
    ------------------------------
    domains_ : list of str, in sorted order: the order of ``predict``'s columns
    coef_ : DataFrame (domains × :data:`COEFFICIENTS`), in the gauge ``B s_ref^-β + C = 1``
    s_ref_ : float, the largest step fitted on (tokens)
    diagnostics_ : DataFrame per domain: n_points, n_zero_share and n_zero_step (rows excluded
        because the law diverges there), n_other_step (usable rows off the fixed step), rmse_log,
        r2_log, mean_rel_error, cost, nfev, at_bound
    """

    def __init__(
        self,
        *,
        n_starts: int = 3,
        grid_size: int = 24,
        alpha_max: float = 5.0,
        beta_max: float = 5.0,
        min_points: int = 6,
        fixed_step: bool = False,
    ) -> None:
        self.n_starts = _check_int("n_starts", n_starts, 1)
        self.grid_size = _check_int("grid_size", grid_size, 2)
        self.alpha_max = _check_positive("alpha_max", alpha_max)
        self.beta_max = _check_positive("beta_max", beta_max)
        self.min_points = _check_int("min_points", min_points, 4)
        if not isinstance(fixed_step, bool):
            raise ValueError(f"fixed_step must be true or false, got {fixed_step!r}")
        self.fixed_step = fixed_step

    def get_params(self) -> dict[str, float | int]:
        """The constructor's settings (``BiMixLaw(**law.get_params())`` is an unfitted copy)."""
        return {
            "n_starts": self.n_starts,
            "grid_size": self.grid_size,
            "alpha_max": self.alpha_max,
            "beta_max": self.beta_max,
            "min_points": self.min_points,
            "fixed_step": self.fixed_step,
        }

    # -- construction from known coefficients ---------------------------------------------------
    @classmethod
    def from_coefficients(cls, coef: pd.DataFrame | Mapping[str, Sequence[float]]) -> BiMixLaw:
        """A law with given coefficients (domain → (A, alpha, B, beta, C)), ready to ``predict``."""
        table = pd.DataFrame.from_dict(coef, orient="index") if isinstance(coef, Mapping) else coef.copy()
        if list(table.columns) != list(COEFFICIENTS):
            if table.shape[1] != len(COEFFICIENTS):
                raise ValueError(f"coefficients need the columns {list(COEFFICIENTS)}")
            table.columns = list(COEFFICIENTS)
        table.index = table.index.astype(str)
        table = table.astype(np.float64).sort_index()
        if not np.all(np.isfinite(table.to_numpy())) or (table.to_numpy() < 0).any():
            raise ValueError("coefficients must be finite and >= 0")
        if (table["A"] <= 0).any():
            raise ValueError("A must be > 0")
        law = cls()
        law.domains_ = list(table.index)
        law.coef_ = table
        law.s_ref_ = math.nan
        law.diagnostics_ = None
        return law

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "coef_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("BiMixLaw is not fitted; call fit() first")

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, runs: pd.DataFrame) -> BiMixLaw:
        """Fit one law per domain on the long table ``runs`` (columns :data:`RUN_COLUMNS`).

        ``r``: the domain's share of the run's mixture; ``step_tokens``: tokens trained on at the
        checkpoint (s); ``loss``: the domain's validation loss there (nats per token). Returns
        ``self``; raises ValueError naming a domain with too few usable rows.
        """
        table = self.check(runs)
        usable = (table["r"] > 0) & (table["step_tokens"] > 0)
        s_ref = float(table.loc[usable, "step_tokens"].max())
        rows, diag = {}, {}
        for domain, group in table.groupby("domain", sort=True):
            good, excluded = self._usable(group, s_ref)
            r, s, loss = (good[c].to_numpy() for c in ("r", "step_tokens", "loss"))
            if self.fixed_step:
                log_a, alpha = self._fit_power(np.log(r), np.log(loss))
                rows[domain] = (math.exp(log_a), alpha, 0.0, 0.0, 1.0)
                pred = math.exp(log_a) * r**-alpha
                residual = np.log(loss) - np.log(pred)
                cost, nfev, beta = 0.5 * float(residual @ residual), 0, None
            else:
                (log_a, alpha, beta, c), result = self._fit_domain(np.log(r), s / s_ref, np.log(loss))
                rows[domain] = (math.exp(log_a), alpha, (1.0 - c) * s_ref**beta, beta, c)
                pred = math.exp(log_a) * r**-alpha * ((1.0 - c) * (s / s_ref) ** -beta + c)
                residual, cost, nfev = result.fun, float(result.cost), int(result.nfev)
            err = law_errors(loss, pred)
            bounds = (("alpha", alpha, self.alpha_max), ("beta", beta, self.beta_max))
            at_bound = [n for n, v, hi in bounds if v is not None and (v <= 1e-9 or v >= hi - 1e-9)]
            diag[domain] = {
                "n_points": len(good),
                **excluded,
                "rmse_log": float(np.sqrt(np.mean(residual**2))),
                "r2_log": err["r2_log"],
                "mean_rel_error": err["mean_rel_error"],
                "cost": cost,
                "nfev": nfev,
                "at_bound": ",".join(at_bound),
            }
        self.domains_ = list(rows)
        self.coef_ = pd.DataFrame.from_dict(rows, orient="index", columns=list(COEFFICIENTS))
        self.s_ref_ = s_ref
        self.diagnostics_ = pd.DataFrame.from_dict(diag, orient="index")
        return self

    def _usable(self, group: pd.DataFrame, s_ref: float) -> tuple[pd.DataFrame, dict[str, int]]:
        """A domain's rows the law is fitted on, and the counts of those left out and why."""
        positive = group["r"] > 0
        good = positive & (group["step_tokens"] > 0)
        off_step = (group["step_tokens"] != s_ref) if self.fixed_step else pd.Series(False, group.index)
        off_step &= good
        excluded = {
            "n_zero_share": int((~positive).sum()),
            "n_zero_step": int(((group["step_tokens"] == 0) & positive).sum()),
            "n_other_step": int(off_step.sum()),
        }
        return group[good & ~off_step], excluded

    def _fit_power(self, x: NDArray, y: NDArray) -> tuple[float, float]:
        """x = log r, y = log L at one step; (log A, α) of least squares with α in [0, alpha_max]."""
        xc = x - x.mean()
        alpha = float(np.clip(-(xc @ (y - y.mean())) / (xc @ xc), 0.0, self.alpha_max))
        return float(np.mean(y + alpha * x)), alpha

    def check(self, runs: pd.DataFrame) -> pd.DataFrame:
        """:func:`validate_runs` of ``runs``, refused as :meth:`fit` would refuse it, without fitting.

        A caller checks its input with this before it starts anything costly (a SparkSession), so
        too few rows, shares or steps for a domain fail first.
        """
        table = validate_runs(runs)
        usable = (table["r"] > 0) & (table["step_tokens"] > 0)
        if not usable.any():
            raise ValueError("runs has no row with r > 0 and step_tokens > 0")
        s_ref = float(table.loc[usable, "step_tokens"].max())
        for domain, group in table.groupby("domain", sort=True):
            good, excluded = self._usable(group, s_ref)
            self._check_domain(str(domain), good, excluded, s_ref)
        return table

    def _check_domain(self, domain: str, good: pd.DataFrame, excluded: dict[str, int], s_ref: float) -> None:
        why = []
        if self.fixed_step and len(good) < FIXED_STEP_MIN_POINTS:
            why.append(f"{len(good)} usable rows at the step {s_ref:,.0f} (< {FIXED_STEP_MIN_POINTS})")
        elif not self.fixed_step and len(good) < self.min_points:
            why.append(f"{len(good)} usable rows (< min_points={self.min_points})")
        if good["r"].nunique() < 2:
            why.append("fewer than 2 distinct shares (α is not determined)")
        if not self.fixed_step and good["step_tokens"].nunique() < 3:
            why.append("fewer than 3 distinct steps (β and C are not determined)")
        if why:
            other = f" and {excluded['n_other_step']} at other steps" if self.fixed_step else ""
            raise ValueError(
                f"domain {domain!r} cannot be fitted: {'; '.join(why)} "
                f"({excluded['n_zero_share']} rows with r = 0, {excluded['n_zero_step']} with step 0"
                f"{other} excluded)"
            )

    def _grid_starts(self, x: NDArray, t: NDArray, y: NDArray) -> list[NDArray]:
        """The ``n_starts`` best (log A, α, β, C) of the (β, C) grid, (log A, α) in closed form."""
        betas = np.geomspace(0.01, min(self.beta_max, 3.0), self.grid_size)
        cs = np.linspace(0.0, 1.0, self.grid_size + 2)[1:-1]
        bb, cc = (g.ravel() for g in np.meshgrid(betas, cs, indexing="ij"))
        log_k = np.log((1.0 - cc)[None, :] * t[:, None] ** -bb[None, :] + cc[None, :])  # (n, G)
        z = y[:, None] - log_k
        design = np.column_stack([np.ones_like(x), -x])
        sol, *_ = np.linalg.lstsq(design, z, rcond=None)  # (2, G): log A, α
        log_a, alpha = sol
        # α is bounded: where the free solution leaves [0, alpha_max], refit log A at the bound
        alpha = np.clip(alpha, 0.0, self.alpha_max)
        log_a = np.mean(z + alpha[None, :] * x[:, None], axis=0)
        sse = np.sum((z - log_a[None, :] + alpha[None, :] * x[:, None]) ** 2, axis=0)
        starts: list[NDArray] = []
        for g in np.argsort(sse, kind="stable"):
            p = np.array([log_a[g], alpha[g], bb[g], cc[g]])
            # distinct: skip grid neighbours of a start already taken (same basin)
            if all(np.max(np.abs(p[1:] - q[1:])) > 0.05 for q in starts):
                starts.append(p)
            if len(starts) == self.n_starts:
                break
        return starts

    def _fit_domain(self, x: NDArray, t: NDArray, y: NDArray) -> tuple[tuple[float, ...], OptimizeResult]:
        """x = log r, t = s / s_ref, y = log L; returns ((log A, α, β, C), best least_squares result)."""

        def parts(p):
            _, alpha, beta, c = p
            power = t**-beta
            k = (1.0 - c) * power + c
            return alpha, beta, c, power, k

        def residuals(p):
            alpha, _, _, _, k = parts(p)
            return y - (p[0] - alpha * x + np.log(k))

        def jacobian(p):
            _, _, c, power, k = parts(p)
            return np.column_stack(
                [-np.ones_like(x), x, (1.0 - c) * power * np.log(t) / k, -(1.0 - power) / k]
            )

        # a start on a bound is moved inside by TRF; keep it strictly inside to start with
        lower = np.array([-np.inf, 0.0, 0.0, 0.0])
        upper = np.array([np.inf, self.alpha_max, self.beta_max, 1.0])
        best = None
        for p0 in self._grid_starts(x, t, y):
            p0 = np.clip(p0, lower + 1e-6, upper - 1e-6)
            result = least_squares(
                residuals,
                p0,
                jac=jacobian,
                bounds=(lower, upper),
                method="trf",
                x_scale="jac",
                ftol=1e-12,
                xtol=1e-12,
                gtol=1e-12,
                max_nfev=500,
            )
            if best is None or result.cost < best.cost:
                best = result
        return tuple(float(v) for v in best.x), best

    # -- predict / score -------------------------------------------------------------------------
    def predict(self, r: ArrayLike, s: ArrayLike) -> NDArray[np.float64]:
        """Loss of every domain for shares ``r`` (n, M) or (M,), in ``domains_`` order, at steps ``s``.

        ``s``: tokens, a scalar or shape (n,). Returns (n, M) (or (M,) for 1-D ``r``), nats per
        token; ``inf`` where a share (or the step) is 0 and the exponent positive.
        """
        self._check_fitted()
        shares = np.asarray(r, dtype=np.float64)
        one = shares.ndim == 1
        shares = np.atleast_2d(shares)
        m = len(self.domains_)
        if shares.ndim != 2 or shares.shape[1] != m:
            raise ValueError(f"r must have {m} columns (one per domain of domains_), got {shares.shape}")
        steps = np.asarray(s, dtype=np.float64)
        if steps.ndim > 1 or (steps.ndim == 1 and steps.shape[0] != shares.shape[0]):
            raise ValueError(f"s must be a scalar or have {shares.shape[0]} values, got shape {steps.shape}")
        if (shares < 0).any() or (steps < 0).any():
            raise ValueError("r and s must be >= 0")
        steps = steps.reshape(-1, 1) if steps.ndim == 1 else steps
        A, alpha, B, beta, C = (self.coef_[c].to_numpy()[None, :] for c in COEFFICIENTS)
        with np.errstate(divide="ignore"):  # r = 0 or s = 0: the law diverges, inf is the answer
            out = A * shares**-alpha * (B * steps**-beta + C)
        return out[0] if one else out

    def predict_runs(self, runs: pd.DataFrame) -> NDArray[np.float64]:
        """The law's loss for every row of a long table (columns :data:`RUN_COLUMNS`, ``loss`` unused)."""
        self._check_fitted()
        table = runs.loc[:, ["domain", "r", "step_tokens"]]
        unknown = sorted(set(table["domain"].astype(str)) - set(self.domains_))
        if unknown:
            raise ValueError(f"runs names domains the law was not fitted on: {unknown}")
        coef = self.coef_.loc[table["domain"].astype(str)]
        r = table["r"].to_numpy(dtype=np.float64)
        s = table["step_tokens"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore"):
            return (
                coef["A"].to_numpy()
                * r ** -coef["alpha"].to_numpy()
                * (coef["B"].to_numpy() * s ** -coef["beta"].to_numpy() + coef["C"].to_numpy())
            )

    def evaluate(self, runs: pd.DataFrame) -> pd.DataFrame:
        """Per domain: r2_log, mean_rel_error, max_rel_error and n on ``runs``, plus n_zero_share.

        Rows with r = 0 or s = 0 (where the law diverges) are left out and counted in
        ``n_zero_share`` / ``n_zero_step``.
        """
        table = validate_runs(runs)
        pred = self.predict_runs(table)
        out = {}
        for domain, idx in table.groupby("domain", sort=True).groups.items():
            group = table.loc[idx]
            ok = ((group["r"] > 0) & (group["step_tokens"] > 0)).to_numpy()
            out[domain] = {
                **law_errors(group["loss"].to_numpy()[ok], pred[idx][ok]),
                "n_zero_share": int((group["r"] == 0).sum()),
                "n_zero_step": int(((group["step_tokens"] == 0) & (group["r"] > 0)).sum()),
            }
        return pd.DataFrame.from_dict(out, orient="index")

    def score(self, runs: pd.DataFrame) -> float:
        """Mean over domains of the R² of log loss on ``runs`` (1 is perfect)."""
        return float(self.evaluate(runs)["r2_log"].mean())


def synthetic_runs(
    law: BiMixLaw,
    mixtures: ArrayLike,
    steps: ArrayLike,
    *,
    noise: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """The long table of runs whose losses follow ``law``, times lognormal noise of sd ``noise``.

    ``mixtures``: (n_runs, M) shares in ``law.domains_`` order; ``steps``: checkpoints in tokens.
    Shares and steps must be > 0. One row per (run, domain, step); run ids ``run000``…; seeded.
    """
    mix = np.atleast_2d(np.asarray(mixtures, dtype=np.float64))
    grid = np.asarray(steps, dtype=np.float64)
    if (mix <= 0).any() or (grid <= 0).any():
        raise ValueError("synthetic runs need shares and steps > 0 (the law diverges at 0)")
    rng = np.random.default_rng(seed)
    frames = []
    for k, r in enumerate(mix):
        loss = law.predict(np.repeat(r[None, :], len(grid), axis=0), grid)  # (n_steps, M)
        if noise > 0:
            loss = loss * np.exp(rng.normal(0.0, noise, loss.shape))
        frames.append(
            pd.DataFrame(
                {
                    "run_id": f"run{k:03d}",
                    "domain": np.tile(law.domains_, len(grid)),
                    "r": np.tile(r, len(grid)),
                    "step_tokens": np.repeat(grid, len(r)),
                    "loss": loss.ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def random_law(
    domains: Sequence[str],
    s_end: float,
    *,
    seed: int = 0,
    A: tuple[float, float] = (1.5, 3.5),
    alpha: tuple[float, float] = (0.03, 0.15),
    beta: tuple[float, float] = (0.25, 0.6),
    floor: tuple[float, float] = (0.5, 0.85),
) -> BiMixLaw:
    """A law with coefficients drawn uniformly from ranges like the paper's fits (seeded).

    ``A``: loss at r = 1 at the end of the run (nats/token); ``floor``: the share C of that loss
    left at ``s_end``, so ``B = (1 − C) · s_end^β`` and ``B s_end^-β + C = 1``. For tests and
    benchmarks that need a known truth to recover.
    """
    rng = np.random.default_rng(seed)
    m = len(domains)
    c = rng.uniform(*floor, m)
    b = rng.uniform(*beta, m)
    a, exponent = rng.uniform(*A, m), rng.uniform(*alpha, m)
    coef = pd.DataFrame(
        {"A": a, "alpha": exponent, "B": (1 - c) * s_end**b, "beta": b, "C": c}, index=list(domains)
    )
    return BiMixLaw.from_coefficients(coef)
