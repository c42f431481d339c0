"""Mixture-level methods the experiment compares, found by name.

``experiment.mixtures``: each entry names a mixture θ* is composed with: any mixture source
(:mod:`quadmix_spark.mixing.sources`: ``natural``, ``uniform``, ``entropy:<measure>``, a file,
...), which select resolves on the experiment's pool, except the methods of :data:`POOL_MIXTURES`
(``tandem``, ``doremi``), which make their mixture on the experiment's own data (``quadmix
reweight`` on the pool) instead of reading the reweight job's file.

:data:`MIXTURE_METHODS` (``experiment.mixture_method``): a method gets a :class:`MethodContext`
(the pool, its domains, and ``train``: select mixtures with uniform in-domain sampling at the
proxies' budget and train a proxy on each, now) and returns what it found for the summary. Rows it
trains with ``compare=True`` join the experiment's comparison.

- ``bimix``: the entropy mixtures of the pool (``quadmix entropy``) and ``experiment.mixture_draws``
  Dirichlet(1) mixtures are trained; BiMix is fitted on every checkpoint of those runs
  (``quadmix bimix`` on them) and its r* is trained too. Rows: ``entropy:<measure>`` and
  ``bimix r*`` (the Dirichlet runs only feed the fit).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pyspark.sql import SparkSession

from quadmix_spark import core
from quadmix_spark.config import PipelineConfig
from quadmix_spark.mixing import sources
from quadmix_spark.pipeline import inputs
from quadmix_spark.pipeline.bimix import run_bimix, runs_table_long
from quadmix_spark.pipeline.entropy import check_config as check_entropy
from quadmix_spark.pipeline.entropy import run_entropy
from quadmix_spark.proxy.runs import load_runs
from quadmix_spark.spark import files


class Trained(Protocol):
    label: str
    run_id: str
    target: float
    status: str


@dataclass(frozen=True)
class MixtureRun:
    """A mixture to train a proxy on: ``label`` in the comparison when ``compare``."""

    label: str
    mixture_file: str
    compare: bool = True


@dataclass
class MethodContext:
    spark: SparkSession
    config: PipelineConfig  # the experiment's config with select/stats pointing at the pool
    pool_table: str
    out_dir: str  # a path or URI (spark.files)
    domains: list[str]  # θ*'s domain order: the order of the runs' mixture vectors
    pool_domains: list[str]  # the domains the pool has (every mixture names exactly these)
    train: Callable[[Sequence[MixtureRun]], list[Trained]]


def _derive(config: PipelineConfig, section: str, **changes: Any) -> PipelineConfig:
    out = copy.deepcopy(config)
    for key, value in changes.items():
        setattr(getattr(out, section), key, value)
    return out


def bimix_method(ctx: MethodContext) -> dict[str, Any]:
    """Entropy mixtures + Dirichlet draws → proxies → BiMix fit → r* → a proxy on r*."""
    config, exp = ctx.config, ctx.config.experiment
    entropy_cfg = _derive(
        config, "entropy", input_table=ctx.pool_table, output_dir=files.join(ctx.out_dir, "entropy")
    )
    entropy = run_entropy(ctx.spark, entropy_cfg, domains=ctx.pool_domains)
    runs = [MixtureRun(f"entropy:{m}", path) for m, path in entropy.mixtures.items()]
    rng = np.random.default_rng(exp.seed)
    for k in range(exp.mixture_draws):
        shares = rng.dirichlet(np.ones(len(ctx.pool_domains)))
        mixture = core.Mixture.from_shares(
            dict(zip(ctx.pool_domains, shares.tolist(), strict=True)),
            {"method": "dirichlet", "alpha": 1.0, "seed": exp.seed, "draw": k},
        )
        path = files.join(ctx.out_dir, f"mixture_dirichlet_{k}.yaml")
        with files.local_file(path) as local:
            mixture.to_file(local)
        runs.append(MixtureRun(f"dirichlet {k + 1}", str(path), compare=False))
    fit_runs = ctx.train(runs)

    table = load_runs(ctx.spark, config.table_path(config.proxy.runs_table))
    mine = table[table["run_id"].isin([r.run_id for r in fit_runs])]
    long, found = runs_table_long(mine, ctx.domains)
    long = long[long["domain"].isin(ctx.pool_domains)]
    runs_path = files.join(ctx.out_dir, "runs.parquet")
    with files.local_file(runs_path) as local:
        long.to_parquet(local)
    bimix_cfg = _derive(
        config,
        "bimix",
        runs_path=str(runs_path),
        output_dir=ctx.out_dir,
        output_mixture=files.join(ctx.out_dir, "mixture_bimix.yaml"),
        budget=config.bimix.budget or config.proxy.token_budget,
    )
    # the runs file holds the held-out sets only: weights of the target sets fit-search also weighs
    # would name no domain of it (weights on target sets alone are left to be refused)
    other = set(found["other_eval_sets"])
    bimix_cfg.targets.weights = {k: w for k, w in config.targets.weights.items() if k not in other} or dict(
        config.targets.weights
    )
    summary = run_bimix(bimix_cfg, ctx.spark)
    (r_star,) = ctx.train([MixtureRun("bimix r*", summary["output"])])
    return {
        "method": "bimix",
        "fit_runs": {r.label: r.run_id for r in fit_runs},
        "fit_runs_failed": [r.label for r in fit_runs if r.status != "ok"],
        "entropy": entropy.values,
        "entropy_shares": entropy.shares,
        "entropy_id": entropy.entropy_id,
        "r_star": summary["r_star"],
        "r_star_run": r_star.run_id,
        "fit": summary["fit"],
        "diagnostics_table": summary["diagnostics_table"],
        "extrapolation_skipped": summary.get("extrapolation_skipped"),
        "unseen_skipped": summary.get("unseen_skipped"),
        "excluded_zero_share": summary["excluded_zero_share"],
        "summary": summary["summary"],
        "plot": summary["plot"],
    }


def check_bimix(config: PipelineConfig) -> None:
    check_entropy(config)


#: name → (check before any Spark work, the method)
MIXTURE_METHODS: dict[str, tuple[Callable[[PipelineConfig], None], Callable[[MethodContext], dict]]] = {
    "bimix": (check_bimix, bimix_method),
}


def format_method(info: dict[str, Any]) -> list[str]:
    """Summary lines of a method's result (indented, for the experiment's printout)."""
    if info.get("method") != "bimix":
        return []
    f = info["fit"]
    lines = [
        f"  bimix: fitted on {len(info['fit_runs'])} runs ({', '.join(info['fit_runs'])}), "
        f"in-sample R² of log loss {f['r2_log']:.4f}, mean relative error {100 * f['mean_rel_error']:.3f}%"
        + (f"; {info['excluded_zero_share']} rows with r = 0 left out" if info["excluded_zero_share"] else "")
    ]
    lines += ["    " + line for line in info["diagnostics_table"].splitlines()]
    for what in ("extrapolation_skipped", "unseen_skipped"):
        if info.get(what):
            lines.append(f"    {what.replace('_', ' ')}: {info[what]}")
    domains = sorted(info["r_star"])

    def row(name: str, shares: dict[str, float]) -> str:
        return f"    {name:<12}" + "".join(f" {shares.get(d, np.nan):>10.4f}" for d in domains)

    lines.append(f"    {'share':<12}" + "".join(f" {d[:10]:>10}" for d in domains))
    lines += [row(f"entropy:{m}", shares) for m, shares in info["entropy_shares"].items()]
    lines.append(row("bimix r*", info["r_star"]))
    return lines


# -- experiment.mixtures: mixtures θ* is composed with ---------------------------------------------
#: ``fn(spark, config, out_dir) → a mixture file`` made on the experiment's own data.
PoolMixture = Callable[[SparkSession, PipelineConfig, str], str]


def _reweight(method: str) -> PoolMixture:
    """The method's mixture from ``quadmix reweight`` on the experiment's pool and held-out sets."""

    def make(spark: SparkSession, config: PipelineConfig, out_dir: str) -> str:
        from quadmix_spark.pipeline.reweight import run_reweight

        cfg = copy.deepcopy(config)
        # The annotated table split with experiment.seed: the streams' training documents are the
        # pool, their validation streams the experiment's held-out sets.
        cfg.reweight.streams.input_table = config.select.input_table
        cfg.reweight.output_dir = files.join(out_dir, "reweight")
        cfg.reweight.eval_tokens = 0  # the experiment evaluates through select
        result = run_reweight(spark, cfg, [method])
        written = [m.mixture_file for m in result.methods if m.mixture_file]
        if not written:
            errors = "; ".join(e.splitlines()[0] for e in {**result.failed, **result.skipped_failed}.values())
            raise RuntimeError(f"experiment.mixtures: {method} produced no mixture ({errors})")
        return written[0]

    return make


#: ``experiment.mixtures`` entries the experiment makes on its own pool rather than reading the
#: reweight job's file (the ``tandem`` / ``doremi`` sources of select.mixture). Every other
#: entry is a mixture source (:mod:`quadmix_spark.mixing.sources`) that select resolves on the pool.
POOL_MIXTURES: dict[str, PoolMixture] = {
    "tandem": _reweight("tandem"),
    "doremi": _reweight("doremi"),
}


def check_mixtures(config: PipelineConfig) -> None:
    """Every ``experiment.mixtures`` entry names a source whose file is there (no Spark work)."""
    ctx = inputs.mixture_context(config, "experiment.mixtures")
    for name in config.experiment.mixtures:
        if name not in POOL_MIXTURES:
            sources.check(name, ctx)


def mixture_source(spark: SparkSession, config: PipelineConfig, name: str, out_dir: str) -> tuple[str, str]:
    """(row label, select.mixture value) of one ``experiment.mixtures`` entry."""
    if name in POOL_MIXTURES:
        return name, POOL_MIXTURES[name](spark, config, out_dir)
    return sources.parse(name, "experiment.mixtures").label, name
