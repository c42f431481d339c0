"""Benchmark: the surrogate families on swarms from known truths. Goals: ``auto`` within 0.02 test
Spearman of the best family in every cell; fit + CV of all families on 512 runs × 64 domains ≤ 30 s.

What it measures
----------------
Synthetic RegMix-mode swarms (a run = a domain mixture → one target loss); no proxy is trained.
A cell is one truth × one kind of mixtures × M domains × n runs:

- truths, each an affine map of a raw function f(r) to a loss of mean 3.0 nats and standard
  deviation 0.1 nats over the cell's own mixture distribution (so every cell has the same signal):
  ``loglinear``: Ye et al.'s data-mixing law ``c + k · exp(Σ_j t_j r_j)`` (t scaled so that the
  exponent's sd is 1 over the distribution: clearly curved, not linear);
  ``bimix``: BiMix at a fixed step, ``Σ_i w_i A_i / (r_i + 0.001)^α_i`` (α 0.02–0.15 as in the
  paper's fits, A 2.5–4, evaluation weights w ~ Dirichlet(2));
  ``quadratic``: additive, ``Σ_i b_i (r_i − o_i)² / c_i`` (c_i the mean share, o_i an optimum share
  0.3–3 × c_i, b 0.1–1);
  ``tree``: thresholded terms, ``Σ_i v_i z_i + Σ_(i,j) w_ij z_i z_j`` with ``z_i = [r_i > τ_i]``,
  τ_i at a random quantile (30–70%) of r_i, M random pairs (piecewise constant: what trees fit);
- mixtures: ``sparse`` = :class:`RegMixSampler` (temperature 0.5, 15 strengths, MAXIMUM_USAGE 15)
  around a skewed prior (shares falling geometrically, the largest 100× the smallest, as in the
  Pile), shares below 2e-4 zeroed and the rest renormalised as RegMix does (many exact zeros);
  ``dense`` = Dirichlet(2, …, 2) around uniform;
- M ∈ {8, 24, 64} domains, n ∈ {32, 64, 128, 512} runs (the smaller budgets are prefixes of the
  512 runs, so budgets differ only in how many runs they see);
- noise on the training targets only (the model of a proxy run's loss): seed noise, Gaussian
  with sd ``--noise`` × 0.1 nats (default 0.02 nats), plus ``--outliers`` of the runs (default
  2%) that trained badly, whose loss is raised by |N(0, 0.3 nats)|.

Per cell, :func:`choose_regressor` over every registered family (5-fold CV × 3 repeats, as
fit-search runs it): each family's CV Spearman (mean ± sd over the repeats, against the noisy
targets); each family's **test** Spearman (fitted on all n runs, scored on 1,000 fresh mixtures
from the same distribution against the noiseless truth); what ``auto`` picked (a family or a
mean of the best two or three) and its test Spearman; its **regret** (best family's test
Spearman − auto's; below 0 when auto's ensemble beats every family); the wall and CPU seconds of
fit + CV of all families, with the 1-minute load average beside them (the machine is shared).
Then the goal lines and a summary: cells meeting the regret goal (in all, and per budget), the
worst cell, the timing goal and the slowest cell (seconds per family), how often each family is
best on test and what auto picked, and every failure (errors or NaN) by cell. Deterministic for a ``--seed``.

``--runs PATH`` scores the families on real proxy runs instead (fit-search's long format as
Parquet, or a ``proxy_runs`` Delta table read with a local SparkSession): the CV table only, since
real runs have no truth to test against.

How to run
----------
    .venv/bin/python benchmarks/surrogates.py                       # all 96 cells (10–30 min)
    .venv/bin/python benchmarks/surrogates.py --quick               # 16 small cells, a smoke check
    .venv/bin/python benchmarks/surrogates.py --cells 'bimix/*/M64/*' '*/n512' --seed 3
    .venv/bin/python benchmarks/surrogates.py --runs warehouse/proxy_runs --mode quadmix
    .venv/bin/python benchmarks/surrogates.py --cells '*/*/*/n32' --params '{"gp": {"kernel": "additive"}}'
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from quadmix_spark.search import REGRESSORS
from quadmix_spark.search.candidates import DirichletSampler, RegMixSampler
from quadmix_spark.search.regressors import evaluate_predictions
from quadmix_spark.search.validation import Choice, choose_regressor

MIXTURE_KINDS = ("sparse", "dense")
DOMAIN_COUNTS = (8, 24, 64)
BUDGETS = (32, 64, 128, 512)
QUICK = ("*/*/M8/n32", "*/*/M8/n64")

MEAN_LOSS, SPREAD = 3.0, 0.1  # every truth's mean and sd over its cell's mixtures, nats
PRIOR_SPAN = 100.0  # sparse: the largest prior share over the smallest
ZERO_BELOW = 2e-4  # RegMix zeroes shares below this and renormalises
DENSE_CONCENTRATION = 2.0
BIMIX_EPS = 1e-3
N_TEST, N_REFERENCE = 1_000, 4_096
REGRET_GOAL, SECONDS_GOAL = 0.02, 30.0


@dataclass(frozen=True)
class Cell:
    truth: str
    mixtures: str
    domains: int
    runs: int

    @property
    def name(self) -> str:
        return f"{self.truth}/{self.mixtures}/M{self.domains}/n{self.runs}"


# -- mixtures ------------------------------------------------------------------------------------
def skewed_prior(m: int) -> NDArray[np.float64]:
    """Shares falling geometrically, the largest PRIOR_SPAN × the smallest."""
    shares = PRIOR_SPAN ** (-np.arange(m) / (m - 1))
    return shares / shares.sum()


def draw_mixtures(kind: str, m: int, n: int, seed: int) -> NDArray[np.float64]:
    """(n, m) mixtures of ``kind`` (see the module docstring)."""
    domains = [f"d{i:02d}" for i in range(m)]
    if kind == "dense":
        return DirichletSampler(domains, DENSE_CONCENTRATION).sample(n, seed)
    rows = RegMixSampler(domains, skewed_prior(m)).sample(n, seed)
    rows = np.where(rows < ZERO_BELOW, 0.0, rows)
    return rows / rows.sum(axis=1, keepdims=True)


# -- truths: raw f(r), each (n, m) → (n,); scaled to the benchmark's mean and spread ------------
def loglinear_truth(ref: NDArray[np.float64], rng: np.random.Generator) -> Callable:
    t = rng.normal(0.0, 1.0, ref.shape[1])
    t /= (ref @ t).std()  # the exponent's sd over the distribution is 1
    return lambda r: np.exp(r @ t)


def bimix_truth(ref: NDArray[np.float64], rng: np.random.Generator) -> Callable:
    m = ref.shape[1]
    a, alpha = rng.uniform(2.5, 4.0, m), rng.uniform(0.02, 0.15, m)
    w = rng.dirichlet(np.full(m, 2.0))
    return lambda r: (w * a / (r + BIMIX_EPS) ** alpha).sum(axis=1)


def quadratic_truth(ref: NDArray[np.float64], rng: np.random.Generator) -> Callable:
    m = ref.shape[1]
    c = ref.mean(axis=0)
    o, b = c * rng.uniform(0.3, 3.0, m), rng.uniform(0.1, 1.0, m)
    return lambda r: (b * (r - o) ** 2 / c).sum(axis=1)


def tree_truth(ref: NDArray[np.float64], rng: np.random.Generator) -> Callable:
    m = ref.shape[1]
    tau = np.array([np.quantile(ref[:, i], q) for i, q in enumerate(rng.uniform(0.3, 0.7, m))])
    v = rng.normal(0.0, 0.5, m)
    pairs = np.array([rng.choice(m, 2, replace=False) for _ in range(m)])
    w = rng.normal(0.0, 1.0, m)

    def f(r: NDArray[np.float64]) -> NDArray[np.float64]:
        z = (r > tau).astype(np.float64)
        return z @ v + (z[:, pairs[:, 0]] * z[:, pairs[:, 1]]) @ w

    return f


TRUTHS = {
    "loglinear": loglinear_truth,
    "bimix": bimix_truth,
    "quadratic": quadratic_truth,
    "tree": tree_truth,
}


def scaled_truth(name: str, ref: NDArray[np.float64], rng: np.random.Generator) -> Callable:
    """The truth ``name`` drawn by ``rng``, scaled to MEAN_LOSS ± SPREAD over ``ref`` mixtures."""
    f = TRUTHS[name](ref, rng)
    values = f(ref)
    mean, sd = values.mean(), values.std() or 1.0
    return lambda r: MEAN_LOSS + SPREAD * (f(r) - mean) / sd


@dataclass(frozen=True)
class Swarm:
    """One cell's data: training runs (X, noisy y, ids), test mixtures and their true losses."""

    ids: list[str]
    X: NDArray[np.float64]
    y: NDArray[np.float64]
    X_test: NDArray[np.float64]
    y_test: NDArray[np.float64]
    ceiling: float  # Spearman of the noisy targets against the truth: what CV could at most show
    truth: Callable  # (n, m) mixtures → (n,) noiseless losses


