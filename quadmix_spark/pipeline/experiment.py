"""The experiment: does θ* found from proxy runs beat the baselines at the same token budget?

Steps (each a job of its own elsewhere; here on one SparkSession, rerunnable):

1. pool: the annotated table minus the held-out slice (``targets``), written as a Delta table,
   and its stats;
2. evaluation sets: the per-domain held-out sets and the user's target sets, as token ids;
3. proxies, in rounds (``search.rounds``; :mod:`~quadmix_spark.pipeline.experiment_rounds`): θ
   from Algorithm 1, then where the surrogate fitted so far predicts best; their datasets in one
   scan (composed with ``search.mixture`` when set), one proxy run per θ as a Spark task, results
   in the ``proxy_runs`` table;
4. fit + search after each round (fit-search: the surrogate chosen by cross-validation, θ* the
   mean of the top-k of fresh candidates, or the best run when θ* is not predicted better);
5. evaluation: fresh proxies trained at the same budget on the data selected by θ*, by uniform
   random selection, by the top-k of each single scorer and by the union of top-k sets
   (``experiment.baselines``), through ``quadmix select`` itself; then the two halves of θ*
   apart (``experiment.decompose``, several seeds each): θ*'s realised domain mixture with random
   documents inside each domain, and the pool's natural mixture with θ*'s in-domain sampling;
   and θ* composed with each mixture of ``experiment.mixtures``; beside θ*, the best proxy run's
   own θ (or, when θ* is that run, the searched θ fit-search did not write); with
   ``search.mixture``, that mixture with random documents inside each domain (the row θ*'s
   in-domain sampling must beat); and the rows of a mixture-level
   method (``experiment.mixture_method``, :mod:`~quadmix_spark.pipeline.mixture_methods`), whose
   mixtures are trained with uniform in-domain sampling;
6. the comparison: target loss per selection (mean and spread over seeds), side by side
   (table + PNG).

Run ids derive from everything that shapes a run (pool version, seed, budget, trainer, eval
sets), so a rerun trains only what is missing or failed.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig, validate
from quadmix_spark.mixing import sources
from quadmix_spark.pipeline import inputs
from quadmix_spark.pipeline.experiment_rounds import RoundsPlan, Searched, plot_rounds, search_in_rounds
from quadmix_spark.pipeline.fit_search import (
    MIN_FIT_RUNS,
    format_cv_tables,
    make_sampler,
    pool_features,
    write_theta_star,
)
from quadmix_spark.pipeline.mixture_methods import (
    MIXTURE_METHODS,
    MethodContext,
    MixtureRun,
    check_mixtures,
    format_method,
    mixture_source,
)
from quadmix_spark.pipeline.select import run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.pipeline.targets import (
    check_heldout_filter,
    combine,
    final_losses,
    heldout_sets,
    split_pool,
    target_sets,
)
from quadmix_spark.proxy.runs import RunSpec, load_runs, pool_vocab, run_proxies
from quadmix_spark.proxy.vocab import ProxyVocab, parse_vocab_spec
from quadmix_spark.spark import files, tables
from quadmix_spark.spark.cost import Cost, CostMeter
from quadmix_spark.spark.selectors import baselines
from quadmix_spark.spark.stats_table import check_columns, load_stats

log = logging.getLogger(__name__)


@dataclass
class Contender:
    """One row of the comparison."""

    label: str
    selector: str
    run_id: str
    target: float = float("nan")
    losses: dict[str, float] = field(default_factory=dict)
    n_train_tokens: int = 0
    status: str = ""
    mixture: str | None = None  # the select.mixture the data was chosen with
    seed: int = 0  # the select seed (the decomposition rows repeat over several)


@dataclass
class ExperimentResult:
    key: str
    pool_docs: int
    eval_sets: dict[str, int]  # name → tokens
    proxy_ok: int
    proxy_failed: int
    fit: dict
    contenders: list[Contender]
    seconds: float
    output_dir: str
    mixture_method: dict | None = None  # what experiment.mixture_method found (fit, r*, …)
    rounds: list[dict] = field(default_factory=list)  # one record per round of proxy runs
    search_mixture: str | None = None  # search.mixture: θ was searched with these domain shares
    cost: dict | None = None  # quadmix_spark.spark.cost: wall, driver and executor seconds

    @property
    def ranked(self) -> list[Contender]:
        """Best first; runs without a loss (failed) last."""
        return sorted(self.contenders, key=lambda c: (not np.isfinite(c.target), c.target))

    @property
    def rows(self) -> list[Row]:
        """One row per label: the mean target over its seeds and their spread, best first."""
        rows = []
        for label in dict.fromkeys(c.label for c in self.contenders):
            group = [c for c in self.contenders if c.label == label]
            ok = np.array([c.target for c in group if np.isfinite(c.target)])
            rows.append(
                Row(
                    label,
                    group[0].selector,
                    float(ok.mean()) if ok.size else float("nan"),
                    float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
                    len(group),
                    max(c.n_train_tokens for c in group),
                    "ok" if ok.size == len(group) else f"{len(group) - ok.size} failed",
                )
            )
        return sorted(rows, key=lambda r: (not np.isfinite(r.target), r.target))


class Row(NamedTuple):
    label: str
    selector: str
    target: float  # mean over seeds
    spread: float  # standard deviation over seeds (0 for one)
    seeds: int
    n_train_tokens: int
    status: str


def _derive(config: PipelineConfig, **sections: dict) -> PipelineConfig:
    """A copy of ``config`` with some keys of some sections changed."""
    out = copy.deepcopy(config)
    for section, changes in sections.items():
        for key, value in changes.items():
            setattr(getattr(out, section), key, value)
    return out


def experiment_key(config: PipelineConfig, annotated_version: int) -> str:
    """The experiment's identity, and the prefix of its run ids.

    The input is named as configured (a table name stays relative to the warehouse) and the
    template θ by its content: the run ids seed the cross-validation folds, so a path in the key
    would make the same experiment search differently in another folder.
    """
    exp, proxy = config.experiment, config.proxy
    shape = [
        config.select.input_table,
        annotated_version,
        asdict(config.targets),
        exp.seed,
        proxy.token_budget,
        proxy.overshoot,
        proxy.seed,
        proxy.trainer,
        proxy.ngram_order if proxy.trainer == "ngram" else asdict(proxy.tinylm),
        proxy.n_checkpoints,
        config.search.ranges,
        list(experiment_rounds(config)),
        config.search.mixture,
        core.params_hash(inputs.read_params(config.search.template_params, "search.template_params")),
    ]
    return core.content_key(shape, 10)


def _prepare_pool(spark: SparkSession, config: PipelineConfig, annotated_version: int):
    """Write the pool table and its stats unless they were made from the same inputs."""
    exp, source = config.experiment, config.table_path(config.select.input_table)
    shape = [source, annotated_version, asdict(config.targets), exp.seed]
    key = core.content_key(shape, 10)
    pool_path, stats_path = config.table_path(exp.pool_table), config.table_path(exp.stats_table)
    annotated = spark.read.format("delta").option("versionAsOf", annotated_version).load(source)
    pool, heldout = split_pool(annotated, config.targets, exp.seed)
    latest = tables.version(spark, pool_path)
    meta = tables.commit_info(spark, pool_path, latest)["user_metadata"] if latest is not None else None
    if not meta or meta.get("pool_key") != key:
        tables.write(
            pool,
            pool_path,
            "overwrite",
            {"job": "experiment-pool", "pool_key": key, "source": source, "version": annotated_version},
        )
        latest = tables.version(spark, pool_path)
    stats_cfg = _derive(config, stats={"input_table": pool_path, "output_table": stats_path})
    if _stale_stats(spark, stats_path, latest, config.domain_column):
        run_stats(spark, stats_cfg)
    return heldout, pool_path, stats_path


def _stale_stats(spark: SparkSession, stats_path: str, pool_version: int, domain_column: str) -> bool:
    """Whether the pool's stats must be computed again: none yet, of another pool version, or grouped
    by another domain column (the same pool with ``domain_column: cluster`` has other domains)."""
    if tables.version(spark, stats_path) is None:
        return True
    stats = load_stats(spark, stats_path)
    return stats.annotated_version != pool_version or stats.no_domain.column != domain_column


def experiment_rounds(config: PipelineConfig) -> tuple[int, ...]:
    """``search.rounds``, else ``experiment.n_runs`` in one round below 48 runs, and in two from
    48 on: three quarters, then a quarter where the surrogate predicts best (64 → 48 + 16)."""
    if config.search.rounds:
        return tuple(config.search.rounds)
    n = config.experiment.n_runs
    return (n,) if n < 48 else (n - n // 4, n // 4)


@dataclass(frozen=True)
class ExperimentPlan:
    """The checked inputs of one experiment: its key and folder, the pool (table, stats, config),
    the evaluation sets, θ's sampler, the proxy vocabulary and what the rounds need."""

    config: PipelineConfig
    on_pool: PipelineConfig
    key: str
    out_dir: str
    pool_path: str
    stats_path: str
    eval_sets: dict[str, np.ndarray]
    rounds: RoundsPlan


