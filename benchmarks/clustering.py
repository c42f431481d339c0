"""Benchmark: how well `quadmix cluster` recovers the demo's ground-truth domains, for a few k.

What it measures
----------------
Demo documents (``make_document``: 11 domains, defects at ``--defect-rate``) are written as an
annotated-like Delta table (id, text, true_domain, whitespace token counts). For each document
vector kind (``--features``) and each k (``--k``): ``run_cluster`` on a sample of all documents,
``run_assign`` over the table, then the purity and NMI (arithmetic normalisation) of the assigned
clusters against ``true_domain``, the silhouette of the fit and the fit's wall time.

How to run
----------
    PYTHONPATH=. .venv/bin/python benchmarks/clustering.py
    PYTHONPATH=. .venv/bin/python benchmarks/clustering.py --docs 5000 --k 8 11 16 --features word2vec tfidf
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000, help="demo documents (default: %(default)s)")
    parser.add_argument(
        "--k", type=int, nargs="+", default=[6, 11, 16], help="k values (default: %(default)s)"
    )
    parser.add_argument("--features", nargs="+", default=["word2vec"], choices=["word2vec", "tfidf"])
    parser.add_argument("--defect-rate", type=float, default=0.35, help="demo defects (default: %(default)s)")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    from pyspark.sql import functions as F

    from quadmix_spark.config import PipelineConfig, from_dict, validate
    from quadmix_spark.demo.corpus import make_document
    from quadmix_spark.pipeline import clustering
    from quadmix_spark.spark.session import build_session

    root = tempfile.mkdtemp(prefix="quadmix-clustering-")
    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"}
    spark = build_session(
        app_name="bench-clustering", master=args.master, warehouse=f"{root}/warehouse", conf=conf
    )
    spark.sparkContext.setLogLevel("ERROR")
    docs = [make_document(i, 0, args.defect_rate) for i in range(args.docs)]
    rows = [(d["id"], d["text"], d["true_domain"], len(d["text"].split())) for d in docs]
    df = spark.createDataFrame(rows, "id string, text string, true_domain string, n_tokens long")
    df.withColumn("doc_key", F.xxhash64("id")).write.format("delta").save(f"{root}/warehouse/annotated")
    n_domains = len({d["true_domain"] for d in docs})
    print(f"{args.docs} demo documents, {n_domains} domains, defects {args.defect_rate}")
    print(f"{'features':<10} {'k':>3} {'purity':>7} {'NMI':>6} {'silhouette':>10} {'fit s':>7}")
    try:
        for features in args.features:
            for k in args.k:
                cluster = {"k": k, "features": features, "sample_size": args.docs, "partitions": 4}
                config = from_dict(PipelineConfig, {"warehouse": f"{root}/warehouse", "cluster": cluster})
                validate(config)
                started = time.time()
                result = clustering.run_cluster(spark, config)
                seconds = time.time() - started
                clustering.run_assign(spark, config)
                table = spark.read.format("delta").load(config.table_path("annotated"))
                pairs = [(r[0], r[1]) for r in table.select("cluster", "true_domain").collect()]
                purity, nmi = clustering.purity_and_nmi(pairs)
                silhouette = result.silhouettes[k]
                print(
                    f"{features:<10} {k:>3} {purity:>7.3f} {nmi:>6.3f} {silhouette:>10.3f} {seconds:>7.1f}",
                    flush=True,
                )
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
