"""Benchmark: the searched candidate or the best observed run, on swarms from known truths.

fit-search writes its searched r* (θ*) only when the surrogate predicts it better than the best
observed run by more than ``search.evidence_margin`` CV MAEs; else the best run itself. This
script measures that choice where the truth is known, against the alternatives.

What it measures
----------------
The cells of ``benchmarks/surrogates.py`` (truths × sparse/dense mixtures × M domains × n runs,
the same swarms, noise and seeds). Per cell: ``auto`` is chosen and fitted as fit-search does
(:func:`choose_regressor`, 5-fold CV × 3), r* is searched as fit-search does (mean of the top 10 of
``--candidates`` draws from the cell's own mixture distribution, inside the runs' region), and
both sides are scored by the noiseless truth: ``cand`` (r*) and ``best`` (the run of lowest
*observed* loss, which the noise made look better than it is). Then each rule's pick:

- ``best run``: always the best observed run; ``candidate``: always r*;
- ``observed + 1 MAE``: r* when predicted below the best run's observed loss by more than the CV
  MAE (the rule before ``best_run_estimate``);
- ``estimate + k MAE``: r* when predicted below :func:`best_run_estimate` (the surrogate's
  prediction for the best run, moved towards its observation by what exceeds 2 MAE) by more
  than k MAE, for k = 0, 0.5 and 1 (``search.evidence_margin``'s default);
- ``out-of-fold + 1 MAE``: the same with the CV's out-of-fold prediction for the best run (from
  models that did not see it) in place of the in-sample one.

Summary per budget and in all: how often each rule picks the truly better side, its mean true
loss above the better side's (the oracle's), its mean and worst true loss against the best run's
(in millinats; the truth's spread over mixtures is 100 mnats). Deterministic for a ``--seed``.

How to run
----------
    .venv/bin/python benchmarks/search_evidence.py --cells '*/*/*/n32' '*/*/*/n64' '*/*/*/n128'
    .venv/bin/python benchmarks/search_evidence.py --quick --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the swarms of the surrogates benchmark
import surrogates  # noqa: E402

from quadmix_spark.pipeline.fit_search import best_run_estimate  # noqa: E402
from quadmix_spark.search import REGRESSORS  # noqa: E402
from quadmix_spark.search.candidates import DirichletSampler, RegMixSampler, RunRegion, search_theta  # noqa: E402
from quadmix_spark.search.validation import choose_regressor  # noqa: E402

TOP_K = 10


@dataclass(frozen=True)
class Sides:
    """One cell: the surrogate's view and the truth of both sides (nats)."""

    name: str
    runs: int
    observed: float  # the best run's observed loss
    predicted: float  # the surrogate's prediction for the best run
    out_of_fold: float  # the CV's prediction for it, from folds that did not see it (mean over repeats)
    candidate: float  # the surrogate's prediction for r*
    mae: float  # the chosen surrogate's CV MAE
    true_candidate: float
    true_best: float


RULES: dict[str, Callable[[Sides], bool]] = {  # True: write the candidate
    "best run": lambda s: False,
    "candidate": lambda s: True,
    "observed + 1 MAE": lambda s: s.observed - s.candidate > s.mae,
    **{
        f"estimate + {k:g} MAE": (
            lambda s, k=k: best_run_estimate(s.observed, s.predicted, s.mae) - s.candidate > k * s.mae
        )
        for k in (0.0, 0.5, 1.0)
    },
    "out-of-fold + 1 MAE": lambda s: (
        best_run_estimate(s.observed, s.out_of_fold, s.mae) - s.candidate > s.mae
    ),
}


def sampler_of(cell: surrogates.Cell) -> DirichletSampler | RegMixSampler:
    """The cell's own mixture distribution, as the search draws it."""
    domains = [f"d{i:02d}" for i in range(cell.domains)]
    if cell.mixtures == "dense":
        return DirichletSampler(domains, surrogates.DENSE_CONCENTRATION)
    return RegMixSampler(domains, surrogates.skewed_prior(cell.domains))


