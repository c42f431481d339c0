"""The reweight job: domain streams → TANDEM / DoReMi / Uniform runs → mixture files → α plot.

The methods are the registered ones (:data:`quadmix_spark.mixing.reweighters.REWEIGHTERS`,
``reweight.methods``), resolved on the driver before any Spark work. The job reads as plan
(:func:`plan_reweight`: streams, checks, vocabulary, run specs) → compute
(:func:`~quadmix_spark.pipeline.reweight_runs.run_reweight_runs`) → write (mixture files, plot)
→ publish (``reweight_summary.json``):

1. streams: the ``domain_streams`` table (:mod:`.streams`), written unless it already holds the
   configured streams;
2. one proxy vocabulary (``proxy.tinylm.vocab``: ``top:N`` over the training streams), built once
   on the driver, written beside the results (``vocab.json``) and shared by every run, so their
   losses are comparable;
3. runs (:mod:`.reweight_runs`): one Spark task per (method, hyperparameter set, seed), the tinylm
   shape from ``proxy.tinylm``, results MERGEd into ``reweight.runs_table``;
4. mixture files per (method, hyperparameter set), each the mean over the ok seeds and computed
   from the runs' α histories: ``mixture_<label>_avg.yaml`` (each run's time-averaged α) and
   ``mixture_<label>_last.yaml`` (each run's last α), and ``mixture_<label>.yaml``, the one
   ``reweight.final.<method>`` picks (``avg`` by default): the method's mixture, which the
   ``tandem`` / ``doremi`` sources and ``experiment.mixtures`` read; provenance says which (and,
   for DoReMi run in rounds, every round's ᾱ: the mixture is the last round's);
5. ``alpha.png``: α over episodes (TANDEM) / steps (DoReMi) per domain, one panel per method;
6. with ``reweight.eval_tokens`` > 0, fresh proxies trained on each mixture's stream drawn from the
   domain streams (data-restricted domains repeat) and scored on the validation streams: the
   target loss (mean over the validation streams) side by side.

Run ids derive from everything that shapes a run (method, seed, hyperparameters, streams, tinylm
shape, vocabulary), so a rerun trains only what is missing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession

from quadmix_spark import __version__, core
from quadmix_spark.config import ConfigError, PipelineConfig, validate
from quadmix_spark.mixing.reweighters import REWEIGHTERS
from quadmix_spark.pipeline.reweight_runs import ReweightSpec, RunSettings, load_runs, run_reweight_runs
from quadmix_spark.pipeline.streams import StreamsSummary, load_streams, run_streams
from quadmix_spark.proxy.ngram import CL100K_N_VOCAB
from quadmix_spark.proxy.vocab import ProxyVocab, check_comparable, parse_vocab_spec
from quadmix_spark.spark import files
from quadmix_spark.spark.cost import Cost, CostMeter

log = logging.getLogger(__name__)

SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "d_ff", "context", "device", "threads")
PLOT_NAME = "alpha.png"
SUMMARY_NAME = "reweight_summary.json"


@dataclass
class MethodResult:
    method: str
    label: str  # method, or method_<k> for the k-th hyperparameter set (k ≥ 1)
    params: dict[str, Any]
    run_ids: list[str]
    ok: int
    mixture: dict[str, float] | None = None
    mixture_file: str | None = None
    final: str = "avg"  # which of ``finals`` is ``mixture_file`` (reweight.final)
    finals: dict[str, str] = field(default_factory=dict)  # avg | last → its mixture file
    epochs: dict[str, float] = field(default_factory=dict)  # mean over seeds
    target: float = float("nan")  # fresh proxies: mean target loss over seeds
    spread: float = 0.0
    eval_ok: int = 0
    rounds: list[dict[str, float]] = field(default_factory=list)  # each round's ᾱ, mean over seeds


@dataclass
class ReweightResult:
    streams: StreamsSummary
    vocab_key: str
    methods: list[MethodResult]
    trained: int
    failed: dict[str, str]
    skipped_failed: dict[str, str]
    output_dir: str
    plot: str | None
    seconds: float
    cost: dict | None = None  # quadmix_spark.spark.cost: wall, driver and executor seconds


@dataclass(frozen=True)
class MethodGroup:
    """One (method, hyperparameter set) and its runs, one per seed."""

    method: str
    label: str  # method, or method_<k> for the k-th hyperparameter set (k ≥ 1)
    params: dict[str, Any]
    specs: list[ReweightSpec]


@dataclass(frozen=True)
class ReweightPlan:
    """Everything the runs are, fixed on the driver before any training."""

    streams: StreamsSummary
    train: dict[str, np.ndarray]  # domain → token ids
    val: dict[str, np.ndarray]  # validation set → token ids
    vocab_key: str
    runs_path: str
    out: str
    groups: list[MethodGroup]
    settings: RunSettings  # streams key, tinylm shape, method classes, vocabulary, tasks

    def specs(self) -> list[ReweightSpec]:
        return [s for g in self.groups for s in g.specs]


def build_vocab(config: PipelineConfig, train: dict[str, np.ndarray]) -> ProxyVocab | None:
    """The proxy vocabulary of ``proxy.tinylm.vocab`` over the training streams (None for full)."""
    try:
        n = parse_vocab_spec(config.proxy.tinylm.vocab, "proxy.tinylm.vocab")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return None if n is None else ProxyVocab.from_streams(train.values(), n, CL100K_N_VOCAB)


def method_classes(config: PipelineConfig, methods: Sequence[str] | None = None) -> dict[str, type]:
    """name → registered class of ``methods`` (default ``reweight.methods``); ConfigError if unknown."""
    try:
        return {m: REWEIGHTERS.get(m, "reweight.methods") for m in (methods or config.reweight.methods)}
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _check_streams(train: Mapping[str, np.ndarray], val: Mapping, classes: Mapping[str, type]) -> None:
    if len(train) < 2:
        raise ConfigError(f"reweight.streams: {len(train)} domain(s) in the streams; reweighting needs 2")
    need_val = [m for m, cls in classes.items() if cls.uses_val]
    if need_val and not val:
        raise ConfigError(
            f"targets: {', '.join(need_val)} need(s) validation streams: set targets.heldout_fraction > 0 "
            "or targets.target_sets"
        )
    short = [d for d, s in train.items() if s.size < 2]
    if short:
        raise ConfigError(f"reweight.streams: domain(s) {short} have fewer than 2 tokens")


def _specs(config: PipelineConfig, classes: Mapping[str, type], streams_key: str, vocab_key: str):
    cfg, tiny = config.reweight, config.proxy.tinylm
    shape = {k: getattr(tiny, k) for k in SHAPE_KEYS}
    groups: list[MethodGroup] = []
    for method, cls in classes.items():
        sets = cfg.params.get(method) or [{}]
        for k, params in enumerate(sets):
            label = method if k == 0 else f"{method}_{k}"
            identity = cls.identity_params(params) if hasattr(cls, "identity_params") else params
            specs = []
            for seed in cfg.seeds:
                key = core.content_key([method, seed, identity, streams_key, shape, vocab_key], 12)
                specs.append(ReweightSpec(f"{method}-{key}", "reweight", method, int(seed), dict(params)))
            groups.append(MethodGroup(method, label, dict(params), specs))
    return groups


def _eval_specs(config: PipelineConfig, mixture: dict[str, float], streams_key: str, vocab_key: str):
    tiny = config.proxy.tinylm
    proxy = {k: v for k, v in asdict(tiny).items() if k not in ("vocab", "seed")}
    params = {"mixture": mixture, "tokens": config.reweight.eval_tokens}
    return [
        ReweightSpec(
            "eval-" + core.content_key([params, seed, streams_key, proxy, vocab_key], 12),
            "eval",
            "tinylm",
            int(seed),
            params,
        )
        for seed in (config.reweight.eval_seeds or config.reweight.seeds)
    ]


def plan_reweight(
    spark: SparkSession, config: PipelineConfig, methods: Sequence[str] | None = None
) -> ReweightPlan:
    """Plan: the methods' classes, the streams (written unless current), checks, the vocabulary
    (written beside the results) and every run's spec."""
    cfg = config.reweight
    validate(cfg, "reweight")  # reweight.final, reweight.params, ... when the config was built in code
    classes = method_classes(config, methods)
    streams = run_streams(spark, config)
    train, val, _, streams_key = load_streams(spark, config.table_path(cfg.streams.output_table))
    _check_streams(train, val, classes)
    files.makedirs(cfg.output_dir)
    vocab = build_vocab(config, train)
    vocab_key = vocab.key() if vocab is not None else f"full:{CL100K_N_VOCAB}"
    if vocab is not None:
        files.write_text(files.join(cfg.output_dir, "vocab.json"), json.dumps(vocab.to_dict()))
        coverage = vocab.coverage(np.concatenate(list(train.values())))
        log.info(
            "reweight: proxy vocabulary %s covers %.1f%% of the training tokens", vocab_key, 100 * coverage
        )
    tiny = config.proxy.tinylm
    settings = RunSettings(
        streams_key,
        shape={k: getattr(tiny, k) for k in SHAPE_KEYS},
        proxy={k: v for k, v in asdict(tiny).items() if k not in ("vocab", "seed")},
        methods=classes,
        vocab=vocab,
        retry_failed=cfg.retry_failed,
        tasks=cfg.tasks,
    )
    groups = _specs(config, classes, streams_key, vocab_key)
    runs_path = config.table_path(cfg.runs_table)
    return ReweightPlan(streams, train, val, vocab_key, runs_path, cfg.output_dir, groups, settings)