def make_swarm(cell: Cell, seed: int, noise: float, outliers: float) -> Swarm:
    """Budgets share the truth and are prefixes of the same max(BUDGETS) runs and noise draws."""
    t, k = list(TRUTHS).index(cell.truth), MIXTURE_KINDS.index(cell.mixtures)
    streams = np.random.SeedSequence([seed, k, cell.domains]).spawn(3)  # runs, test, reference
    draw = [int(s.generate_state(1)[0]) for s in streams]
    n_max = max(max(BUDGETS), cell.runs)
    X = draw_mixtures(cell.mixtures, cell.domains, n_max, draw[0])
    X_test = draw_mixtures(cell.mixtures, cell.domains, N_TEST, draw[1])
    ref = draw_mixtures(cell.mixtures, cell.domains, N_REFERENCE, draw[2])
    truth = scaled_truth(cell.truth, ref, np.random.default_rng([seed, t, k, cell.domains]))
    rng = np.random.default_rng([seed, t, k, cell.domains, 1])
    seed_noise = rng.normal(0.0, noise * SPREAD, n_max)
    bad_runs = (rng.random(n_max) < outliers) * np.abs(rng.normal(0.0, 3 * SPREAD, n_max))
    y = truth(X) + seed_noise + bad_runs
    n = cell.runs
    ceiling = evaluate_predictions(truth(X[:n]), y[:n])["spearman"]
    return Swarm([f"run{i:04d}" for i in range(n)], X[:n], y[:n], X_test, truth(X_test), ceiling, truth)


