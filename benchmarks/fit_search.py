"""Benchmark (a): LightGBM fit + θ search at the paper's scale, goal ≤ 60 s on 2 cores.

What it measures
----------------
* ``fit``: :class:`LossRegressor` (default hyper-parameters: ≤1000 trees, early stopping on a 10%
  internal split) on ``--runs`` θ vectors of (N + 4)·M = 7 × 26 = 182 parameters drawn with
  Algorithm 1 (:class:`ParamSampler`, paper ranges), i.e. the paper's 2,800 training runs + 200
  held out when ``--runs 3000``.
* ``search``: :func:`search_theta` over ``--candidates`` fresh Algorithm-1 draws (sampling,
  batched prediction, top-10 mean, prediction of θ*).

No proxy is trained: the target is a known smooth function of θ plus Gaussian noise (sd 0.01),
depending on 2 α entries, 2 ω, one α·η product and one λ (6 of the 182 features; the rest are
distractors). Held-out Spearman/MAE are on the last 200 runs; the true loss of θ* is compared with
the best of the candidates (exact function, no noise).

How to run
----------
    .venv/bin/python benchmarks/fit_search.py                 # 3000 runs, 100k candidates
    .venv/bin/python benchmarks/fit_search.py --plot /tmp/pred_vs_actual.png

Times are wall clock on a shared machine: the 1-minute load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from quadmix_spark.core import ParamSampler
from quadmix_spark.search.candidates import search_theta
from quadmix_spark.search.regression import LossRegressor, plot_predicted_vs_actual

GOAL_SECONDS = 60.0
N_HELD_OUT = 200


def true_loss(theta: np.ndarray, n_scorers: int) -> np.ndarray:
    """Smooth synthetic loss of rows of θ (n, (N+4)·M), in 'nats'; minimum ≈ 3.0 inside the box."""
    block = theta.reshape(len(theta), -1, n_scorers + 4)  # (n, M, N + 4): α then λ, ω, η, ε
    alpha = block[:, :, :n_scorers]
    lam, omega, eta = (block[:, :, n_scorers + i] for i in range(3))
    return (
        3.0
        + 0.5 * (alpha[:, 0, 2] - 0.7) ** 2
        + 0.3 * (alpha[:, 5, 0] - 0.2) ** 2
        + 0.4 * (omega[:, 0] / 0.1 - 0.6) ** 2
        + 0.3 * (omega[:, 1] / 0.1 - 0.3) ** 2
        + 0.2 * alpha[:, 2, 1] * eta[:, 2]
        + 0.1 * np.sin(3.0 * lam[:, 3] / 1000.0)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--domains", type=int, default=26)
    ap.add_argument("--scorers", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help="write the held-out predicted-vs-actual PNG here")
    args = ap.parse_args()

    domains = [f"d{i:02d}" for i in range(args.domains)]
    scorers = [f"s{j}" for j in range(args.scorers)]
    sampler = ParamSampler(domains, scorers)
    theta = sampler.sample(args.runs, seed=args.seed)
    noise = np.random.default_rng(args.seed + 1).normal(0.0, 0.01, args.runs)
    y = true_loss(theta, args.scorers) + noise
    x_fit, y_fit = theta[:-N_HELD_OUT], y[:-N_HELD_OUT]
    x_test, y_test = theta[-N_HELD_OUT:], y[-N_HELD_OUT:]
    print(
        f"runs {args.runs} ({len(y_fit)} fit / {N_HELD_OUT} held out) x {sampler.n_params} params, "
        f"{args.candidates:,} candidates, top {args.top_k}, {args.threads} threads"
    )

    reg = LossRegressor(feature_names=sampler.names, num_threads=args.threads, seed=args.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    reg.fit(x_fit, y_fit)
    t1, c1 = time.perf_counter(), time.process_time()
    result = search_theta(reg, sampler, n_candidates=args.candidates, top_k=args.top_k, seed=args.seed + 2)
    t2, c2 = time.perf_counter(), time.process_time()
    t_fit, t_search, total = t1 - t0, t2 - t1, t2 - t0

    held = reg.evaluate(x_test, y_test)
    star_true = float(true_loss(result.theta_star[None, :], args.scorers)[0])
    cand_true = true_loss(sampler.sample(args.candidates, seed=args.seed + 2), args.scorers)
    print(f"fit     {t_fit:6.2f} s wall {c1 - c0:6.2f} s CPU  ({reg.best_iteration_} trees kept)")
    print(f"search  {t_search:6.2f} s wall {c2 - c1:6.2f} s CPU")
    print(
        f"total   {total:6.2f} s wall {c2 - c0:6.2f} s CPU  (load avg 1 min {os.getloadavg()[0]:.2f}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})"
    )
    print(
        f"held-out: spearman {held['spearman']:.4f}  pearson {held['pearson']:.4f}  "
        f"MAE {held['mae']:.4f}  (noise sd 0.01, target sd {y_test.std():.4f})"
    )
    print(
        f"theta*: predicted {result.predicted_loss_of_mean:.4f}  true {star_true:.4f}  | "
        f"candidates' true loss: best {cand_true.min():.4f}  median {np.median(cand_true):.4f}"
    )
    top = list(reg.feature_importance())[:6]
    print(f"top features by gain: {', '.join(top)}")
    print(f"goal <= {GOAL_SECONDS:.0f} s: {'MET' if total <= GOAL_SECONDS else 'NOT MET'}")
    if args.plot:
        plot_predicted_vs_actual(y_test, reg.predict(x_test), args.plot, title="fit_search held-out runs")
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