FINALS = ("avg", "last")


def final_alphas(alpha_histories: Sequence[Sequence[Sequence[float]]]) -> dict[str, np.ndarray]:
    """avg | last → α: the mean over runs of each run's time-averaged α / of its last α."""
    runs = [np.array([list(a) for a in alpha], dtype=np.float64) for alpha in alpha_histories]
    return {
        "avg": np.mean([a.mean(axis=0) for a in runs], axis=0),
        "last": np.mean([a[-1] for a in runs], axis=0),
    }


def round_alphas(per_run: Sequence[Any], domains: Sequence[str]) -> list[dict[str, float]]:
    """Each round's ᾱ (runs table ``round_alphas``), mean over runs; [] for a method without rounds."""
    runs = [np.array([list(a) for a in r], dtype=np.float64) for r in per_run if r is not None and len(r)]
    if not runs:
        return []
    return [dict(zip(domains, a.tolist(), strict=True)) for a in np.mean(runs, axis=0)]


def _write_mixture(out: str, result: MethodResult, runs, provenance: dict[str, Any]) -> None:
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return
    domains = list(ok["domains"].iloc[0])
    result.rounds = round_alphas(list(ok["round_alphas"]), domains)
    if result.rounds:  # the mixture is the last round's; the earlier ones say where it came from
        provenance = {**provenance, "round_alphas": result.rounds}
    common = {
        "method": result.method,
        "params": json.loads(ok["params"].iloc[0]),
        "seeds": sorted(int(s) for s in ok["seed"]),
        "runs": sorted(ok["run_id"]),
        **provenance,
    }
    mixtures = {
        final: core.Mixture.from_shares(
            dict(zip(domains, alpha.tolist(), strict=True)), {**common, "final": final}
        )
        for final, alpha in final_alphas(list(ok["alpha"])).items()
    }
    for final, mixture in mixtures.items():
        result.finals[final] = _write_file(out, f"mixture_{result.label}_{final}.yaml", mixture)
    chosen = mixtures[result.final]
    result.mixture = dict(chosen.shares)
    result.mixture_file = _write_file(out, f"mixture_{result.label}.yaml", chosen)
    epochs = [dict(e) for e in ok["epochs"]]
    result.epochs = {d: float(np.mean([e.get(d, 0.0) for e in epochs])) for d in domains}


