"""The ``external`` trainer: proxy runs trained elsewhere, imported into the ``proxy_runs`` table.

Runs come in fit-search's long format (CSV, Parquet or Delta at ``search.runs_path``; schema in
docs/config.md): one row per (run, eval set, step) with the run's θ, or in RegMix mode its
mixture (a ``theta`` or ``mixture`` column). Which of the two the vectors are is checked against
``search.mode`` before anything is written: mixtures (≥ 0, summing to 1) imported in QuaDMix mode
would be stored as θ, and fit-search in RegMix mode would then find no run to fit.

Each run becomes one row of the runs table with ``kind = 'external'``, MERGEd by ``run_id`` like
every other run, so an import can be repeated and mixed with runs trained here. A run already
recorded ok is never changed silently: other losses or another vector for it are refused unless
``replace`` (``quadmix import-runs --replace``); the summary counts what the MERGE inserted,
updated and left unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig
from quadmix_spark.pipeline import inputs
from quadmix_spark.pipeline.fit_search import load_runs
from quadmix_spark.proxy.runs import RunSpec, record_runs
from quadmix_spark.spark import files, tables


@dataclass(frozen=True)
class ImportSummary:
    """What one import did: runs read, and how many the MERGE inserted, updated, left unchanged."""

    runs: int
    inserted: int
    updated: int
    unchanged: int
    vector: str  # "theta" or "mixture": what the runs carry
    source: str
    table: str


def read_runs_file(config: PipelineConfig, spark: SparkSession | None = None) -> pd.DataFrame | None:
    """The runs at ``search.runs_path``, their vectors checked against ``search.mode``; None when
    reading them needs Spark and ``spark`` is None (a Delta table, a URI)."""
    cfg = config.search
    if spark is None and (cfg.runs_format == "delta" or not files.is_local_path(cfg.runs_path)):
        return None
    runs = load_runs(cfg, spark)
    check_vectors(runs, config)
    return runs


def check_vectors(runs: pd.DataFrame, config: PipelineConfig) -> None:
    """Fail naming ``search.mode`` when the runs' vectors are not what the mode stores."""
    cfg = config.search
    vectors = runs.groupby("run_id", sort=True)["theta"].first().map(lambda v: np.asarray(v, np.float64))
    sums = vectors.map(lambda v: float(v.sum()))
    simplex = vectors.map(lambda v: bool((v >= 0).all())) & ((sums - 1.0).abs() <= core.SUM_TOLERANCE)
    if cfg.mode == "regmix":
        if not simplex.all():
            bad = ", ".join(f"{r} (sum {sums[r]:.4g})" for r in simplex.index[~simplex][:3])
            raise ConfigError(
                f"search.mode: regmix stores mixtures, but {int((~simplex).sum())} of the {len(vectors)} "
                f"runs at {cfg.runs_path} have vectors that are not (≥ 0, sum 1), e.g. {bad}: θ runs "
                "import with search.mode=quadmix"
            )
        return
    layout = _theta_layout(config)
    lengths = sorted(set(vectors.map(len)))
    if layout is not None and lengths == [layout]:
        return
    if simplex.all():
        raise ConfigError(
            f"search.mode: quadmix stores θ, but the {len(vectors)} runs at {cfg.runs_path} carry mixtures "
            f"({lengths[0]} shares ≥ 0 summing to 1, not the {layout or '(N+4)·M'} entries of a θ): set "
            "search.mode=regmix (and search.domains to the order of their shares)"
        )
    if layout is not None:
        raise ConfigError(
            f"search.template_params: the runs at {cfg.runs_path} have θ vectors of {lengths} entries, "
            f"the layout of {cfg.template_params} has {layout}"
        )


def _theta_layout(config: PipelineConfig) -> int | None:
    template = config.search.template_params
    if not (files.is_local_path(template) and files.is_file(template)):
        return None
    return len(inputs.read_params(template, "search.template_params").to_vector())


