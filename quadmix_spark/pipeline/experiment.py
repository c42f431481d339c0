"""The experiment: does θ* found from proxy runs beat the baselines at the same token budget?

Steps (each a job of its own elsewhere; here on one SparkSession, rerunnable):

1. pool: the annotated table minus the held-out slice (``targets``), written as a Delta table,
   and its stats;
2. evaluation sets: the per-domain held-out sets and the user's target sets, as token ids;
3. proxies: ``experiment.n_runs`` θ from Algorithm 1, their datasets in one scan, one proxy run
   per θ as a Spark task, results in the ``proxy_runs`` table;
4. fit + search: LightGBM on (θ, target loss), θ* = mean of the top-k of fresh candidates;
5. evaluation: fresh proxies trained at the same budget on the data selected by θ*, by uniform
   random selection, by the top-k of each single scorer and by the union of top-k sets
   (``experiment.baselines``), through ``quadmix select`` itself; then the two halves of θ*
   apart (``experiment.decompose``, several seeds each): θ*'s realised domain mixture with random
   documents inside each domain, and the pool's natural mixture with θ*'s in-domain sampling;
   and θ* composed with each mixture of ``experiment.mixtures``; and the rows of a mixture-level
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
import time
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig, validate
from quadmix_spark.pipeline import inputs
from quadmix_spark.pipeline.fit_search import (
    fit_and_search,
    format_cv_tables,
    make_sampler,
    pool_features,
    run_targets,
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
from quadmix_spark.proxy.datasets import build_proxy_datasets
from quadmix_spark.proxy.runs import RunSpec, done_run_ids, load_runs, pool_vocab, run_proxies, runs_long
from quadmix_spark.proxy.vocab import ProxyVocab, parse_vocab_spec
from quadmix_spark.spark import files, tables
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
    exp, proxy = config.experiment, config.proxy
    shape = [
        config.table_path(config.select.input_table),
        annotated_version,
        asdict(config.targets),
        exp.seed,
        proxy.token_budget,
        proxy.overshoot,
        proxy.seed,
        proxy.trainer,
        proxy.ngram_order if proxy.trainer == "ngram" else asdict(proxy.tinylm),
        proxy.n_checkpoints,
        config.search.template_params,
        config.search.ranges,
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
    stats_version = tables.version(spark, stats_path)
    if stats_version is None or load_stats(spark, stats_path).annotated_version != latest:
        run_stats(spark, stats_cfg)
    return heldout, pool_path, stats_path


def run_experiment(spark: SparkSession, config: PipelineConfig) -> ExperimentResult:
    started = time.time()
    exp, proxy = config.experiment, config.proxy
    source = config.table_path(config.select.input_table)
    annotated_version = tables.version(spark, source)
    if annotated_version is None:
        raise ConfigError(f"select.input_table: no Delta table at {source} (run quadmix annotate first)")
    # Every column the config names, against the table's schema (no job over the data).
    annotated = spark.read.format("delta").option("versionAsOf", annotated_version).load(source)
    check_columns(annotated, config, source)
    check_heldout_filter(annotated, config.targets, source)
    validate(exp, "experiment")  # n_runs, seeds, ... when the config was built in code
    check_mixtures(config)
    _selectors(config)  # experiment.baselines, before any job
    if exp.mixture_method is not None:
        MIXTURE_METHODS[exp.mixture_method][0](config)  # e.g. bimix's VNE model, before any job
    key = experiment_key(config, annotated_version)
    out_dir = files.join(exp.output_dir, key)
    files.makedirs(out_dir)
    log.info("experiment %s: %d proxy runs, budget %d tokens", key, exp.n_runs, proxy.token_budget)

    heldout, pool_path, stats_path = _prepare_pool(spark, config, annotated_version)
    on_pool = _derive(
        config, select={"input_table": pool_path, "stats_table": stats_path, "stats_version": None}
    )
    eval_sets = {**heldout_sets(heldout, config, exp.seed), **target_sets(spark, config.targets)}
    if not eval_sets:
        raise ConfigError("targets: no evaluation sets (set heldout_fraction > 0 or add target_sets)")
    pool = spark.read.format("delta").load(pool_path)

    sampler = make_sampler(config.search)
    if not isinstance(sampler, core.ParamSampler):
        raise ConfigError("search.mode: the experiment searches θ (quadmix mode)")
    params = [
        core.QuadMixParams.from_vector(v, sampler.domains, sampler.scorers)
        for v in sampler.sample(exp.n_runs, exp.seed)
    ]
    run_ids = [f"{key}-p{k:04d}" for k in range(exp.n_runs)]
    runs_path = config.table_path(proxy.runs_table)
    vocab = _proxy_vocab(config, pool)
    _train_proxies(spark, on_pool, pool, params, run_ids, eval_sets, vocab)
    runs = load_runs(spark, runs_path)
    mine = runs[runs["run_id"].isin(run_ids)]
    ids, X, y = run_targets(runs_long(mine), config.targets.weights)
    search_cfg = _derive(
        config, search={"output_dir": out_dir, "output_params": files.join(out_dir, "theta_star.yaml")}
    ).search
    pool_at = pool_features(on_pool, spark) if config.search.features != "theta" else None
    fit, result = fit_and_search(ids, X, y, sampler, search_cfg, pool_at)
    write_theta_star(result, search_cfg)
    if fit["output_source"] == "searched candidate":  # θ* is new: the best run's θ gets a row of its own
        best = core.QuadMixParams.from_vector(
            X[ids.index(fit["best_observed_run"])], sampler.domains, sampler.scorers
        )
        with files.local_file(files.join(out_dir, "best_run.yaml")) as path:
            core.save_params(best, path)

    contenders, method_info = _evaluate(spark, config, on_pool, key, out_dir, eval_sets, pool_path, vocab)
    result_ = ExperimentResult(
        key=key,
        pool_docs=sum(load_stats(spark, stats_path).docs.values()),  # the pool's stats: no scan
        eval_sets={k: int(v.size) for k, v in eval_sets.items()},
        proxy_ok=int((mine["status"] == "ok").sum()),
        proxy_failed=int((mine["status"] != "ok").sum()),
        fit=fit,
        contenders=contenders,
        seconds=round(time.time() - started, 1),
        output_dir=out_dir,
        mixture_method=method_info,
    )
    _write(result_, out_dir)
    return result_


def _train_proxies(
    spark: SparkSession,
    on_pool: PipelineConfig,
    pool: DataFrame,
    params: list[core.QuadMixParams],
    run_ids: list[str],
    eval_sets: dict[str, np.ndarray],
    vocab: ProxyVocab | None,
) -> None:
    """K θ: datasets in one scan, one Spark task per run; nothing to do when all runs are ok."""
    proxy = on_pool.proxy
    runs_path = on_pool.table_path(proxy.runs_table)
    if set(run_ids) <= done_run_ids(spark, runs_path):
        return
    data = build_proxy_datasets(spark, on_pool, params, run_ids)
    shares = data.domain_tokens / np.maximum(data.domain_tokens.sum(axis=1, keepdims=True), 1)
    specs = [
        RunSpec(r, "proxy", tuple(params[k].to_vector()), tuple(shares[k])) for k, r in enumerate(run_ids)
    ]
    docs = (
        spark.read.format("delta")
        .load(data.table)
        .where(F.col("run_id").isin(run_ids))
        .join(pool.select("doc_key", "text"), "doc_key")
    )
    summary = run_proxies(spark, proxy, runs_path, specs, docs, eval_sets, vocab=vocab)
    log.info("proxy runs: %d ok, %d failed in %.1fs", summary.ok, len(summary.failed), summary.seconds)


def _proxy_vocab(config: PipelineConfig, pool: DataFrame) -> ProxyVocab | None:
    """The pool's ``top:N`` proxy vocabulary, built once, so that every proxy of the experiment (the
    K runs, θ*, the baselines) measures its losses under one mapping; None for a full vocabulary."""
    proxy = config.proxy
    if proxy.trainer != "tinylm":
        return None
    n_top = parse_vocab_spec(proxy.tinylm.vocab, "proxy.tinylm.vocab")
    return None if n_top is None else pool_vocab(pool, n_top)


def _evaluate(
    spark: SparkSession,
    config: PipelineConfig,
    on_pool: PipelineConfig,
    key: str,
    out_dir: str,
    eval_sets: dict[str, np.ndarray],
    pool_path: str,
    vocab: ProxyVocab | None,
) -> tuple[list[Contender], dict | None]:
    """θ*, the baselines, θ*'s two halves apart, θ* with each configured mixture and the mixture
    method's rows, selected by ``quadmix select`` at the proxies' budget, then trained."""
    exp, proxy = config.experiment, config.proxy
    runs_path = config.table_path(proxy.runs_table)
    contenders = []

    def select(
        label: str,
        selector: str,
        mixture: str | None = None,
        seed: int = proxy.seed,
        compare: bool = True,
        **overrides,
    ):
        cfg = _derive(
            on_pool,
            select={
                "selector": selector,
                "params": files.join(out_dir, "theta_star.yaml"),
                "token_budget": int(round(proxy.token_budget * (1 + proxy.overshoot))),
                "mixture": mixture,
                "seed": seed,
                "rank_sample_size": proxy.rank_sample_size,
                "output_table": exp.selected_table,
                "output_dir": files.join(out_dir, "selections"),
                "shard_formats": [],
                "report": False,
                "allow_unused_domains": True,
                **overrides,
            },
        )
        sel = run_select(spark, cfg)
        contender = Contender(label, selector, f"{key}-eval-{sel.selection_id}", mixture=mixture, seed=seed)
        if compare:
            contenders.append(contender)
        return sel, contender

    def documents():
        selected = spark.read.format("delta").load(config.table_path(exp.selected_table))
        run_id = F.concat(F.lit(f"{key}-eval-"), F.col("selection_id")).alias("run_id")
        return selected.select(run_id, "doc_key", "copies", "text")

    best_run = files.join(out_dir, "best_run.yaml")
    if files.is_file(best_run):
        select("best proxy run", "quadmix", params=best_run)
    for label, selector in _selectors(config):
        sel, _ = select(label, selector)
        if selector == "quadmix":  # θ*'s realised domain mixture, for the decomposition
            shares = {d: sel.tokens_after.get(d, 0) for d in sel.tokens_before}
            theta_mixture = core.Mixture.natural(
                shares, method="theta_star_realised", selection=sel.selection_id
            )
            theta_mixture_file = files.join(out_dir, "theta_star_mixture.yaml")
            with files.local_file(theta_mixture_file) as path:
                theta_mixture.to_file(path)
    if exp.decompose:
        for k in range(exp.seeds):
            seed = proxy.seed + 1 + k
            select("θ* mixture, uniform in-domain", "uniform", theta_mixture_file, seed)
            select("natural mixture, θ* in-domain", "quadmix", "natural", seed)
    for mixture in exp.mixtures:
        name, source = mixture_source(spark, config, mixture, out_dir)
        select(f"θ* ∘ {name}", "quadmix", source)
    method_info, trained_ids = None, set()
    if exp.mixture_method is not None:
        theta_star = files.join(out_dir, "theta_star.yaml")
        domains = list(inputs.read_params(theta_star, "the experiment's θ*").domains)

        def train(runs: list[MixtureRun]) -> list[Contender]:
            """Each mixture with uniform in-domain sampling (a domain short of its target is capped),
            trained now; the run records its realised shares in θ*'s domain order (BiMix's r)."""
            trained, specs = [], []
            for run in runs:
                capped = {"mixture_shortfall": "redistribute"}
                sel, c = select(run.label, "uniform", run.mixture_file, compare=run.compare, **capped)
                total = max(sum(sel.tokens_after.values()), 1)
                shares = tuple(sel.tokens_after.get(d, 0) / total for d in domains)
                specs.append(RunSpec(c.run_id, "eval", mixture=shares))
                trained.append(c)
                trained_ids.add(c.run_id)
            run_proxies(spark, proxy, runs_path, specs, documents(), eval_sets, vocab=vocab)
            _fill(spark, runs_path, trained, config.targets.weights)
            return trained

        stats = load_stats(spark, on_pool.table_path(on_pool.select.stats_table))
        context = MethodContext(
            spark=spark,
            config=on_pool,
            pool_table=pool_path,
            out_dir=files.join(out_dir, exp.mixture_method),
            domains=domains,
            pool_domains=[d for d in domains if d in stats.docs],
            train=train,
        )
        method_info = MIXTURE_METHODS[exp.mixture_method][1](context)
    specs = [RunSpec(c.run_id, "eval") for c in contenders if c.run_id not in trained_ids]
    run_proxies(spark, proxy, runs_path, specs, documents(), eval_sets, vocab=vocab)
    _fill(spark, runs_path, [c for c in contenders if c.run_id not in trained_ids], config.targets.weights)
    return contenders, method_info


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
    lines.append(f"  → {verdict}; written to {r.output_dir} in {r.seconds}s")
    return "\n".join(lines)


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