# -- one cell ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    cell: Cell
    choice: Choice
    test: dict[str, float]  # family → test Spearman (NaN: failed)
    ceiling: float
    auto_test: float
    wall_s: float
    cpu_s: float
    load: float

    @property
    def best(self) -> str:
        ok = {f: s for f, s in self.test.items() if math.isfinite(s)}
        return max(ok, key=ok.get) if ok else "-"

    @property
    def regret(self) -> float:
        return self.test.get(self.best, math.nan) - self.auto_test

    def failures(self) -> list[str]:
        out = [f"{row.family}: {row.error}" for row in self.choice.table if not row.ok]
        out += [
            f"{f}: test Spearman is NaN"
            for f, s in self.test.items()
            if f in self.choice.models and math.isnan(s)
        ]
        return out


def truth_spearman(model, X: NDArray[np.float64], truth: NDArray[np.float64]) -> float:
    pred = model.predict(X)
    return evaluate_predictions(truth, pred)["spearman"] if np.all(np.isfinite(pred)) else math.nan


def run_cell(cell: Cell, families: Sequence[str], args: argparse.Namespace) -> Result:
    swarm = make_swarm(cell, args.seed, args.noise, args.outliers)
    domains = [f"d{i:02d}" for i in range(cell.domains)]
    wall, cpu = time.perf_counter(), time.process_time()
    choice = choose_regressor(
        families, swarm.X, swarm.y, swarm.ids, mode="regmix", feature_names=domains, seed=args.seed,
        params=args.params,
    )  # fmt: skip
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    load = os.getloadavg()[0]
    test = {f: math.nan for f in families}
    test.update({f: truth_spearman(m, swarm.X_test, swarm.y_test) for f, m in choice.models.items()})
    auto = truth_spearman(choice.model, swarm.X_test, swarm.y_test)
    return Result(cell, choice, test, swarm.ceiling, auto, wall, cpu, load)


# -- printing ------------------------------------------------------------------------------------
def header(families: Sequence[str]) -> str:
    fams = " ".join(f"{f[:17]:>17}" for f in families)
    return (
        f"{'cell':<26} {'noisy':>5} {fams}  {'auto picked':<26} {'test':>6} {'best':>9} {'regret':>7}"
        f" {'wall s':>7} {'cpu s':>6} {'load':>5}"
    )