def import_runs(
    spark: SparkSession, config: PipelineConfig, replace: bool = False, runs: pd.DataFrame | None = None
) -> ImportSummary:
    """MERGE the runs at ``search.runs_path`` (or ``runs``, read by :func:`read_runs_file`) into
    ``proxy.runs_table``. Runs recorded ok with other losses or vectors are refused unless
    ``replace``."""
    runs = read_runs_file(config, spark) if runs is None else runs
    table = config.table_path(config.proxy.runs_table)
    results = _results(runs, config.search.mode == "regmix")
    new, changed = _against_the_table(spark, table, results)
    if changed and not replace:
        shown = ", ".join(changed[:3])
        raise ConfigError(
            f"import-runs: {len(changed)} run(s) recorded ok in {table} have other losses or vectors at "
            f"{config.search.runs_path} (e.g. {shown}); nothing was written: import with --replace "
            "to update them"
        )
    todo = [(spec, r) for spec, r in results if spec.run_id in new or spec.run_id in changed]
    commit = record_runs(spark, table, todo, trainer="external", replace_ok=replace) if todo else None
    inserted = commit.metric("numTargetRowsInserted") if commit else 0
    updated = commit.metric("numTargetRowsUpdated") if commit else 0
    vector = "mixture" if config.search.mode == "regmix" else "theta"
    return ImportSummary(
        len(results),
        inserted,
        updated,
        len(results) - inserted - updated,
        vector,
        config.search.runs_path,
        table,
    )


def _results(runs: pd.DataFrame, regmix: bool) -> list[tuple[RunSpec, dict]]:
    """One (spec, result) per run, as the runs table records an ok run."""
    results = []
    for run_id, rows in runs.sort_values(["run_id", "step_tokens", "eval_set"]).groupby("run_id", sort=True):
        losses = [
            {"eval_set": str(r.eval_set), "step_tokens": int(r.step_tokens), "loss": float(r.loss)}
            for r in rows.itertuples()
        ]
        result = {
            "status": "ok",
            "error": None,
            "n_train_tokens": int(rows["step_tokens"].max()),
            "n_docs": 0,
            "losses": losses,
            "attempt": 0,
            "seconds": 0.0,
        }
        vector = tuple(float(x) for x in rows["theta"].iloc[0])
        # RegMix-mode runs carry a mixture, not a θ: store it where fit-search's RegMix mode reads it
        run = str(run_id)
        spec = RunSpec(run, "external", mixture=vector) if regmix else RunSpec(run, "external", vector)
        results.append((spec, result))
    return results


def _against_the_table(
    spark: SparkSession, table: str, results: list[tuple[RunSpec, dict]]
) -> tuple[set[str], list[str]]:
    """The runs to write as they are (new, or recorded failed) and those recorded ok with other
    losses or vectors; the rest are recorded exactly so."""
    recorded = {}
    if tables.exists(spark, table):
        cols = ["run_id", "status", "theta", "mixture", "losses"]
        for row in spark.read.format("delta").load(table).select(*cols).collect():
            losses = sorted((x["eval_set"], x["step_tokens"], x["loss"]) for x in row["losses"] or [])
            key = (losses, tuple(row["theta"] or ()), tuple(row["mixture"] or ()))
            recorded[row["run_id"]] = (row["status"], key)
    new, changed = set(), []
    for spec, r in results:
        status, key = recorded.get(spec.run_id, (None, None))
        mine = (
            sorted((x["eval_set"], x["step_tokens"], x["loss"]) for x in r["losses"]),
            tuple(spec.theta),
            tuple(spec.mixture),
        )
        if status != "ok":
            new.add(spec.run_id)
        elif key != mine:
            changed.append(spec.run_id)
    return new, changed


def format_summary(s: ImportSummary) -> str:
    what = "mixtures" if s.vector == "mixture" else "θ"
    return (
        f"import-runs: {s.runs} runs ({what}) from {s.source} → {s.table}: {s.inserted} inserted, "
        f"{s.updated} updated, {s.unchanged} unchanged"
    )