def _write_file(out: str, name: str, mixture: core.Mixture) -> str:
    path = files.join(out, name)
    with files.local_file(path) as local:
        mixture.to_file(local)
    return path


def _log_runs(label: str, runs) -> None:
    for _, run in runs[runs["status"] == "ok"].iterrows():
        log.info(
            "reweight: %s seed %d (%s): epochs per domain %s; mixture %s",
            label,
            int(run["seed"]),
            run["run_id"],
            ", ".join(f"{d} {e:.2f}" for d, e in sorted(dict(run["epochs"]).items())),
            ", ".join(f"{d} {m:.3f}" for d, m in zip(run["domains"], run["mixture"], strict=True)),
        )


def write_mixtures(
    spark: SparkSession, plan: ReweightPlan, finals: Mapping[str, str] | None = None
) -> tuple[list[MethodResult], dict[str, Any]]:
    """Write: the mixture files of each (method, hyperparameter set), means over its ok seeds;
    ``finals``: method → ``avg`` | ``last``, the one that is ``mixture_<label>.yaml`` (default avg).

    Returns the results and each label's runs (pandas) for the plot.
    """
    provenance = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": __version__,
        "vocab_key": plan.vocab_key,
        "inputs": {
            "streams": plan.streams.table,
            "streams_version": plan.streams.version,
            "streams_key": plan.settings.streams_key,
            "runs": plan.runs_path,
            "tinylm": dict(plan.settings.shape),
        },
    }
    results, by_label = [], {}
    all_runs = load_runs(spark, plan.runs_path, [s.run_id for s in plan.specs()])
    for g in plan.groups:
        runs = all_runs[all_runs["run_id"].isin([s.run_id for s in g.specs])]
        res = MethodResult(
            g.method, g.label, g.params, [s.run_id for s in g.specs], int((runs["status"] == "ok").sum())
        )
        res.final = (finals or {}).get(g.method, "avg")
        _write_mixture(plan.out, res, runs, provenance)
        _log_runs(g.label, runs)
        results.append(res)
        by_label[g.label] = runs
    return results, by_label


