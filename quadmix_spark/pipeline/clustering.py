"""The cluster job and the assign step: domains for a corpus that has no domain labels.

``quadmix cluster`` fits, on a hash sample of the annotated table, an MLlib pipeline: words
(``RegexTokenizer``, English stop words removed) → ``HashingTF`` → ``IDF`` → ``Normalizer`` (unit
length, so k-means' squared distance is 2 − 2·cosine) → ``KMeans`` or ``BisectingKMeans``, with k
from ``cluster.k`` or the best silhouette (``ClusteringEvaluator``) over ``cluster.k_range``. The
fitted pipeline is saved in MLlib's own format under ``cluster.model_dir`` with ``cluster.json``
(each cluster's readable name, ``c07:python,pandas,df``, and the model id); the ``clusters`` table
gets one row per cluster: its size and tokens in the sample, top terms (c-TF-IDF: the share of the
cluster's documents holding a term × its IDF in the sample) and the sample documents nearest its
centre. The driver holds per-cluster rows only, never documents.

``quadmix assign`` writes the cluster's name (``cluster.column``) and the model id
(``<column>_model``) into the annotated table for the rows that lack them or carry another model
id: after a nightly annotate, only the new ids; after a new fit, every row.

Same seed and input, same clusters: the sample is chosen by ``hash_uniform(doc_key)`` and
re-partitioned by a hash of ``doc_key`` into ``cluster.partitions`` parts sorted by ``doc_key``,
so k-means||, which draws per partition, never sees the input's partitioning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.clustering import BisectingKMeans, KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import IDF, HashingTF, Normalizer, RegexTokenizer, StopWordsRemover, Word2Vec
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from quadmix_spark import __version__
from quadmix_spark.config import ClusterConfig, ConfigError, PipelineConfig, to_dict
from quadmix_spark.spark import files, tables
from quadmix_spark.spark.reading import read_latest
from quadmix_spark.spark.scoring import hash_uniform_column

log = logging.getLogger(__name__)

#: The hash stream of the clustering sample (core.sampling lists the other jobs' streams).
CLUSTER_STREAM = 8_000_009
#: A term longer than this is cut in a cluster's name (text without spaces is one long "word").
MAX_TERM_CHARS = 16
FEATURES, PREDICTION, TERMS = "_features", "_cluster_id", "_terms"
#: Keys of the cluster section that do not change the fit (left out of the model id).
_NOT_FITTED = {"input_table", "output_table", "model_dir", "column", "examples"}
CLUSTERS_SCHEMA = (
    "cluster_id int, name string, sample_docs long, sample_tokens long, share double, "
    "top_terms array<string>, examples array<string>, model_id string"
)


@dataclass
class ClusterResult:
    """What one fit wrote: the chosen k, every k's silhouette, the clusters' rows, the model."""

    k: int
    silhouettes: dict[int, float]
    clusters: list[dict[str, Any]]
    model_id: str
    sample_docs: int
    model: PipelineModel
    model_dir: str
    table: str
    version: int | None
    seconds: float = 0.0


@dataclass
class ClusterModel:
    """A saved fit: the pipeline (features + k-means), the names by cluster id, the model id."""

    pipeline: PipelineModel
    names: list[str]
    model_id: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class AssignSummary:
    """One assign run: rows named now, rows already named by this model, the table's new version."""

    table: str
    column: str
    model_id: str
    assigned: int
    kept: int
    version: int | None
    per_cluster: dict[str, int]
    tokens: int | None = None  # of the rows named now (``token_column``): what the step processed


# -- the sample and the features ----------------------------------------------------------------


def read_input(spark: SparkSession, config: PipelineConfig) -> tuple[DataFrame, str, int]:
    """The annotated table at its latest version, its path and version; the needed columns checked."""
    source = config.table_path(config.cluster.input_table)
    df, version = read_latest(spark, source, "cluster.input_table", "run quadmix annotate first")
    for column in ("id", "doc_key", "text", config.token_column):
        if column not in df.columns:
            raise ConfigError(f"cluster.input_table: column {column!r} is not in {source}")
    return df, source, version


def cluster_sample(df: DataFrame, config: PipelineConfig, total: int) -> DataFrame:
    """About ``cluster.sample_size`` documents by ``hash_uniform(doc_key)``, laid out by ``doc_key``."""
    cfg = config.cluster
    rate = min(1.0, cfg.sample_size / max(total, 1))
    sample = df.where(hash_uniform_column(cfg.seed, CLUSTER_STREAM) < rate).select(
        "id", "doc_key", "text", F.col(config.token_column).cast("long").alias("_tokens")
    )
    return sample.repartition(cfg.partitions, "doc_key").sortWithinPartitions("doc_key")


