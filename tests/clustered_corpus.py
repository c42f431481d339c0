"""A small clustered corpus shared by the tests of clusters as domains: 500 demo documents in a
Delta table, clustered (k by silhouette over 3 and 4) and assigned once per test session."""

from __future__ import annotations

import numpy as np
from pyspark.sql import functions as F

from quadmix_spark.config import PipelineConfig, from_dict, validate
from quadmix_spark.demo.corpus import make_document

N_DOCS, N_NEW = 500, 40
CLUSTER = {"k": "auto", "k_range": [3, 4], "sample_size": 350, "partitions": 2, "dim": 16, "max_iter": 10}
SCHEMA = "id string, text string, true_domain string, n_tokens long, q double"


def documents(start: int, n: int) -> list[tuple]:
    """Demo documents (their ground-truth domain kept) with a token count and a quality score."""
    rng = np.random.default_rng(start)
    docs = [make_document(i, 0, 0.0) for i in range(start, start + n)]
    return [
        (d["id"], d["text"], d["true_domain"], len(d["text"].split()), float(q))
        for d, q in zip(docs, rng.random(n), strict=True)
    ]


def write_annotated(spark, path: str, rows: list[tuple], partitions: int) -> None:
    df = spark.createDataFrame(rows, SCHEMA).withColumn("doc_key", F.xxhash64("id"))
    df.repartition(partitions).write.format("delta").mode("overwrite").save(path)


def settings(root, **cluster) -> dict:
    return {
        "warehouse": str(root / "warehouse"),
        "scorers": {"q": "higher_is_better"},
        "cluster": {**CLUSTER, **cluster},
        "select": {
            "params": str(root / "theta.yaml"),
            "output_dir": str(root / "selections"),
            "rank_mode": "exact",
            "shard_formats": [],
            "report": False,
        },
    }


def make_config(root, **cluster) -> PipelineConfig:
    config = from_dict(PipelineConfig, settings(root, **cluster))
    validate(config)
    return config
