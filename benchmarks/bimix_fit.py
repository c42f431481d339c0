"""Benchmark: the BiMix fit on Pile-shaped runs from a known law. Goal: a 22-domain fit in ≤ 5 s on 2 cores.

What it measures
----------------
22 domains (the Pile's count) with a skewed natural distribution (shares falling geometrically from
~20% to ~0.2%), 6 mixtures (the paper's count: the natural one and five perturbations of it,
every share ×/÷ up to ~2), 20 checkpoints per run (the paper evaluates every 5B of 100B tokens).
Each domain's loss follows a known BiMix law, coefficients drawn in the ranges of the paper's fits
(α 0.02–0.15, β 0.2–0.6, a floor of 50–90% of the final loss), times lognormal noise (sd 0.2%
by default). No proxy is trained.

Printed:
- the fit's wall time against the 5 s goal, in-sample R² of log loss and the relative error of
  the recovered coefficients (in the fit's gauge B s_ref^-β + C = 1);
- extrapolation error (fit without the last checkpoint, predict it; the paper: 0.16–0.19% mean,
  worst domain 0.95%) next to the noise floor (the true law's own error on the same points);
- unseen-mixture error (leave-1- and leave-2-mixtures-out: R² of log loss, relative error; the
  paper: mean R² 0.975 on the Pile);
- r*, the fitted law's optimal mixture at the full run's tokens with caps ``max_repeats ×
  available / budget``: its *true* loss against the true optimum (the true law's own optimum,
  checked by SLSQP) and against the natural mixture and the best training mixture.

How to run
----------
    .venv/bin/python benchmarks/bimix_fit.py
    .venv/bin/python benchmarks/bimix_fit.py --mixtures 4 --noise 0.005 --seed 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize

from quadmix_spark.mixing.bimix import BiMixLaw, normalise_gauge, random_law, synthetic_runs
from quadmix_spark.mixing.bimix_diagnostics import extrapolation_error, unseen_mixture_error
from quadmix_spark.mixing.bimix_optimum import optimal_mixture, share_caps

M = 22


def natural_prior(m: int = M) -> np.ndarray:
    """A Pile-like skew: shares falling geometrically from ~20% to ~0.2%."""
    shares = 0.8 ** np.arange(m)
    return shares / shares.sum()


def true_law(seed: int, s_end: float) -> BiMixLaw:
    domains = [f"d{i:02d}" for i in range(M)]
    ranges = {"alpha": (0.02, 0.15), "beta": (0.2, 0.6), "floor": (0.5, 0.9)}
    return random_law(domains, s_end, seed=seed, **ranges)


def mixtures(prior: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The natural mixture and n − 1 lognormal perturbations of it (sd 0.7 in log share)."""
    rng = np.random.default_rng(seed + 1)
    mix = prior * np.exp(rng.normal(0.0, 0.7, (n, len(prior))))
    mix[0] = prior
    return mix / mix.sum(axis=1, keepdims=True)