def row_line(r: Result, families: Sequence[str]) -> str:
    cv = {row.family: row for row in r.choice.table}
    cols = []
    for f in families:
        row = cv[f]
        cols.append(
            f"{row.spearman:>5.3f}±{row.spearman_sd:.3f} {r.test[f]:>5.3f}" if row.ok else f"{'failed':>17}"
        )
    return (
        f"{r.cell.name:<26} {r.ceiling:>5.3f} {' '.join(cols)}  {r.choice.chosen:<26} {r.auto_test:>6.3f}"
        f" {r.best:>9} {r.regret:>+7.3f} {r.wall_s:>7.1f} {r.cpu_s:>6.1f} {r.load:>5.1f}"
    )


def verdict(ok: bool) -> str:
    return "meets" if ok else "misses"


def per_family_seconds(r: Result, families: Sequence[str]) -> str:
    return ", ".join(f"{row.family} {row.seconds:.1f}s" for row in r.choice.table if row.family in families)


def regret_summary(results: list[Result], families: Sequence[str]) -> None:
    regrets = [(r.regret, r) for r in results if math.isfinite(r.regret)]
    meeting = sum(reg <= REGRET_GOAL for reg, _ in regrets)
    print(f"  cells meeting the regret goal: {meeting} of {len(results)}")
    by_budget = []
    for n in sorted({r.cell.runs for r in results}):
        cells = [r for r in results if r.cell.runs == n]
        ok = sum(r.regret <= REGRET_GOAL for r in cells)
        by_budget.append(f"n{n} {ok}/{len(cells)} (mean regret {np.nanmean([r.regret for r in cells]):+.3f})")
    print("  by budget: " + ", ".join(by_budget))
    if regrets:
        reg, worst = max(regrets, key=lambda x: x[0])
        tests = ", ".join(f"{f} {worst.test[f]:.3f}" for f in families)
        print(
            f"  worst cell: {worst.cell.name}: auto picked {worst.choice.chosen} "
            f"(test {worst.auto_test:.3f}), best {worst.best}, regret {reg:+.3f}; test Spearman {tests}"
        )
    print(
        f"goal: auto within {REGRET_GOAL} Spearman of the best family in every cell: "
        f"{verdict(bool(regrets) and meeting == len(results))} ({meeting}/{len(results)})"
    )


def timing_summary(results: list[Result], families: Sequence[str]) -> None:
    big = [r for r in results if r.cell.runs == 512 and r.cell.domains == 64]
    if big:
        worst = max(big, key=lambda r: r.wall_s)
        each = ", ".join(f"{r.cell.truth}/{r.cell.mixtures} {r.wall_s:.1f}s (load {r.load:.1f})" for r in big)
        print(
            f"goal: fit + CV of all families on 512 runs × 64 domains ≤ {SECONDS_GOAL:.0f} s: "
            f"{verdict(worst.wall_s <= SECONDS_GOAL)} (slowest {worst.wall_s:.1f} s wall, "
            f"{worst.cpu_s:.1f} s CPU); {each}"
        )
        print(f"  the slowest of them, per family (fit + folds): {per_family_seconds(worst, families)}")
    else:
        print("goal: fit + CV on 512 runs × 64 domains: not measured (no such cell selected)")
    slowest = max(results, key=lambda r: r.wall_s)
    print(
        f"  slowest cell: {slowest.cell.name} {slowest.wall_s:.1f} s wall, {slowest.cpu_s:.1f} s CPU "
        f"(load {slowest.load:.1f}); per family: {per_family_seconds(slowest, families)}"
    )


def ensemble_name(chosen: str) -> str:
    """``mean(b+a)`` and ``mean(a+b)`` are one ensemble (members are listed in CV order)."""
    return f"mean({'+'.join(sorted(chosen[5:-1].split('+')))})" if chosen.startswith("mean(") else chosen


def print_summary(results: list[Result], families: Sequence[str]) -> None:
    print("\nsummary")
    regret_summary(results, families)
    timing_summary(results, families)
    best = Counter(r.best for r in results)
    for f in families:
        tests = [r.test[f] for r in results if math.isfinite(r.test[f])]
        mean = f"{np.mean(tests):.3f}" if tests else "  -  "
        print(f"  {f:<10} mean test Spearman {mean} over {len(tests)} cells; best on test in {best[f]} cells")
    picked = Counter(ensemble_name(r.choice.chosen) for r in results)
    print("  auto picked: " + ", ".join(f"{name} ×{count}" for name, count in picked.most_common()))
    failures = [(r.cell.name, msg) for r in results for msg in r.failures()]
    print(f"  failures: {len(failures)}" + ("" if failures else " (no family failed or gave NaN)"))
    for name, msg in failures:
        print(f"    {name}: {msg}")