def plot_alpha(
    runs_by_label: dict[str, Any], path: Path, units: Mapping[str, str] | None = None
) -> Path | None:
    """α per domain over episodes / steps, one panel per method (first seed bold, others faint).

    ``units``: method → what one of its α records is (the classes' ``record_unit``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {k: v[v["status"] == "ok"] for k, v in runs_by_label.items()}
    panels = {k: v for k, v in panels.items() if not v.empty}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (label, runs) in zip(axes[0], panels.items(), strict=True):
        domains = list(runs["domains"].iloc[0])
        colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(domains), 2)))
        for i, (_, run) in enumerate(runs.sort_values("seed").iterrows()):
            alpha = np.array([list(a) for a in run["alpha"]], dtype=np.float64)
            x = np.arange(1, len(alpha) + 1)
            for j, d in enumerate(domains):
                ax.plot(
                    x,
                    alpha[:, j],
                    color=colors[j],
                    lw=1.6 if i == 0 else 0.6,
                    alpha=1.0 if i == 0 else 0.4,
                    label=d if i == 0 else None,
                    marker="o" if len(alpha) == 1 else None,
                )
        ax.set_xlabel((units or {}).get(str(runs["method"].iloc[0]), "record"))
        ax.set_ylabel("α (domain weight)")
        ax.set_title(label)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plot(plan: ReweightPlan, runs_by_label: dict[str, Any]) -> str | None:
    """Write: ``alpha.png`` beside the mixture files (None when no run is ok)."""
    plot = files.join(plan.out, PLOT_NAME)
    units = {m: cls.record_unit for m, cls in plan.settings.methods.items()}
    with files.local_file(plot) as local:  # matplotlib writes to a local path
        return plot if plot_alpha(runs_by_label, local, units) is not None else None


def run_reweight(
    spark: SparkSession, config: PipelineConfig, methods: Sequence[str] | None = None
) -> ReweightResult:
    """Streams → runs → mixture files → α plot (→ fresh-proxy evaluation); see the module docstring."""
    started = time.time()
    with CostMeter(spark, "reweight") as meter:
        plan = plan_reweight(spark, config, methods)
        summary = run_reweight_runs(spark, plan.runs_path, plan.specs(), plan.train, plan.val, plan.settings)
        results, by_label = write_mixtures(spark, plan, config.reweight.final)
        plot = write_plot(plan, by_label)
        failed, trained = dict(summary.failed), len(summary.trained)
        if config.reweight.eval_tokens > 0:
            evaluated = _evaluate(spark, config, plan, results)
            failed |= evaluated.failed
            trained += len(evaluated.trained)
    seconds, skipped = round(time.time() - started, 1), summary.skipped_failed
    result = ReweightResult(
        plan.streams,
        plan.vocab_key,
        results,
        trained,
        failed,
        skipped,
        plan.out,
        plot,
        seconds,
        meter.cost.to_json(),
    )
    files.write_text(files.join(plan.out, SUMMARY_NAME), json.dumps(asdict(result), indent=2, default=str))
    return result


def _evaluate(spark: SparkSession, config: PipelineConfig, plan: ReweightPlan, results: list[MethodResult]):
    """Fresh proxies on each method's mixture; fills ``target``/``spread`` of ``results``."""
    key, vocab_key = plan.settings.streams_key, plan.vocab_key
    specs = {r.label: _eval_specs(config, r.mixture, key, vocab_key) for r in results if r.mixture}
    flat = [s for v in specs.values() for s in v]
    summary = run_reweight_runs(spark, plan.runs_path, flat, plan.train, plan.val, plan.settings)
    runs = load_runs(spark, plan.runs_path, [s.run_id for s in flat]).set_index("run_id")
    ok = runs[runs["status"] == "ok"]
    if not ok.empty:
        check_comparable(dict(zip(ok.index, ok["vocab_key"], strict=True)))
    for r in results:
        if r.label not in specs:
            continue
        targets = [float(ok.loc[s.run_id, "target_loss"]) for s in specs[r.label] if s.run_id in ok.index]
        r.eval_ok = len(targets)
        if targets:
            r.target = float(np.mean(targets))
            r.spread = float(np.std(targets, ddof=1)) if len(targets) > 1 else 0.0
        for s in specs[r.label]:
            if s.run_id in ok.index:
                epochs = dict(ok.loc[s.run_id, "epochs"])
                log.info(
                    "reweight: fresh proxy on %s's mixture, seed %d: target %.4f; epochs per domain %s",
                    r.label,
                    s.seed,
                    float(ok.loc[s.run_id, "target_loss"]),
                    ", ".join(f"{d} {e:.2f}" for d, e in sorted(epochs.items())),
                )
    return summary