def feature_pipeline(cfg: ClusterConfig) -> Pipeline:
    """Text → unit-length document vectors (``_features``); the words kept are ``_terms``.

    ``word2vec``: the mean of the words' MLlib ``Word2Vec`` vectors (``cluster.dim``), trained on the
    sample in one partition (its result depends on the partitioning); ``tfidf``: unigram TF-IDF in
    ``cluster.num_features`` hashed buckets.
    """
    words = [
        RegexTokenizer(inputCol="text", outputCol="_words", pattern=r"[^\p{L}\p{N}_]+", minTokenLength=2),
        StopWordsRemover(inputCol="_words", outputCol=TERMS),
    ]
    if cfg.features == "word2vec":
        vectors = [
            Word2Vec(inputCol=TERMS, outputCol="_raw", vectorSize=cfg.dim, minCount=cfg.min_doc_freq,
                     seed=cfg.seed, numPartitions=1, maxIter=1)
        ]  # fmt: skip
    else:
        vectors = [
            HashingTF(inputCol=TERMS, outputCol="_tf", numFeatures=cfg.num_features),
            IDF(inputCol="_tf", outputCol="_raw", minDocFreq=cfg.min_doc_freq),
        ]
    return Pipeline(stages=[*words, *vectors, Normalizer(inputCol="_raw", outputCol=FEATURES, p=2.0)])


def estimator(cfg: ClusterConfig, k: int) -> KMeans | BisectingKMeans:
    """The configured k-means with this k, the seed and the column names."""
    cls = KMeans if cfg.algorithm == "kmeans" else BisectingKMeans
    return cls(featuresCol=FEATURES, predictionCol=PREDICTION, k=k, seed=cfg.seed, maxIter=cfg.max_iter)


def choose_k(vectors: DataFrame, cfg: ClusterConfig) -> tuple[Transformer, dict[int, float]]:
    """The fitted model of ``cluster.k``, or of the k of ``cluster.k_range`` with the best silhouette."""
    ks = sorted(cfg.k_range) if cfg.k == "auto" else [cfg.k]
    evaluator = ClusteringEvaluator(featuresCol=FEATURES, predictionCol=PREDICTION, metricName="silhouette")
    fits, scores = {}, {}
    for k in ks:
        fits[k] = estimator(cfg, k).fit(vectors)
        scores[k] = float(evaluator.evaluate(fits[k].transform(vectors)))
        log.info("cluster: k=%d silhouette %.4f", k, scores[k])
    best = max(ks, key=lambda k: (scores[k], -k))  # a tie: the fewer clusters
    return fits[best], scores


# -- what the clusters hold ---------------------------------------------------------------------


def top_terms(predicted: DataFrame, n: int) -> dict[int, list[str]]:
    """Per cluster, its ``n`` terms of highest c-TF-IDF: the share of its documents holding the
    term × log(sample documents / documents holding it); ties by the term."""
    docs = predicted.select(PREDICTION, F.explode(F.array_distinct(TERMS)).alias("term"))
    docs = docs.where(F.col("term").rlike(r"\p{L}"))
    per = docs.groupBy(PREDICTION, "term").agg(F.count(F.lit(1)).alias("n"))
    df_t = docs.groupBy("term").agg(F.count(F.lit(1)).alias("df"))
    size = predicted.groupBy(PREDICTION).agg(F.count(F.lit(1)).alias("size"))
    total = predicted.count()
    score = F.col("n") / F.col("size") * F.log(F.lit(float(total)) / F.col("df"))
    order = Window.partitionBy(PREDICTION).orderBy(F.desc("score"), "term")
    ranked = per.join(df_t, "term").join(size, PREDICTION).withColumn("score", score)
    rows = ranked.withColumn("r", F.row_number().over(order)).where(F.col("r") <= n).collect()
    out: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        out.setdefault(int(row[PREDICTION]), []).append((int(row["r"]), row["term"]))
    return {c: [t for _, t in sorted(terms)] for c, terms in out.items()}


def nearest_examples(predicted: DataFrame, centers: np.ndarray, n: int) -> dict[int, list[str]]:
    """Per cluster, the ids of its ``n`` sample documents nearest its centre (ties by ``doc_key``)."""
    if n == 0:
        return {}
    shared = predicted.sparkSession.sparkContext.broadcast(centers)

    @F.udf("double")
    def distance(vector, cluster: int) -> float:
        return float(vector.squared_distance(shared.value[cluster]))

    order = Window.partitionBy(PREDICTION).orderBy("d", "doc_key")
    near = predicted.withColumn("d", distance(FEATURES, PREDICTION)).withColumn(
        "r", F.row_number().over(order)
    )
    rows = near.where(F.col("r") <= n).select(PREDICTION, "r", "id").collect()
    shared.unpersist()
    out: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        out.setdefault(int(row[PREDICTION]), []).append((int(row["r"]), row["id"]))
    return {c: [i for _, i in sorted(ids)] for c, ids in out.items()}


