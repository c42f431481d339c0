"""Training shards: the selected documents expanded to copies, shuffled by hash, in files.

A copy's place is a function of (doc_key, copy, seed) only, so the shards of a selection are the
same on every rerun and partitioning: ``shard = pmod(h, n_shards)`` and rows inside a shard are
ordered by ``h``. The number of shards follows from the text bytes and the target shard size.
"""

from __future__ import annotations

import math
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from quadmix_spark.spark import files


def expand_copies(selected: DataFrame) -> DataFrame:
    """One row per copy, with its 0-based ``copy`` index (``copies`` must be ≥ 1)."""
    # array_repeat + posexplode, not sequence(0, copies - 1): sequence(0, -1) yields two rows.
    return selected.select(
        "*", F.posexplode(F.array_repeat(F.lit(True), F.col("copies").cast("int"))).alias("copy", "_c")
    ).drop("_c")


def write_shards(
    selected: DataFrame,
    out_dir: str | Path,
    seed: int,
    target_mb: float,
    formats: list[str],
    columns: list[str],
) -> dict:
    """Write the copies of ``selected`` as shards under ``out_dir/<format>/shard=<n>/``."""
    copies = expand_copies(selected)
    order = F.xxhash64("doc_key", "copy", F.lit(seed), F.lit("shard-order"))
    text_bytes = copies.select(F.sum(F.octet_length("text"))).first()[0] or 0
    n_shards = max(1, math.ceil(text_bytes / (target_mb * 1e6)))
    laid_out = (
        copies.withColumn("_order", order)
        .withColumn("shard", F.pmod(F.col("_order"), F.lit(n_shards)).cast("int"))
        .repartition(n_shards, "shard")
        .sortWithinPartitions("shard", "_order")
        .select(*columns, "copy", "shard")
    )
    paths = {}
    for fmt in formats:
        path = files.join(files.qualify(out_dir), fmt)  # a URI stays a URI
        writer = laid_out.write.mode("overwrite").partitionBy("shard")
        if fmt == "parquet":
            writer.parquet(path)
        else:
            writer.json(path)  # JSON lines
        paths[fmt] = path
    return {"n_shards": n_shards, "text_bytes": int(text_bytes), "paths": paths}
