"""Mixtures the experiment composes θ* with, by name: a registry of mixture-level methods.

``experiment.mixtures`` names each mixture: a built-in (``natural``, ``uniform``), a method of
this registry that makes its mixture on the experiment's own data (``tandem``, ``doremi``), or a
mixture file. A method is ``fn(spark, config, out_dir) → the select.mixture value`` (a built-in
name or a file it wrote).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import SparkSession

from quadmix_spark.config import PipelineConfig

MixtureMethod = Callable[[SparkSession, PipelineConfig, Path], str]


def _builtin(name: str) -> MixtureMethod:
    return lambda spark, config, out_dir: name


def _reweight(method: str) -> MixtureMethod:
    """The method's mixture from ``quadmix reweight`` on the experiment's pool and held-out sets."""

    def make(spark: SparkSession, config: PipelineConfig, out_dir: Path) -> str:
        from quadmix_spark.pipeline.reweight import run_reweight

        cfg = copy.deepcopy(config)
        # The annotated table split with experiment.seed: the streams' training documents are the
        # pool, their validation streams the experiment's held-out sets.
        cfg.reweight.streams.input_table = config.select.input_table
        cfg.reweight.output_dir = str(out_dir / "reweight")
        cfg.reweight.eval_tokens = 0  # the experiment evaluates through select
        result = run_reweight(spark, cfg, [method])
        files = [m.mixture_file for m in result.methods if m.method == method and m.mixture_file]
        if not files:
            errors = "; ".join(e.splitlines()[0] for e in {**result.failed, **result.skipped_failed}.values())
            raise RuntimeError(f"experiment.mixtures: {method} produced no mixture ({errors})")
        return files[0]

    return make


#: name → method; other mixture-level methods register here.
MIXTURE_METHODS: dict[str, MixtureMethod] = {
    "natural": _builtin("natural"),
    # Equal shares: also what the Uniform reweighting baseline gives (α = 1/M, nothing trained).
    "uniform": _builtin("uniform"),
    "tandem": _reweight("tandem"),
    "doremi": _reweight("doremi"),
}


def mixture_source(spark: SparkSession, config: PipelineConfig, name: str, out_dir: Path) -> tuple[str, str]:
    """(row label, select.mixture value) of one ``experiment.mixtures`` entry."""
    if name in MIXTURE_METHODS:
        return name, MIXTURE_METHODS[name](spark, config, out_dir)
    return Path(name).stem, name
