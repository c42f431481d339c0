"""The experiment's proxy runs, in rounds: train, fit the surrogate, put the next runs where it
predicts best, refit on every run so far.

Round 1 draws its θ from Algorithm 1; each later round takes the best candidates of the surrogate
fitted on all runs before it (``SearchResult.proposals``: fresh Algorithm-1 draws ranked inside the
runs' region), so the runs gather where the surrogate expects the optimum and the last fit is
sharpest there (CLIMB's and BO's rounds; shared/research/surrogates.md). Run ids name their round
(``<key>-p0007`` in round 1, ``<key>-r2-<key of its θ>-p0003`` after it), so a rerun trains only
what is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import PipelineConfig
from quadmix_spark.pipeline.fit_search import PoolSample, fit_and_search, run_targets
from quadmix_spark.proxy.datasets import build_proxy_datasets
from quadmix_spark.proxy.runs import RunSpec, done_run_ids, load_runs, run_proxies, runs_long
from quadmix_spark.proxy.vocab import ProxyVocab
from quadmix_spark.search.candidates import SearchResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundsPlan:
    """What every round needs: the pool (config, table), evaluation sets, θ's sampler, the proxy
    vocabulary, the runs per round, the search config, and, for realised features or a mixture
    composed with θ, the pool sample and the mixture's shares in θ's domain order."""

    on_pool: PipelineConfig
    key: str
    pool: DataFrame
    eval_sets: dict[str, np.ndarray]
    sampler: core.ParamSampler
    vocab: ProxyVocab | None
    rounds: tuple[int, ...]
    search: object  # the SearchConfig fit-search reads (the experiment's output folder)
    features: PoolSample | None
    mixture: np.ndarray | None


@dataclass
class Searched:
    """The last fit (fit-search's summary and search result), the runs, and one record per round."""

    fit: dict
    result: SearchResult
    run_ids: list[str]
    X: np.ndarray
    history: list[dict]
    ok: int
    failed: int


def round_ids(key: str, round_no: int, theta: np.ndarray) -> list[str]:
    """Round 1's ids follow from the config (Algorithm 1's draws); a later round's name its θ
    too, since they come from a fitted surrogate: another surrogate's proposals are other runs."""
    if round_no == 1:
        prefix = f"{key}-p"
    else:
        prefix = f"{key}-r{round_no}-{core.content_key(np.round(theta, 12).tolist(), 8)}-p"
    return [f"{prefix}{k:04d}" for k in range(len(theta))]


def search_in_rounds(spark: SparkSession, plan: RoundsPlan, seed: int) -> Searched:
    """Train every round's runs and fit after each; the last fit gives θ*."""
    run_ids: list[str] = []
    history: list[dict] = []
    proposals = None
    for r, n in enumerate(plan.rounds, start=1):
        theta = plan.sampler.sample(n, seed) if r == 1 else proposals[:n]
        ids = round_ids(plan.key, r, theta)
        train_proxies(spark, plan, theta, ids)
        run_ids += ids
        following = plan.rounds[r] if r < len(plan.rounds) else 0
        fitted = fit_runs(spark, plan, run_ids, following)
        proposals = fitted.result.proposals
        history.append(_record(r, n, fitted))
        log.info(
            "experiment round %d: %d runs, best target %.4f", r, len(run_ids), history[-1]["best_observed"]
        )
    fitted.history = history
    return fitted


def train_proxies(spark: SparkSession, plan: RoundsPlan, theta: np.ndarray, run_ids: list[str]) -> None:
    """K θ: datasets in one scan, one Spark task per run; nothing to do when all runs are ok."""
    proxy = plan.on_pool.proxy
    runs_path = plan.on_pool.table_path(proxy.runs_table)
    if set(run_ids) <= done_run_ids(spark, runs_path):
        return
    sampler = plan.sampler
    params = [core.QuadMixParams.from_vector(v, sampler.domains, sampler.scorers) for v in theta]
    data = build_proxy_datasets(spark, plan.on_pool, params, run_ids, mixture=plan.mixture)
    shares = data.domain_tokens / np.maximum(data.domain_tokens.sum(axis=1, keepdims=True), 1)
    specs = [
        RunSpec(r, "proxy", tuple(params[k].to_vector()), tuple(shares[k])) for k, r in enumerate(run_ids)
    ]
    docs = (
        spark.read.format("delta")
        .load(data.table)
        .where(F.col("run_id").isin(run_ids))
        .join(plan.pool.select("doc_key", "text"), "doc_key")
    )
    summary = run_proxies(spark, proxy, runs_path, specs, docs, plan.eval_sets, vocab=plan.vocab)
    log.info("proxy runs: %d ok, %d failed in %.1fs", summary.ok, len(summary.failed), summary.seconds)


def fit_runs(spark: SparkSession, plan: RoundsPlan, run_ids: list[str], propose: int) -> Searched:
    """fit-search on the ok runs among ``run_ids``, with ``propose`` candidates for the next round."""
    runs = load_runs(spark, plan.on_pool.table_path(plan.on_pool.proxy.runs_table))
    mine = runs[runs["run_id"].isin(run_ids)]
    ids, X, y = run_targets(runs_long(mine), plan.on_pool.targets.weights)
    fit, result = fit_and_search(ids, X, y, plan.sampler, plan.search, plan.features, propose=propose)
    ok = int((mine["status"] == "ok").sum())
    return Searched(fit, result, ids, X, [], ok, len(mine) - ok)


def _record(round_no: int, n: int, fitted: Searched) -> dict:
    fit = fitted.fit
    return {
        "round": round_no,
        "new_runs": n,
        "runs": fit["runs"],
        "best_observed": fit["best_observed_loss"],
        "best_run": fit["best_observed_run"],
        "regressor": fit["regressor"],
        "features": fit.get("features", "theta"),
        "cv_spearman": fit["metrics"]["spearman"],
        "theta_star_predicted": fit["theta_star_predicted_loss"],
    }


def plot_rounds(history: list[dict], path) -> None:
    """Best observed target so far, and θ*'s predicted target, after each round (PNG at ``path``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    runs = [h["runs"] for h in history]
    ax.plot(runs, [h["best_observed"] for h in history], "o-", label="best run so far (observed)")
    ax.plot(runs, [h["theta_star_predicted"] for h in history], "s--", label="θ* (predicted)")
    ax.set_xlabel("proxy runs trained")
    ax.set_ylabel("target loss (nats/token)")
    ax.set_title("search by rounds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