def cluster_name(cluster_id: int, terms: list[str], k: int, name_terms: int) -> str:
    """``c07:python,pandas,df``: the id, zero-padded to k's width, and the cluster's top terms."""
    width = max(2, len(str(k - 1)))
    return f"c{cluster_id:0{width}d}:{','.join(t[:MAX_TERM_CHARS] for t in terms[:name_terms])}"


def cluster_rows(predicted: DataFrame, centers: np.ndarray, cfg: ClusterConfig) -> list[dict]:
    """One row of the clusters table per centre (a centre with no sample document has size 0)."""
    sizes = {
        int(r[0]): (int(r[1]), int(r[2] or 0))
        for r in predicted.groupBy(PREDICTION).agg(F.count(F.lit(1)), F.sum("_tokens")).collect()
    }
    terms = top_terms(predicted, cfg.top_terms)
    examples = nearest_examples(predicted, centers, cfg.examples)
    all_tokens = sum(t for _, t in sizes.values()) or 1
    rows = []
    for c in range(len(centers)):
        docs, tokens = sizes.get(c, (0, 0))
        rows.append(
            {"cluster_id": c, "name": cluster_name(c, terms.get(c, []), len(centers), cfg.name_terms),
             "sample_docs": docs, "sample_tokens": tokens, "share": tokens / all_tokens,
             "top_terms": terms.get(c, []), "examples": examples.get(c, [])}
        )  # fmt: skip
    return rows


def model_hash(cfg: ClusterConfig, centers: np.ndarray, names: list[str]) -> str:
    """The model id: the settings, centres (rounded: the sums' order may move the last bits
    between runs) and names; the features are fitted on the sample the centres come from."""
    fitted = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_FITTED}
    digest = hashlib.sha256(json.dumps([fitted, names], sort_keys=True).encode())
    digest.update(np.round(centers, 8).tobytes())
    return digest.hexdigest()[:12]


# -- the job ------------------------------------------------------------------------------------


def run_cluster(spark: SparkSession, config: PipelineConfig) -> ClusterResult:
    """Fit the features and k-means on the sample; save the model; overwrite the clusters table."""
    started, cfg = time.time(), config.cluster
    df, source, version = read_input(spark, config)
    sample = cluster_sample(df, config, df.count()).cache()
    n_sample = sample.count()
    if n_sample < max(cfg.k_range if cfg.k == "auto" else [cfg.k]):
        raise ConfigError(f"cluster.sample_size: the sample holds {n_sample} documents, fewer than k")
    log.info("cluster: %d sample documents (%.1f s)", n_sample, time.time() - started)
    features = feature_pipeline(cfg).fit(sample)
    vectors = features.transform(sample).cache()
    log.info("cluster: %s features fitted (%.1f s)", cfg.features, time.time() - started)
    kmodel, scores = choose_k(vectors, cfg)
    predicted = kmodel.transform(vectors)
    centers = np.stack(kmodel.clusterCenters())
    rows = cluster_rows(predicted, centers, cfg)
    log.info("cluster: clusters described (%.1f s)", time.time() - started)
    model_id = model_hash(cfg, centers, [r["name"] for r in rows])
    rows = [{**r, "model_id": model_id} for r in rows]
    model = PipelineModel(stages=[*features.stages, kmodel])
    model_dir = save_model(model, rows, model_id, config, {"input_version": version, "silhouettes": scores})
    table = config.table_path(cfg.output_table)
    silhouettes = {str(k): s for k, s in scores.items()}
    metadata = {"job": "cluster", "input": source, "input_version": version, "model_id": model_id,
                "model_dir": model_dir, "k": len(centers), "silhouettes": silhouettes,
                "sample_docs": n_sample, "cluster": to_dict(cfg), "code_version": __version__}  # fmt: skip
    out = spark.createDataFrame([tuple(r.values()) for r in rows], CLUSTERS_SCHEMA)
    written = tables.write(out.coalesce(1), table, "overwrite", metadata)
    vectors.unpersist()
    sample.unpersist()
    return ClusterResult(len(centers), scores, rows, model_id, n_sample, model, model_dir, table, written,
                         time.time() - started)  # fmt: skip


def save_model(
    model: PipelineModel, rows: list[dict], model_id: str, config: PipelineConfig, info: dict[str, Any]
) -> str:
    """The pipeline in MLlib's format under ``<model_dir>/pipeline``, names and id in ``cluster.json``."""
    model_dir = config.table_path(config.cluster.model_dir)
    model.write().overwrite().save(files.join(model_dir, "pipeline"))
    meta = {"model_id": model_id, "names": [r["name"] for r in rows], "cluster": to_dict(config.cluster)}
    files.write_text(
        files.join(model_dir, "cluster.json"), json.dumps({**meta, **info}, indent=1, default=str)
    )
    return model_dir