def run_experiment(spark: SparkSession, config: PipelineConfig) -> ExperimentResult:
    """Plan → proxy runs in rounds, fit, θ* → evaluation rows → the comparison, written."""
    started = time.time()
    with CostMeter(spark, "experiment") as meter:
        plan = plan_experiment(spark, config)
        searched = search_in_rounds(spark, plan.rounds, config.experiment.seed)
        _write_theta_star(plan, searched)
        contenders, method_info = _evaluate(spark, plan, searched.fit)
    result = ExperimentResult(
        key=plan.key,
        pool_docs=sum(load_stats(spark, plan.stats_path).docs.values()),  # the pool's stats: no scan
        eval_sets={k: int(v.size) for k, v in plan.eval_sets.items()},
        proxy_ok=searched.ok,
        proxy_failed=searched.failed,
        fit=searched.fit,
        contenders=contenders,
        seconds=round(time.time() - started, 1),
        output_dir=plan.out_dir,
        mixture_method=method_info,
        rounds=searched.history,
        search_mixture=config.search.mixture,
        cost=meter.cost.to_json(),
    )
    _write(result, plan.out_dir)
    return result


def _check(spark: SparkSession, config: PipelineConfig) -> int:
    """Every input the config names, before any job: returns the annotated table's version."""
    exp = config.experiment
    source = config.table_path(config.select.input_table)
    annotated_version = tables.version(spark, source)
    if annotated_version is None:
        raise ConfigError(f"select.input_table: no Delta table at {source} (run quadmix annotate first)")
    # Every column the config names, against the table's schema (no job over the data).
    annotated = spark.read.format("delta").option("versionAsOf", annotated_version).load(source)
    check_columns(annotated, config, source)
    check_heldout_filter(annotated, config.targets, source)
    validate(exp, "experiment")  # n_runs, seeds, ... when the config was built in code
    validate(config.search, "search")
    _check_rounds(config)
    check_mixtures(config)
    if config.search.mixture is not None:
        sources.check(config.search.mixture, inputs.mixture_context(config, "search.mixture"))
    _selectors(config)  # experiment.baselines, before any job
    if exp.mixture_method is not None:
        MIXTURE_METHODS[exp.mixture_method][0](config)  # e.g. bimix's VNE model, before any job
    return annotated_version


