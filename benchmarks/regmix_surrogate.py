"""Benchmark: RegMix mode on RegMix-shaped runs. Goal: r*'s true loss beats the best training run.

What it measures
----------------
17 domains with a skewed natural token distribution (the largest ~30%, the smallest ~0.3%, as in
the Pile), 512 training and 256 test mixtures drawn the way RegMix draws its proxy runs
(:class:`RegMixSampler`: tempered prior, 15 strengths, MAXIMUM_USAGE rejection), rounded to three
decimals as RegMix publishes them. Each run's loss is a known function of its mixture plus noise
(sd 0.005): diminishing returns per useful domain, useless domains, and pairwise interactions
(synergies and conflicts). No proxy is trained.

Printed: held-out Spearman / Pearson / MAE of the LightGBM surrogate on the 256 test mixtures, and
the *true* loss of r* (mean of the top-k of 100,000 candidates) next to the best training run and
the true optimum (SLSQP from 20 starts), for the candidates fit-search draws (around the prior)
and, as a baseline, uniform Dirichlet(1) candidates (what RegMix mode drew before).

How to run
----------
    .venv/bin/python benchmarks/regmix_surrogate.py
    .venv/bin/python benchmarks/regmix_surrogate.py --seed 3 --top-k 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize

from quadmix_spark.pipeline.fit_search import renormalise_mixtures
from quadmix_spark.search.candidates import DirichletSampler, RegMixSampler, search_theta
from quadmix_spark.search.regression import LossRegressor

M = 17


def natural_prior(m: int = M) -> np.ndarray:
    """A Pile-like skew: shares falling geometrically from ~30% to ~0.3%."""
    shares = 0.75 ** np.arange(m)
    return shares / shares.sum()


class TrueLoss:
    """L(r) = 2 + Σ_i a_i / (1 + k_i r_i) + rᵀ C r: a_i = 0 for useless domains, C mixes signs."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.uniform(0.05, 0.6, M) * (rng.random(M) < 0.7)
        self.k = rng.uniform(5, 60, M)
        c = rng.normal(0, 0.4, (M, M))
        self.C = (c + c.T) / 2 + np.diag(rng.uniform(0.2, 1.0, M))

    def __call__(self, r: np.ndarray) -> np.ndarray:
        r = np.atleast_2d(r)
        return 2.0 + (self.a / (1 + self.k * r)).sum(axis=1) + np.einsum("ni,ij,nj->n", r, self.C, r)

    def optimum(self, starts: int = 20) -> tuple[float, np.ndarray]:
        rng = np.random.default_rng(0)
        best = (np.inf, None)
        for _ in range(starts):
            res = minimize(
                lambda x: float(self(x)[0]),
                rng.dirichlet(np.ones(M)),
                method="SLSQP",
                bounds=[(0.0, 1.0)] * M,
                constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
                options={"maxiter": 500, "ftol": 1e-12},
            )
            if res.success and res.fun < best[0]:
                best = (float(res.fun), res.x)
        return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=512)
    ap.add_argument("--test", type=int, default=256)
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    domains = [f"d{i:02d}" for i in range(M)]
    prior = natural_prior()
    truth = TrueLoss(args.seed)
    runs = RegMixSampler(domains, prior).sample(args.train + args.test, args.seed).round(3)
    ids = [f"run{i}" for i in range(len(runs))]
    X, renormalised = renormalise_mixtures(ids, runs)
    y = truth(X) + np.random.default_rng(args.seed + 1).normal(0, 0.005, len(X))
    train, test = slice(0, args.train), slice(args.train, None)

    started = time.perf_counter()
    model = LossRegressor("regmix", domains, seed=args.seed, min_child_samples=10).fit(X[train], y[train])
    fit_s = time.perf_counter() - started
    m = model.evaluate(X[test], y[test])
    print(f"{args.train} training / {args.test} test mixtures over {M} domains; {renormalised} renormalised")
    print(f"surrogate (fit {fit_s:.1f}s): held-out Spearman {m['spearman']:.3f}, Pearson {m['pearson']:.3f}, "
          f"MAE {m['mae']:.4f}")  # fmt: skip

    best_run = float(truth(X[train]).min())
    optimum, _ = truth.optimum()
    print(f"true loss: best training run {best_run:.4f}, true optimum {optimum:.4f}")
    samplers = {
        "around the prior (fit-search)": RegMixSampler(domains, prior),
        "uniform Dirichlet(1)": DirichletSampler(domains),
    }
    for name, sampler in samplers.items():
        started = time.perf_counter()
        result = search_theta(model, sampler, args.candidates, args.top_k, args.seed)
        true_star = float(truth(result.theta_star)[0])
        verdict = "meets" if true_star < best_run else "misses"
        print(
            f"  r* from {name:<30} true {true_star:.4f} (predicted {result.predicted_loss_of_mean:.4f}, "
            f"{time.perf_counter() - started:.1f}s): {true_star - best_run:+.4f} vs the best run, "
            f"{true_star - optimum:+.4f} vs the optimum — goal r* < best run: {verdict}"
        )


if __name__ == "__main__":
    main()