def slsqp(law: BiMixLaw, s: float, hi: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, float]:
    res = minimize(
        lambda r: float(law.predict(r, s).sum()),
        start,
        method="SLSQP",
        bounds=[(1e-9, h) for h in hi],
        constraints=[{"type": "eq", "fun": lambda r: r.sum() - 1.0}],
        options={"maxiter": 2000, "ftol": 1e-15},
    )
    return res.x, float(res.fun)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mixtures", type=int, default=6, help="training runs (one mixture each)")
    ap.add_argument("--checkpoints", type=int, default=20, help="evaluations per run, evenly spaced")
    ap.add_argument("--tokens", type=float, default=100e9, help="tokens of each run (the last checkpoint)")
    ap.add_argument("--noise", type=float, default=0.002, help="sd of the lognormal noise on every loss")
    ap.add_argument("--max-repeats", type=float, default=4.0, help="epochs a domain may be repeated")
    ap.add_argument("--pool-ratio", type=float, default=1.0, help="pool tokens / training budget")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    s_end = args.tokens
    truth = true_law(args.seed, s_end)
    prior = natural_prior()
    mix = mixtures(prior, args.mixtures, args.seed)
    steps = np.arange(1, args.checkpoints + 1) / args.checkpoints * s_end
    runs = synthetic_runs(truth, mix, steps, noise=args.noise, seed=args.seed)
    print(
        f"{M} domains × {args.mixtures} mixtures × {args.checkpoints} checkpoints = {len(runs)} losses, "
        f"noise sd {100 * args.noise:.2f}%, runs of {s_end:.3g} tokens"
    )

    started = time.perf_counter()
    law = BiMixLaw().fit(runs)
    fit_s = time.perf_counter() - started
    verdict = "meets" if fit_s <= 5.0 else "misses"
    print(f"fit: {fit_s:.2f} s for {M} domains ({1000 * fit_s / M:.0f} ms each) — goal ≤ 5 s: {verdict}")
    print(f"  in-sample R² of log loss: mean {law.diagnostics_['r2_log'].mean():.5f}")
    expected = normalise_gauge(truth.coef_, law.s_ref_)  # the fit's gauge: B s_ref^-β + C = 1
    err = (law.coef_ - expected).abs() / expected
    parts = [
        f"{c} {100 * err[c].mean():.2f}% / {100 * err[c].max():.2f}%" for c in ("A", "alpha", "beta", "C")
    ]
    print("  coefficient relative error, mean / max: " + ", ".join(parts))

    last = runs["step_tokens"] == steps[-1]
    held = runs[last]
    floor = float((np.abs(truth.predict_runs(held) - held["loss"]) / held["loss"]).mean())
    started = time.perf_counter()
    ex = extrapolation_error(runs).mean
    print(
        f"extrapolation to the last checkpoint ({time.perf_counter() - started:.1f} s): mean relative error "
        f"{100 * ex['mean_rel_error']:.3f}%, worst domain {100 * ex['worst_domain_mean_rel_error']:.3f}%, "
        f"max {100 * ex['max_rel_error']:.3f}% (paper: 0.16–0.19% mean, 0.95% worst)"
    )
    print(
        f"  noise floor (the true law on the same points) {100 * floor:.3f}%: "
        f"ratio fitted / true law {ex['mean_rel_error'] / floor:.2f}"
    )
    for k in (1, 2):
        if args.mixtures - k < 2:
            continue
        started = time.perf_counter()
        un = unseen_mixture_error(runs, k=k)
        worst = un.per_domain["r2_log"].min()
        print(
            f"unseen mixtures, leave-{k}-out ({un.n_fits} fits, {time.perf_counter() - started:.1f} s): "
            f"R² of log loss mean {un.mean['r2_log']:.4f} (worst domain {worst:.4f}), mean relative "
            f"error {100 * un.mean['mean_rel_error']:.3f}% (paper, Pile: R² 0.975 mean)"
        )

    hi = share_caps(prior * args.pool_ratio * s_end, budget=s_end, max_repeats=args.max_repeats)
    started = time.perf_counter()
    star = optimal_mixture(law, s_end, upper=hi)
    solve_ms = 1000 * (time.perf_counter() - started)
    best = optimal_mixture(truth, s_end, upper=hi)
    start = np.minimum(prior, hi) / np.minimum(prior, hi).sum()  # the natural mixture, capped
    r_ref, f_ref = slsqp(truth, s_end, hi, start)

    def true_loss(r: np.ndarray) -> float:
        return float(truth.predict(r, s_end).sum())

    natural, best_run = true_loss(prior), min(true_loss(r) for r in mix)
    got = true_loss(star.r)
    print(
        f"r* at {s_end:.3g} tokens (root search {solve_ms:.1f} ms, {star.iterations} iterations; "
        f"{len(star.at_upper)} domains at their cap of {args.max_repeats:g} × available / budget)"
    )
    dr_ref = np.abs(best.r - r_ref).max()
    print(
        f"  true Σ loss: r* {got:.5f}, true optimum {best.objective:.5f} (SLSQP from the natural mixture "
        f"{f_ref:.5f}, |Δr| {dr_ref:.1e}), natural {natural:.5f}, best training mixture {best_run:.5f}"
    )
    gap, gain = got - best.objective, natural - best.objective
    dr_star = np.abs(star.r - best.r).max()
    print(
        f"  r* − optimum {gap:+.2e} ({100 * gap / best.objective:.4f}%); "
        f"r* gets {100 * (natural - got) / gain:.2f}% of the natural → optimum improvement; "
        f"r* vs best training mixture {got - best_run:+.5f}; max |r* − r_opt| {dr_star:.2e}"
    )


if __name__ == "__main__":
    main()