def _check_rounds(config: PipelineConfig) -> None:
    """At least 24 runs, and enough in the first round to fit on once the held-out runs are out:
    said before any proxy trains, not after the first round."""
    rounds, search = experiment_rounds(config), config.search
    first = rounds[0]
    held = math.ceil(search.holdout_fraction * first - 1e-9) if search.holdout_runs is None else 0
    if sum(rounds) < 24 or first - held < MIN_FIT_RUNS:
        raise ConfigError(
            f"experiment.n_runs (or search.rounds) must give at least 24 runs, and the first round "
            f"({first}) at least {MIN_FIT_RUNS} to fit the surrogate on after it"
            + (
                f", besides the {held} that search.holdout_fraction ({search.holdout_fraction}) holds out"
                if held
                else ""
            )
        )


def plan_experiment(spark: SparkSession, config: PipelineConfig) -> ExperimentPlan:
    """Check the inputs, write the pool and its stats, read the evaluation sets."""
    exp, proxy = config.experiment, config.proxy
    annotated_version = _check(spark, config)
    key = experiment_key(config, annotated_version)
    out_dir = files.join(exp.output_dir, key)
    files.makedirs(out_dir)
    rounds = experiment_rounds(config)
    log.info(
        "experiment %s: %s proxy runs, budget %d tokens", key, "+".join(map(str, rounds)), proxy.token_budget
    )
    heldout, pool_path, stats_path = _prepare_pool(spark, config, annotated_version)
    on_pool = _derive(
        config, select={"input_table": pool_path, "stats_table": stats_path, "stats_version": None}
    )
    eval_sets = {**heldout_sets(heldout, config, exp.seed), **target_sets(spark, config.targets)}
    if not eval_sets:
        raise ConfigError("targets: no evaluation sets (set heldout_fraction > 0 or add target_sets)")
    sampler = make_sampler(config.search)
    if not isinstance(sampler, core.ParamSampler):
        raise ConfigError("search.mode: the experiment searches θ (quadmix mode)")
    pool = spark.read.format("delta").load(pool_path)
    shares = _search_shares(spark, on_pool, stats_path, sampler.domains)
    features = pool_features(on_pool, spark) if config.search.features != "theta" else None
    if features is not None and shares is not None:
        features = replace(features, shares=shares)
    search_cfg = _derive(
        config, search={"output_dir": out_dir, "output_params": files.join(out_dir, "theta_star.yaml")}
    ).search
    rounds_plan = RoundsPlan(
        on_pool,
        key,
        pool,
        eval_sets,
        sampler,
        _proxy_vocab(config, pool),
        rounds,
        search_cfg,
        features,
        shares,
    )
    return ExperimentPlan(config, on_pool, key, out_dir, pool_path, stats_path, eval_sets, rounds_plan)


