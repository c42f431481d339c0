"""The params-template job: a θ file for the domains of the stats table, ready to edit.

One entry per domain of the stats run (``select.stats_table`` at ``select.stats_version``, the
latest by default), the config's ``scorers``, and the defaults of :func:`quadmix_spark.core.uniform`
(equal α; λ = 10, ω = 0.5, η = 1, ε = 0.001). A new corpus then needs no hand-written θ file with
one block per domain. Reads the stats run only (a few rows), never the annotated table.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig
from quadmix_spark.spark import files
from quadmix_spark.spark.stats_table import ALL_DOMAINS, load_stats


def write_params_template(
    spark: SparkSession, config: PipelineConfig, output: str | Path, overwrite: bool = False
) -> core.QuadMixParams:
    """Write :func:`core.uniform` θ for the stats run's domains and the config's scorers to ``output``."""
    output = str(output)
    if files.exists(output) and not overwrite:
        raise ConfigError(f"params-template --output: {output} exists (--force replaces it)")
    if not config.scorers:
        raise ConfigError("scorers: at least one scorer is required for a θ file")
    cfg = config.select
    stats = load_stats(spark, config.table_path(cfg.stats_table), cfg.stats_version)
    missing = [s for s in config.scorers if (ALL_DOMAINS, s) not in stats.quantiles]
    if missing:
        raise ConfigError(
            f"scorers: {missing} not in stats version {stats.stats_version} (rerun quadmix stats)"
        )
    if not stats.domains:
        raise ConfigError(f"select.stats_table: stats version {stats.stats_version} has no domains")
    params = core.uniform(stats.domains, list(config.scorers))
    with files.local_file(output) as path:
        core.save_params(params, path)
    return params