def format_result(r: ReweightResult) -> str:
    s = r.streams
    capped = [d for d, p in s.domains.items() if p.capped]
    lines = [
        f"reweight: streams {s.streams_key} ({len(s.domains)} domains, {s.tokens_per_domain} tokens each"
        + (f"; data-restricted: {', '.join(capped)}" if capped else "")
        + f"), vocabulary {r.vocab_key}; {r.trained} runs trained, {len(r.failed)} failed",
    ]
    for run_id, error in {**r.failed, **r.skipped_failed}.items():
        first = (error or "").splitlines()[0] if error else ""
        seen = "earlier, not retried" if run_id in r.skipped_failed else "now"
        lines.append(f"  FAILED ({seen}) {run_id}: {first}")
    domains = list(s.domains)
    evaluated = any(m.eval_ok for m in r.methods)
    head = f"  {'domain':<22}" + "".join(f"{m.label:>10}" for m in r.methods)
    lines.append(head)
    for d in domains:
        row = f"  {d:<22}" + "".join(
            f"{m.mixture.get(d, float('nan')):>10.4f}" if m.mixture else f"{'-':>10}" for m in r.methods
        )
        mark = (
            f"  (capped: {s.domains[d].epochs:.2f} epochs @ {s.tokens_per_domain})"
            if s.domains[d].capped
            else ""
        )
        lines.append(row + mark)
    if evaluated:
        lines.append(
            f"  {'target loss':<22}"
            + "".join(f"{m.target:>10.4f}" if m.eval_ok else f"{'-':>10}" for m in r.methods)
        )
        ranked = sorted((m for m in r.methods if m.eval_ok), key=lambda m: m.target)
        lines.append(
            "  → fresh proxies: "
            + " < ".join(
                f"{m.label} {m.target:.4f}" + (f" ± {m.spread:.4f}" if m.eval_ok > 1 else "") for m in ranked
            )
        )
    for m in r.methods:
        if len(m.rounds) > 1:
            lines.append(
                f"  {m.label} ᾱ by round (reference of round k: round k − 1's ᾱ): "
                + "; ".join(
                    f"{k} " + ", ".join(f"{d} {a:.4f}" for d, a in alpha.items())
                    for k, alpha in enumerate(m.rounds, 1)
                )
            )
    written = [f"{m.mixture_file} ({m.final} α)" for m in r.methods if m.mixture_file]
    lines.append(
        f"  wrote {', '.join(written)}, each with its _avg and _last beside it; "
        f"plot {r.plot}; in {r.seconds}s"
    )
    if r.cost:
        lines.append(f"  {Cost.from_json(r.cost).line()}")
    return "\n".join(lines)