def _search_shares(
    spark: SparkSession, on_pool: PipelineConfig, stats_path: str, domains: tuple[str, ...]
) -> np.ndarray | None:
    """``search.mixture``'s shares in θ's domain order (None when unset)."""
    name = on_pool.search.mixture
    if name is None:
        return None
    stats = load_stats(spark, stats_path)
    present = [d for d in domains if d in stats.docs]
    mixture = inputs.resolve_mixture(on_pool, name, "search.mixture", present, lambda: stats.tokens)
    shares = dict(zip(present, mixture.as_vector(present), strict=True))
    return np.array([shares.get(d, 0.0) for d in domains])


def _write_theta_star(plan: ExperimentPlan, searched: Searched) -> None:
    """θ* (or the best run, when θ* is not predicted better) as the params file select reads; when
    θ* is new, the best run's θ beside it, for a row of its own; the rounds' plot."""
    write_theta_star(searched.result, plan.rounds.search)
    fit, sampler = searched.fit, plan.rounds.sampler
    # The other of the two beside θ*, for a row of its own: the best run's θ when θ* is new, the
    # searched θ when θ* is the best run (so the table shows whether that choice was right).
    other = files.join(plan.out_dir, "other.yaml")
    files.delete(other)
    if fit["output_source"] == "searched candidate":
        vector = searched.X[searched.run_ids.index(fit["best_observed_run"])]
    else:
        vector = np.asarray(fit["candidate"])
    with files.local_file(other) as path:
        core.save_params(core.QuadMixParams.from_vector(vector, sampler.domains, sampler.scorers), path)
    if len(searched.history) > 1:
        with files.local_file(files.join(plan.out_dir, "rounds.png")) as path:
            plot_rounds(searched.history, path)


def _proxy_vocab(config: PipelineConfig, pool: DataFrame) -> ProxyVocab | None:
    """The pool's ``top:N`` proxy vocabulary, built once, so that every proxy of the experiment (the
    K runs, θ*, the baselines) measures its losses under one mapping; None for a full vocabulary."""
    proxy = config.proxy
    if proxy.trainer != "tinylm":
        return None
    n_top = parse_vocab_spec(proxy.tinylm.vocab, "proxy.tinylm.vocab")
    return None if n_top is None else pool_vocab(pool, n_top)


