"""The ``external`` trainer: proxy runs trained elsewhere, imported into the ``proxy_runs`` table.

Runs come in fit-search's long format (CSV, Parquet or Delta at ``search.runs_path``; schema in
docs/config.md): one row per (run, eval set, step) with the run's θ. Each run becomes one row of
the runs table with ``kind = 'external'``, MERGEd by ``run_id`` like every other run, so an
import can be repeated and mixed with runs trained here.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from quadmix_spark.config import PipelineConfig
from quadmix_spark.pipeline.fit_search import load_runs
from quadmix_spark.proxy.runs import RunSpec, record_runs


def import_runs(spark: SparkSession, config: PipelineConfig) -> int:
    """MERGE the runs at ``search.runs_path`` into ``proxy.runs_table``; return how many runs."""
    runs = load_runs(config.search, spark)
    regmix = config.search.mode == "regmix"
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
    record_runs(spark, config.table_path(config.proxy.runs_table), results, trainer="external")
    return len(results)