def run_cell(cell: surrogates.Cell, args: argparse.Namespace) -> Sides:
    swarm = surrogates.make_swarm(cell, args.seed, args.noise, args.outliers)
    domains = [f"d{i:02d}" for i in range(cell.domains)]
    choice = choose_regressor(
        sorted(REGRESSORS), swarm.X, swarm.y, swarm.ids, mode="regmix", feature_names=domains, seed=args.seed
    )
    found = search_theta(
        choice.model, sampler_of(cell), args.candidates, TOP_K, args.seed, region=RunRegion(swarm.X)
    )
    best = int(np.argmin(swarm.y))
    return Sides(
        cell.name,
        cell.runs,
        float(swarm.y[best]),
        float(choice.model.predict(swarm.X[best : best + 1])[0]),
        float(np.mean(np.atleast_2d(choice.score.oof)[:, best])),
        float(found.predicted_loss_of_mean),
        choice.score.mae,
        float(swarm.truth(found.theta_star[None, :])[0]),
        float(swarm.truth(swarm.X[best : best + 1])[0]),
    )


def row_line(s: Sides) -> str:
    picks = "".join("c" if rule(s) else "b" for rule in RULES.values())
    return (
        f"{s.name:<28} {s.observed:>8.4f} {s.predicted:>8.4f} {s.out_of_fold:>8.4f} {s.candidate:>8.4f} "
        f"{s.mae:>7.4f} "
        f"{s.true_best:>9.4f} {s.true_candidate:>9.4f}  {picks}"
    )


def summary(cells: list[Sides], label: str) -> list[str]:
    better = sum(s.true_candidate < s.true_best for s in cells)
    lines = [f"{label} ({len(cells)} cells; the candidate is truly better in {better}):"]
    oracle = np.array([min(s.true_candidate, s.true_best) for s in cells])
    best = np.array([s.true_best for s in cells])
    for name, rule in RULES.items():
        picks = np.array([rule(s) for s in cells])
        truth = np.where(picks, [s.true_candidate for s in cells], best)
        right = int(sum(p == (s.true_candidate < s.true_best) for p, s in zip(picks, cells, strict=True)))
        above, gain = 1000 * (truth - oracle), 1000 * (truth - best)
        lines.append(
            f"  {name:<18} right {right:>3}/{len(cells)}  above the oracle {above.mean():6.1f}"
            f"  vs the best run: mean {gain.mean():+6.1f}, worst {gain.max():+6.1f}"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"only {' '.join(surrogates.QUICK)}")
    ap.add_argument("--cells", nargs="+", default=(), metavar="PATTERN", help="globs, as in surrogates.py")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.2, help="seed noise sd, as a share of the truth's sd")
    ap.add_argument("--outliers", type=float, default=0.02, help="share of runs that trained badly")
    ap.add_argument("--candidates", type=int, default=20_000, help="search draws per cell")
    args = ap.parse_args()
    patterns = [*args.cells, *(surrogates.QUICK if args.quick else ())]
    cells = surrogates.selected_cells(patterns)
    if not cells:
        ap.error(f"no cell matches {patterns}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; seed {args.seed}")
    print("per cell: the best run's observed loss, its prediction (in-sample and out-of-fold), r*'s")
    print("predicted loss, the CV MAE, the truth")
    print(f"of both, and each rule's pick (c: candidate, b: best run) in the order {', '.join(RULES)}")
    print(
        f"{'cell':<28} {'observed':>8} {'pred':>8} {'oof':>8} {'r* pred':>8} {'MAE':>7} "
        f"{'true best':>9} {'true r*':>9}"
    )
    results = []
    for cell in cells:
        results.append(run_cell(cell, args))
        print(row_line(results[-1]), flush=True)
    print("summary, in millinats of true loss")
    for n in sorted({s.runs for s in results}):
        print("\n".join(summary([s for s in results if s.runs == n], f"n{n}")))
    if len({s.runs for s in results}) > 1:
        print("\n".join(summary(results, "all")))


if __name__ == "__main__":
    main()