class Evaluation:
    """The evaluation rows: each a ``quadmix select`` at the proxies' budget on the pool, trained as a
    fresh proxy; ``contenders`` are the rows compared, in the order they were selected."""

    def __init__(self, spark: SparkSession, plan: ExperimentPlan, fit: dict) -> None:
        self.spark, self.plan = spark, plan
        self.contenders: list[Contender] = []
        self.trained: set[str] = set()  # run ids a mixture method trained itself
        new = fit["output_source"] == "searched candidate"
        self.other_label = "best proxy run" if new else "searched θ (not written)"

    def select(
        self,
        label: str,
        selector: str,
        mixture: str | None = None,
        seed: int | None = None,
        compare: bool = True,
        **overrides,
    ):
        plan, proxy, exp = self.plan, self.plan.config.proxy, self.plan.config.experiment
        seed = proxy.seed if seed is None else seed
        cfg = _derive(
            plan.on_pool,
            select={
                "selector": selector,
                "params": files.join(plan.out_dir, "theta_star.yaml"),
                "token_budget": int(round(proxy.token_budget * (1 + proxy.overshoot))),
                "mixture": mixture,
                "seed": seed,
                "rank_sample_size": proxy.rank_sample_size,
                "output_table": exp.selected_table,
                "output_dir": files.join(plan.out_dir, "selections"),
                "shard_formats": [],
                "report": False,
                "allow_unused_domains": True,
                **overrides,
            },
        )
        sel = run_select(self.spark, cfg)
        contender = Contender(
            label, selector, f"{plan.key}-eval-{sel.selection_id}", mixture=mixture, seed=seed
        )
        if compare:
            self.contenders.append(contender)
        return sel, contender

    def documents(self) -> DataFrame:
        selected = self.spark.read.format("delta").load(
            self.plan.config.table_path(self.plan.config.experiment.selected_table)
        )
        run_id = F.concat(F.lit(f"{self.plan.key}-eval-"), F.col("selection_id")).alias("run_id")
        return selected.select(run_id, "doc_key", "copies", "text")

    def train(self, specs: list[RunSpec], rows: list[Contender]) -> None:
        """Train ``specs`` as proxies at the budget and fill ``rows`` from the runs table."""
        plan, proxy = self.plan, self.plan.config.proxy
        runs_path = plan.config.table_path(proxy.runs_table)
        run_proxies(
            self.spark, proxy, runs_path, specs, self.documents(), plan.eval_sets, vocab=plan.rounds.vocab
        )
        _fill(self.spark, runs_path, rows, plan.config.targets.weights)


def _evaluate(spark: SparkSession, plan: ExperimentPlan, fit: dict) -> tuple[list[Contender], dict | None]:
    """θ*, the best run, the baselines, θ*'s two halves apart, θ* with each configured mixture and
    the mixture method's rows, selected by ``quadmix select`` at the proxies' budget, then trained."""
    ev = Evaluation(spark, plan, fit)
    theta_mixture = _theta_and_baselines(ev)
    if plan.config.experiment.decompose:
        _halves(ev, theta_mixture)
    for mixture in plan.config.experiment.mixtures:
        name, source = mixture_source(spark, plan.config, mixture, plan.out_dir)
        ev.select(f"θ* ∘ {name}", "quadmix", source)
    method_info = _method_rows(ev) if plan.config.experiment.mixture_method is not None else None
    rest = [c for c in ev.contenders if c.run_id not in ev.trained]
    ev.train([RunSpec(c.run_id, "eval") for c in rest], rest)
    return ev.contenders, method_info