# -- real runs -----------------------------------------------------------------------------------
def score_runs(path: str, mode: str, families: Sequence[str], seed: int, params: dict) -> None:
    """The CV table of every family on a runs file (Parquet) or a proxy_runs Delta table."""
    from quadmix_spark.config import SearchConfig
    from quadmix_spark.pipeline.fit_search import (
        format_cv_table,
        load_runs,
        renormalise_mixtures,
        run_targets,
    )

    delta = Path(path, "_delta_log").is_dir()
    spark = None
    if delta:
        from quadmix_spark.spark.session import build_session

        spark = build_session("quadmix-bench-surrogates", "local[2]", conf={"spark.ui.enabled": "false"})
        spark.sparkContext.setLogLevel("ERROR")
    cfg = SearchConfig(runs_path=path, runs_format="delta" if delta else "parquet", mode=mode, seed=seed)
    ids, X, y = run_targets(load_runs(cfg, spark), {})
    if mode == "regmix":
        X, _ = renormalise_mixtures(ids, X)
    started = time.perf_counter()
    choice = choose_regressor(families, X, y, ids, mode=mode, seed=seed, params=params)
    seconds = time.perf_counter() - started
    print(
        f"{path}: {len(ids)} runs × {X.shape[1]} features ({mode} mode), target = mean loss at the last step"
    )
    print(
        f"{choice.k}-fold CV ×{choice.repeats}; auto picked {choice.chosen}; fit + CV {seconds:.1f} s "
        f"(load {os.getloadavg()[0]:.1f})"
    )
    print("\n".join(format_cv_table(choice.as_dict())))


# -- main ----------------------------------------------------------------------------------------
def selected_cells(patterns: Sequence[str]) -> list[Cell]:
    cells = [Cell(t, k, m, n) for t in TRUTHS for k in MIXTURE_KINDS for m in DOMAIN_COUNTS for n in BUDGETS]
    return [c for c in cells if not patterns or any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"only the cells {' '.join(QUICK)} (a smoke check)")
    ap.add_argument(
        "--cells", nargs="+", default=(), metavar="PATTERN",
        help="cells to run, as globs on truth/mixtures/M<domains>/n<runs>, e.g. 'bimix/*/M64/*'",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.2, help="seed noise sd, as a share of the truth's sd")
    ap.add_argument("--outliers", type=float, default=0.02, help="share of runs that trained badly")
    ap.add_argument(
        "--params", type=json.loads, default={}, metavar="JSON",
        help='per-family constructor arguments (search.regressor_params): {"gp": {"kernel": "additive"}}',
    )  # fmt: skip
    ap.add_argument("--runs", help="score the families on these runs instead (Parquet, or a Delta table)")
    ap.add_argument("--mode", choices=("quadmix", "regmix"), default="quadmix", help="--runs: θ or mixtures")
    args = ap.parse_args()

    families = sorted(REGRESSORS)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    if args.runs:
        score_runs(args.runs, args.mode, families, args.seed, args.params)
        return
    patterns = [*args.cells, *(QUICK if args.quick else ())]
    cells = selected_cells(patterns)
    if not cells:
        ap.error(f"no cell matches {patterns}")
    print(
        f"{len(cells)} cells, families {', '.join(families)}; seed {args.seed}; truth mean {MEAN_LOSS} ± "
        f"{SPREAD} nats; noise sd {args.noise * SPREAD:.3f} nats + {args.outliers:.0%} bad runs; "
        f"{N_TEST} test mixtures per cell" + (f"; family parameters {args.params}" if args.params else "")
    )
    print(
        "noisy: Spearman of the runs' noisy targets against the truth (the most CV can show); per family: "
        "CV Spearman mean±sd (noisy targets) and test Spearman (fitted on all runs, vs the truth)"
    )
    print(header(families))
    results = []
    for cell in cells:
        results.append(run_cell(cell, families, args))
        print(row_line(results[-1], families), flush=True)
    print_summary(results, families)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