def check_model(config: PipelineConfig) -> str:
    """The saved fit's ``cluster.json``; none there is a :class:`ConfigError` naming the key (on a
    local path without Spark, so ``quadmix assign`` fails before the SparkSession starts)."""
    model_dir = config.table_path(config.cluster.model_dir)
    meta_path = files.join(model_dir, "cluster.json")
    if not files.exists(meta_path):
        raise ConfigError(f"cluster.model_dir: no fitted clusters at {model_dir} (run quadmix cluster first)")
    return meta_path


def load_model(config: PipelineConfig) -> ClusterModel:
    """The saved fit of ``cluster.model_dir``; none there is a :class:`ConfigError` naming the key."""
    model_dir = config.table_path(config.cluster.model_dir)
    meta_path = check_model(config)
    meta = json.loads(files.read_text(meta_path))
    pipeline = PipelineModel.load(files.join(model_dir, "pipeline"))
    return ClusterModel(pipeline, list(meta["names"]), str(meta["model_id"]), meta)


def run_assign(spark: SparkSession, config: PipelineConfig) -> AssignSummary:
    """Name the cluster of every row that has no name from the saved model yet (one MERGE)."""
    cfg = config.cluster
    model = load_model(config)
    df, source, version = read_input(spark, config)
    column, model_column = cfg.column, f"{cfg.column}_model"
    todo = df
    if model_column in df.columns:
        todo = df.where(F.col(model_column).isNull() | (F.col(model_column) != model.model_id))
    tokens = todo.agg(F.sum(F.col(config.token_column).cast("long"))).first()[0]
    names = F.array(*[F.lit(n) for n in model.names])
    assigned = model.pipeline.transform(todo.select("id", "text")).select(
        "id", names[F.col(PREDICTION)].alias(column), F.lit(model.model_id).alias(model_column)
    )
    metadata = {
        "job": "assign",
        "input_version": version,
        "model_id": model.model_id,
        "code_version": __version__,
    }
    commit = tables.update_columns(assigned, source, "id", [column, model_column], metadata)
    updated = commit.metric("numTargetRowsUpdated") if commit else 0
    latest = spark.read.format("delta").load(source)
    per_cluster = {r[0]: int(r[1]) for r in latest.groupBy(column).count().collect() if r[0] is not None}
    kept = sum(per_cluster.values()) - updated
    return AssignSummary(source, column, model.model_id, updated, kept, commit.version if commit else None,
                         per_cluster, int(tokens or 0))  # fmt: skip


def format_result(result: ClusterResult) -> str:
    """The cluster job's summary: k (and the silhouettes behind it), then one line per cluster."""
    scores = ", ".join(f"k={k}: {s:.3f}" for k, s in sorted(result.silhouettes.items()))
    lines = [
        f"cluster: {result.k} clusters of {result.sample_docs} sample documents (silhouette {scores}), "
        f"model {result.model_id} → {result.model_dir}, table {result.table} v{result.version} "
        f"({result.seconds:.1f} s)"
    ]
    for row in result.clusters:
        lines.append(f"  {row['name']:<40} {row['sample_docs']:>7} docs {row['share']:>7.1%} tokens")
    return "\n".join(lines)


def format_assign(summary: AssignSummary) -> str:
    """The assign step's summary: rows named now and before, documents per cluster."""
    lines = [
        f"assign: {summary.assigned} rows named now, {summary.kept} already named by model "
        f"{summary.model_id} → {summary.table}.{summary.column} (version {summary.version})"
    ]
    lines += [f"  {name:<40} {n:>9}" for name, n in sorted(summary.per_cluster.items())]
    return "\n".join(lines)


def purity_and_nmi(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """Purity and NMI (arithmetic mean normalisation) of clusters against reference labels,
    from (cluster, label) pairs: how well the clusters recover known domains."""
    clusters = sorted({c for c, _ in pairs})
    labels = sorted({lab for _, lab in pairs})
    table = np.zeros((len(clusters), len(labels)))
    ci, li = {c: i for i, c in enumerate(clusters)}, {lab: i for i, lab in enumerate(labels)}
    for c, lab in pairs:
        table[ci[c], li[lab]] += 1
    n = table.sum()
    purity = table.max(axis=1).sum() / n
    pc, pl, joint = table.sum(axis=1) / n, table.sum(axis=0) / n, table / n
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(pc, pl)[nz])).sum())
    h = [-float((p[p > 0] * np.log(p[p > 0])).sum()) for p in (pc, pl)]
    return float(purity), (mi / ((h[0] + h[1]) / 2) if sum(h) > 0 else 1.0)