def _theta_and_baselines(ev: Evaluation) -> str:
    """θ* (composed with ``search.mixture`` when set), the best run beside it, each baseline;
    returns the file of θ*'s realised domain mixture."""
    plan = ev.plan
    other = files.join(plan.out_dir, "other.yaml")
    theta_mixture_file = files.join(plan.out_dir, "theta_star_mixture.yaml")
    for label, selector in _selectors(plan.config):
        sel, _ = ev.select(label, selector, plan.config.search.mixture if selector == "quadmix" else None)
        if label != "θ*":
            continue
        if files.is_file(other):  # the best run beside a new θ*; the searched θ beside the best run
            ev.select(ev.other_label, "quadmix", plan.config.search.mixture, params=other)
        shares = {d: sel.tokens_after.get(d, 0) for d in sel.tokens_before}
        realised = core.Mixture.natural(shares, method="theta_star_realised", selection=sel.selection_id)
        with files.local_file(theta_mixture_file) as path:
            realised.to_file(path)
    return theta_mixture_file


def _halves(ev: Evaluation, theta_mixture_file: str) -> None:
    """θ*'s two halves apart, over several seeds: its domain mixture with random documents inside
    each domain (with ``search.mixture``: that mixture alone, the row θ*'s in-domain sampling must
    beat), and the natural mixture with θ*'s in-domain sampling."""
    plan = ev.plan
    name = plan.config.search.mixture
    first = (
        (f"{name}, uniform in-domain", name)
        if name
        else ("θ* mixture, uniform in-domain", theta_mixture_file)
    )
    for k in range(plan.config.experiment.seeds):
        seed = plan.config.proxy.seed + 1 + k
        ev.select(first[0], "uniform", first[1], seed)
        ev.select("natural mixture, θ* in-domain", "quadmix", "natural", seed)


def _method_rows(ev: Evaluation) -> dict:
    """The rows of ``experiment.mixture_method``: each of its mixtures with uniform in-domain
    sampling (a domain short of its target is capped), trained as it asks."""
    plan, exp = ev.plan, ev.plan.config.experiment
    theta_star = files.join(plan.out_dir, "theta_star.yaml")
    domains = list(inputs.read_params(theta_star, "the experiment's θ*").domains)

    def train(runs: list[MixtureRun]) -> list[Contender]:
        """Trained now; each run records its realised shares in θ*'s domain order (BiMix's r)."""
        trained, specs = [], []
        for run in runs:
            capped = {"mixture_shortfall": "redistribute"}
            sel, c = ev.select(run.label, "uniform", run.mixture_file, compare=run.compare, **capped)
            total = max(sum(sel.tokens_after.values()), 1)
            shares = tuple(sel.tokens_after.get(d, 0) / total for d in domains)
            specs.append(RunSpec(c.run_id, "eval", mixture=shares))
            trained.append(c)
            ev.trained.add(c.run_id)
        ev.train(specs, trained)
        return trained

    stats = load_stats(ev.spark, plan.stats_path)
    context = MethodContext(
        spark=ev.spark,
        config=plan.on_pool,
        pool_table=plan.pool_path,
        out_dir=files.join(plan.out_dir, exp.mixture_method),
        domains=domains,
        pool_domains=[d for d in domains if d in stats.docs],
        train=train,
    )
    return MIXTURE_METHODS[exp.mixture_method][1](context)


def _fill(spark: SparkSession, runs_path: str, contenders: list[Contender], weights: dict) -> None:
    """Status, tokens, final losses and target of each contender from the runs table."""
    evals = load_runs(spark, runs_path).set_index("run_id")
    for c in contenders:
        row = evals.loc[c.run_id]
        c.status, c.n_train_tokens = row["status"], int(row["n_train_tokens"])
        if c.status == "ok":
            c.losses = final_losses(list(row["losses"]))
            c.target = combine(c.losses, weights)


def _selectors(config: PipelineConfig) -> list[tuple[str, str]]:
    """(row label, select.selector) of θ* and each baseline; the selectors' registry expands and
    checks ``experiment.baselines`` (``topk``: one per scorer)."""
    found = baselines(config.experiment.baselines, list(config.scorers))
    return [("θ*", "quadmix")] + [(s.label, s.spelled) for s in found]


def format_result(r: ExperimentResult) -> str:
    f, m = r.fit, r.fit["metrics"]
    lines = [
        f"experiment {r.key}: pool {r.pool_docs} documents; {r.proxy_ok} proxy runs ok, "
        f"{r.proxy_failed} failed; eval sets: {len(r.eval_sets)} ({sum(r.eval_sets.values())} tokens)",
        f"  surrogate {f['regressor']} on {f['runs']} runs ({f['cv']['k']}-fold CV ×{f['cv']['repeats']}): "
        f"Spearman {m['spearman']:.3f} ± {m['spearman_sd']:.3f}, MAE {m['mae']:.4f}; "
        f"features: {f['features']}",
        *format_cv_tables(f),
        *_format_rounds(r.rounds),
        f"  θ* predicted target {f['theta_star_predicted_loss']:.4f}; best proxy run "
        f"{f['best_observed_run']}: {f['best_observed_loss']:.4f}; θ*: {f['output_source']}",
        f"  {'selection':<32} {'target loss':>12} {'± sd':>7} {'seeds':>5} {'tokens':>9}  status",
    ]
    for row in r.rows:
        spread = f"{row.spread:>7.4f}" if row.seeds > 1 else f"{'':>7}"
        tail = f"{row.seeds:>5} {row.n_train_tokens:>9}  {row.status}"
        lines.append(f"  {row.label:<32} {row.target:>12.4f} {spread} {tail}")
    win = r.rows[0]
    if not np.isfinite(win.target):
        verdict = "no evaluation run finished (see the errors in the runs table)"
    elif win.label == "θ*":
        verdict = "θ* has the lowest target loss"
    else:
        verdict = f"{win.label} beats θ*"
    if r.mixture_method:
        lines += format_method(r.mixture_method)
    lines += _in_domain_verdict(r)
    if r.cost:
        lines.append(f"  {Cost.from_json(r.cost).line()}")
    lines.append(f"  → {verdict}; written to {r.output_dir} in {r.seconds}s")
    return "\n".join(lines)


def _format_rounds(rounds: list[dict]) -> list[str]:
    """One line per round of proxy runs (none for a single round)."""
    if len(rounds) < 2:
        return []
    return [
        f"  round {h['round']}: {h['new_runs']} runs ({h['runs']} in all), best so far "
        f"{h['best_observed']:.4f} ({h['best_run']}), CV Spearman {h['cv_spearman']:.3f}, "
        f"θ* predicted {h['theta_star_predicted']:.4f}"
        for h in rounds
    ]


def _in_domain_verdict(r: ExperimentResult) -> list[str]:
    """With ``search.mixture``: did θ*'s in-domain sampling beat the mixture with random documents?"""
    rows = {row.label: row for row in r.rows}
    alone = rows.get(f"{r.search_mixture}, uniform in-domain")
    star = rows.get("θ*")
    if alone is None or star is None or not (np.isfinite(alone.target) and np.isfinite(star.target)):
        return []
    gain = alone.target - star.target
    spread = f" (± {alone.spread:.4f} over seeds)" if alone.seeds > 1 else ""
    helped = "helped" if gain > alone.spread else "did not help beyond the seeds' spread"
    return [
        f"  in-domain sampling at {r.search_mixture}: θ* {star.target:.4f} vs random documents "
        f"{alone.target:.4f}{spread}: {helped}"
    ]


def _write(r: ExperimentResult, out_dir: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files.write_text(files.join(out_dir, "experiment.json"), json.dumps(asdict(r), indent=2, default=str))
    files.write_text(files.join(out_dir, "experiment.txt"), format_result(r) + "\n")
    rows = [row for row in r.rows if np.isfinite(row.target)]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    colors = ["tab:red" if row.label == "θ*" else "tab:gray" for row in rows]
    ax.barh(
        [row.label for row in rows][::-1],
        [row.target for row in rows][::-1],
        xerr=[row.spread for row in rows][::-1],
        color=colors[::-1],
    )
    lo = min(c.target for c in rows)
    hi = max(c.target for c in rows)
    ax.set_xlim(lo - 0.2 * (hi - lo + 1e-3), hi + 0.1 * (hi - lo + 1e-3))
    ax.set_xlabel("target loss (nats/token, lower is better)")
    ax.set_title(f"experiment {r.key}: proxies at {rows[0].n_train_tokens} tokens")
    fig.tight_layout()
    with files.open(files.join(out_dir, "comparison.png"), "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
