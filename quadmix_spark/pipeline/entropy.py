"""The entropy job: per-domain SE, JE, CE and VNE of the annotated table → softmax mixtures.

BiMix's training-free mixtures (``mixing.entropy``), computed as Spark aggregations:

1. a narrow scan (domain, tokens) fixes each domain's sampling rate,
   ``min(1, entropy.tokens_per_domain / tokens_d)``; documents are drawn by
   ``hash_uniform(doc_key, seed, ENTROPY_STREAM)``, so the sample is the same on every partitioning;
2. the sampled text is tokenized inside ``mapInPandas``, and each Arrow batch's unigram, pair and
   left-token counts (numpy, per domain) leave the Python worker as (domain, kind, code, n) rows;
3. Spark sums them per code (map-side partial aggregation: no domain is one task), then counts the
   codes per count value; only these count histograms (n_c codes seen c times; at most about √(2N)
   rows per domain and kind) reach the driver, which computes the entropies with
   ``mixing.entropy.entropies_from_histograms``: integers in, so the values are bit-identical
   whatever the partitioning, and equal to the numpy core's on the same tokens;
4. VNE: fastText sentence vectors of up to ``entropy.vne_docs`` documents per domain, the ones with
   the smallest ``hash_uniform(doc_key, seed, ENTROPY_STREAM + 1)``; the driver takes their
   eigenvalues. The vectors (``entropy.vne_model``) are by default a general-purpose skipgram model
   (``vne_dim`` dimensions) trained on the driver on a hash sample of the input
   (``hash_uniform(doc_key, seed, ENTROPY_STREAM + 2)`` below ``vne_train_tokens / tokens_d``) and
   cached under ``<warehouse>/_models/vne/`` by the sample's digest (its count and two sums of
   per-document hashes, order-free, so any partitioning gives the same key) and the training
   settings: a rerun computes the digest in Spark and trains nothing. ``classifier`` takes the domain
   classifier's supervised vectors instead, which squeeze the spread inside each domain.

``entropy.estimator`` picks the plug-in or the Miller–Madow estimate of SE/JE/CE (both from the same
histograms); values are in nats (log base e) and ``entropy.temperature`` T makes r = softmax(H / T).

Outputs: ``mixture_entropy_<measure>.yaml`` (r_i = softmax(H_i / T), provenance with every value,
the estimator, the sample tokens per domain, the log base, T and every input), one run of the
``entropy`` Delta table (entropy_id, input_table, annotated_version, domain, measure, value, tokens,
docs; a rerun with the same inputs replaces its rows; the estimator and log base in the commit
metadata), and a summary JSON.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import __version__, core
from quadmix_spark.config import (
    VNE_SKIPGRAM,
    ConfigError,
    EntropyConfig,
    PipelineConfig,
    resolve,
    validate,
    vne_model,
)
from quadmix_spark.mixing.entropy import (
    COUNT_KINDS,
    LOG_BASE,
    MEASURES,
    entropies_from_histograms,
    ngram_counts,
    softmax_mixture,
    von_neumann_entropy,
)
from quadmix_spark.spark import files, tables
from quadmix_spark.spark.cost import Cost, CostMeter, commit_cost
from quadmix_spark.spark.reading import read_latest
from quadmix_spark.spark.scoring import hash_uniform_column
from quadmix_spark.spark.shipping import ship_file

log = logging.getLogger(__name__)

COUNTS_SCHEMA = "domain string, kind string, code long, n long"
VECTORS_SCHEMA = "domain string, doc_key long, u double, n_tokens long, vector array<float>"
TABLE_SCHEMA = (
    "entropy_id string, input_table string, annotated_version long, domain string, measure string, "
    "value double, tokens long, docs long"
)
DOCS = "docs"  # a count kind of its own: one code per domain, counted once per sampled document
SUMMARY_NAME = "entropy_summary.json"
# VNE candidates per domain: enough above vne_docs that a hash sample rarely falls short of it
VNE_OVERSAMPLE = 1.2
VNE_SLACK = 20
# Subwords of 3–6 characters in 100,000 buckets (fastText's 2M would make a 300-d model 2.4 GB).
# Whole words only (minn = maxn = 0) would train faster, but this fastText build then stops with
# "Encountered NaN" on small samples (a few 100k tokens, one thread), as it does now and then with
# subwords on tiny ones: see _fit_skipgram.
SKIPGRAM_SUBWORDS = (3, 6, 100_000)  # fastText's minn, maxn, bucket
SKIPGRAM_TRIES = 3


@dataclass
class EntropySummary:
    """What one entropy run computed and wrote; values in nats."""

    entropy_id: str
    input_table: str
    annotated_version: int
    domains: list[str]
    measures: list[str]
    values: dict[str, dict[str, float]]  # measure → domain → H
    shares: dict[str, dict[str, float]]  # measure → domain → softmax share
    tokens: dict[str, int]  # domain → sampled tokens (SE/JE/CE)
    docs: dict[str, int]  # domain → sampled documents (SE/JE/CE)
    domain_tokens: dict[str, int]  # domain → tokens of the whole domain (token_column)
    domain_docs: dict[str, int]
    vne_docs: dict[str, int] = field(default_factory=dict)  # domain → documents behind VNE
    vne_tokens: dict[str, int] = field(default_factory=dict)  # domain → their tokens (token_column)
    vne_zero_vectors: dict[str, int] = field(default_factory=dict)  # left out (no direction)
    vne_model: str = ""  # skipgram | classifier | a path: what entropy.vne_model named
    vne_model_file: str = ""  # the fastText file the vectors came from
    vne_dim: int = 0  # dimensions of its sentence vectors (VNE ≤ log vne_dim)
    vne_trained: bool = False  # the skipgram model was trained by this run (else read from its cache)
    estimator: str = "plugin"  # of SE/JE/CE
    plugin_values: dict[str, dict[str, float]] = field(default_factory=dict)  # beside a corrected estimate
    log_base: str = LOG_BASE
    temperature: float = 1.0  # shares = softmax(values / temperature)
    histogram_rows: int = 0  # rows of count histograms collected to the driver
    mixtures: dict[str, str] = field(default_factory=dict)  # measure → mixture file
    table: str = ""
    table_version: int | None = None
    seconds: float = 0.0
    cost: dict[str, Any] | None = None  # quadmix_spark.spark.cost: wall, executor seconds, tokens


def check_config(config: PipelineConfig) -> None:
    """Fail before Spark starts: the tokenizer, and for VNE a loadable fastText model."""
    from udfs.models import fasttext_labels, load_tokenizer

    cfg = config.entropy
    validate(cfg, "entropy")  # its rules, when the config was built in code
    load_tokenizer(cfg.tokenizer)
    if "vne" in cfg.measures and cfg.vne_model == VNE_SKIPGRAM:
        import fasttext  # noqa: F401 - the skipgram model trains on the driver
    elif "vne" in cfg.measures:
        model = vne_model(config)
        if model is None:
            raise ConfigError(
                "entropy.vne_model: `classifier` needs a fasttext_domain annotator (set entropy.vne_model "
                "to skipgram or a fastText file, add the annotator, or leave vne out of entropy.measures)"
            )
        if not Path(model).is_file():
            raise ConfigError(f"entropy.vne_model: no fastText model at {model}")
        try:
            fasttext_labels(model)
        except ValueError as err:
            raise ConfigError(f"entropy.vne_model: {model} is not a fastText model: {err}") from err


def entropy_id(config: PipelineConfig, source: str, version: int, domains: Sequence[str] | None) -> str:
    """Identity of a run: the input, its version and every setting that shapes the values."""
    cfg = config.entropy
    model = vne_identity(cfg, vne_model(config)) if "vne" in cfg.measures else None
    shape = [source, version, sorted(domains) if domains else None, config.domain_column, config.token_column]
    shape += [sorted(cfg.measures), cfg.tokens_per_domain, cfg.tokenizer, cfg.vne_docs, model, cfg.seed]
    if cfg.estimator != "plugin":  # appended only then, so plug-in runs keep the ids they had
        shape.append(cfg.estimator)
    return core.content_key(shape, 12)


def vne_identity(cfg: EntropyConfig, model: str | None) -> str | list | None:
    """What VNE's vectors are, for the run's id: the file, or the skipgram model's settings (its
    sample follows from the input, the domains and the seed, already in the id)."""
    if cfg.vne_model == VNE_SKIPGRAM:
        return [VNE_SKIPGRAM, cfg.vne_dim, cfg.vne_epochs, cfg.vne_train_tokens, *SKIPGRAM_SUBWORDS]
    return model


def count_batches(tokenizer: str):
    """The ``mapInPandas`` body: (domain, text) batches → per-batch counts (domain, kind, code, n)."""

    def count(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from udfs.models import load_tokenizer

        encoding = load_tokenizer(tokenizer)
        for pdf in batches:
            # One thread: Spark already runs one task per core.
            ids = encoding.encode_ordinary_batch(pdf["text"].fillna("").tolist(), num_threads=1)
            frames = []
            for domain, rows in pdf.groupby("domain", sort=True).indices.items():
                counts = ngram_counts([ids[i] for i in rows])
                for kind in COUNT_KINDS:
                    codes, n = counts[kind]
                    frames.append(pd.DataFrame({"domain": domain, "kind": kind, "code": codes, "n": n}))
                frames.append(pd.DataFrame({"domain": [domain], "kind": DOCS, "code": [0], "n": [len(rows)]}))
            if frames:
                yield pd.concat(frames, ignore_index=True)

    return count


def sentence_vectors(model: str):
    """The ``mapInPandas`` body: (domain, doc_key, u, n_tokens, text) → fastText sentence vectors."""

    def vectors(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from udfs.models import load_fasttext

        ft = load_fasttext(model)
        for pdf in batches:
            texts = pdf["text"].fillna("").str.replace("\n", " ", regex=False)
            vecs = [np.asarray(ft.get_sentence_vector(t), dtype=np.float32) for t in texts]
            yield pdf.drop(columns="text").assign(vector=vecs)

    return vectors


def _rate_map(rates: dict[str, float]):
    return F.create_map(*[x for d, r in sorted(rates.items()) for x in (F.lit(d), F.lit(float(r)))])


def token_histograms(
    base: DataFrame, rates: dict[str, float], seed: int, tokenizer: str
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(domain, kind) → count histogram (c, n_c) of the hash sample of ``base`` (domain, doc_key, text)."""
    sample = base.where(hash_uniform_column(seed, core.ENTROPY_STREAM) < _rate_map(rates)[F.col("domain")])
    counts = sample.select("domain", "text").mapInPandas(count_batches(tokenizer), COUNTS_SCHEMA)
    per_code = counts.groupBy("domain", "kind", "code").agg(F.sum("n").alias("c"))
    rows = per_code.groupBy("domain", "kind", "c").agg(F.count(F.lit(1)).alias("n_c")).collect()
    table = pd.DataFrame(rows, columns=["domain", "kind", "c", "n_c"])
    return {
        (str(d), str(k)): (g["c"].to_numpy(np.int64), g["n_c"].to_numpy(np.int64))
        for (d, k), g in table.groupby(["domain", "kind"], sort=True)
    }


def vne_vectors(
    base: DataFrame, docs: dict[str, int], n: int, seed: int, model: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Domain → ((≤ n, d) sentence vectors, (≤ n,) tokens) of the n documents with the smallest
    hash uniform."""
    rates = {d: min(1.0, (VNE_OVERSAMPLE * n + VNE_SLACK) / max(k, 1)) for d, k in docs.items()}
    candidates = base.withColumn("u", hash_uniform_column(seed, core.ENTROPY_STREAM + 1)).where(
        F.col("u") < _rate_map(rates)[F.col("domain")]
    )
    rows = (
        candidates.select("domain", "doc_key", "u", "n_tokens", "text")
        .mapInPandas(sentence_vectors(model), VECTORS_SCHEMA)
        .collect()
    )
    by_domain: dict[str, list] = {}
    for r in rows:
        by_domain.setdefault(r["domain"], []).append((r["u"], r["doc_key"], r["n_tokens"] or 0, r["vector"]))
    out = {}
    for d, items in by_domain.items():
        items.sort(key=lambda x: (x[0], x[1]))  # the row order, and so the bits, ignore partitioning
        kept = items[:n]
        out[d] = (
            np.asarray([x[3] for x in kept], dtype=np.float64),
            np.asarray([x[2] for x in kept], dtype=np.int64),
        )
    return out


def _read_input(
    spark: SparkSession, config: PipelineConfig, source: str, domains: Sequence[str] | None
) -> tuple[DataFrame, int]:
    df, version = read_latest(spark, source, "entropy.input_table", "run quadmix annotate first")
    needed = [
        ("domain_column", config.domain_column),
        ("token_column", config.token_column),
        ("entropy.input_table", "text"),
        ("entropy.input_table", "doc_key"),
    ]
    for key, column in needed:
        if column not in df.columns:
            raise ConfigError(f"{key}: column {column!r} is not in {source}")
    base = df.select(
        F.col(config.domain_column).cast("string").alias("domain"),
        "doc_key",
        "text",
        F.col(config.token_column).cast("long").alias("n_tokens"),
    ).where(F.col("domain").isNotNull())
    if domains is not None:
        base = base.where(F.col("domain").isin(list(domains)))
    return base, version


def run_entropy(
    spark: SparkSession,
    config: PipelineConfig,
    domains: Sequence[str] | None = None,
) -> EntropySummary:
    """Compute, write and return one entropy run (``domains``: only these, e.g. an experiment's pool)."""
    started = time.time()
    cfg = config.entropy
    check_config(config)
    with CostMeter(spark, "entropy") as meter:
        source = config.table_path(cfg.input_table)
        base, version = _read_input(spark, config, source, domains)
        summary = plan_run(config, base, source, version, domains)
        if any(m != "vne" for m in cfg.measures):
            count_entropies(base, cfg, summary)
        if "vne" in cfg.measures:
            vne_entropies(spark, config, base, summary)
        summary.values = {m: summary.values[m] for m in MEASURES if m in summary.values}  # MEASURES order
        write_mixtures(config, summary)
        summary.table = config.table_path(cfg.output_table)
        tokens = sum(summary.domain_tokens.values())  # the domains read (their samples are chosen by hash)
        summary.table_version = _write_table(spark, summary, config, commit_cost(meter, tokens))
    summary.cost = meter.cost.with_tokens(tokens).to_json()
    summary.seconds = round(time.time() - started, 1)
    files.write_text(files.join(cfg.output_dir, SUMMARY_NAME), json.dumps(asdict(summary), indent=2))
    return summary


def plan_run(
    config: PipelineConfig, base: DataFrame, source: str, version: int, domains: Sequence[str] | None
) -> EntropySummary:
    """The run's domains with their sizes (one aggregation) and identity, as an empty summary."""
    sizes = base.groupBy("domain").agg(F.count(F.lit(1)).alias("docs"), F.sum("n_tokens").alias("tokens"))
    size_rows = sizes.collect()
    domain_docs = {r["domain"]: int(r["docs"]) for r in size_rows}
    domain_tokens = {r["domain"]: int(r["tokens"] or 0) for r in size_rows}
    names = sorted(domain_docs)
    if domains is not None and sorted(set(domains)) != names:
        missing = sorted(set(domains) - set(names))
        raise ConfigError(f"entropy.input_table: no documents of {missing} in {source}")
    if not names:
        raise ConfigError(f"entropy.input_table: {source} has no document with a domain")
    key = entropy_id(config, source, version, domains)
    log.info("entropy %s: %d domains of %s version %d", key, len(names), source, version)
    cfg = config.entropy
    summary = EntropySummary(
        key, source, version, names, list(cfg.measures), {}, {}, {}, {}, domain_tokens, domain_docs
    )
    summary.estimator, summary.temperature = cfg.estimator, cfg.temperature
    return summary


def count_entropies(base: DataFrame, cfg: EntropyConfig, summary: EntropySummary) -> None:
    """SE, JE and CE of each domain's hash sample from its count histograms, into ``summary``."""
    names = summary.domains
    rates = {d: min(1.0, cfg.tokens_per_domain / max(summary.domain_tokens[d], 1)) for d in names}
    hist = token_histograms(base, rates, cfg.seed, cfg.tokenizer)
    summary.histogram_rows = int(sum(len(c) for c, _ in hist.values()))
    by_domain: dict[str, dict[str, float]] = {}
    plugin: dict[str, dict[str, float]] = {}
    for d in names:
        kinds = {k: hist[(d, k)] for k in COUNT_KINDS if (d, k) in hist}
        if "pair" not in kinds:
            raise ConfigError(
                f"entropy.tokens_per_domain: the sample of domain {d!r} has no pair of adjacent tokens "
                f"(documents sampled: {int(hist[(d, DOCS)][0][0]) if (d, DOCS) in hist else 0})"
            )
        by_domain[d] = entropies_from_histograms(kinds, cfg.estimator)
        plugin[d] = entropies_from_histograms(kinds)
        c, n = kinds["unigram"]
        summary.tokens[d] = int(np.sum(c * n))
        summary.docs[d] = int(hist[(d, DOCS)][0][0])
    for m in cfg.measures:
        if m != "vne":
            summary.values[m] = {d: by_domain[d][m] for d in names}
            if cfg.estimator != "plugin":
                summary.plugin_values[m] = {d: plugin[d][m] for d in names}


def vne_entropies(
    spark: SparkSession, config: PipelineConfig, base: DataFrame, summary: EntropySummary
) -> None:
    """VNE of each domain's sentence vectors (zero vectors left out), into ``summary``."""
    cfg = config.entropy
    model = skipgram_model(config, base, summary) if cfg.vne_model == VNE_SKIPGRAM else vne_model(config)
    summary.vne_model, summary.vne_model_file = cfg.vne_model, str(model)
    with files.local_copy(resolve(str(model))) as local:
        shipped = ship_file(spark, str(local))
    vectors = vne_vectors(base, summary.domain_docs, cfg.vne_docs, cfg.seed, shipped)
    summary.values["vne"] = {}
    for d in summary.domains:
        v, tokens = vectors.get(d, (np.zeros((0, 1)), np.zeros(0, np.int64)))
        nonzero = np.linalg.norm(v, axis=1) > 0
        summary.vne_zero_vectors[d] = int((~nonzero).sum())
        if not nonzero.any():
            raise ConfigError(f"entropy.vne_docs: domain {d!r} has no document with a non-zero vector")
        summary.values["vne"][d] = von_neumann_entropy(v[nonzero])
        summary.vne_docs[d] = int(nonzero.sum())
        summary.vne_tokens[d] = int(tokens[nonzero].sum())
        summary.vne_dim = int(v.shape[1])


def skipgram_sample(base: DataFrame, config: PipelineConfig, summary: EntropySummary) -> DataFrame:
    """(u, doc_key, text on one line) of the skipgram model's training sample: per domain, the
    documents whose ``hash_uniform(doc_key, seed, ENTROPY_STREAM + 2)`` is below its rate."""
    cfg = config.entropy
    rates = {d: min(1.0, cfg.vne_train_tokens / max(summary.domain_tokens[d], 1)) for d in summary.domains}
    u = hash_uniform_column(cfg.seed, core.ENTROPY_STREAM + 2)
    return (
        base.withColumn("u", u)
        .where(F.col("u") < _rate_map(rates)[F.col("domain")])
        .select(
            "u", "doc_key", F.regexp_replace(F.coalesce("text", F.lit("")), r"[\r\n]+", " ").alias("text")
        )
    )


def skipgram_model(config: PipelineConfig, base: DataFrame, summary: EntropySummary) -> str:
    """The cached skipgram model of this input's sample, trained first when there is none."""
    cfg = config.entropy
    sample = skipgram_sample(base, config, summary)
    digest = F.xxhash64("doc_key", "text").cast("decimal(38,0)")  # a sum of them ignores row order
    row = sample.agg(F.count(F.lit(1)), F.sum(digest), F.sum(F.hash("doc_key", "text").cast("long"))).first()
    docs = int(row[0])
    if docs == 0:
        raise ConfigError("entropy.vne_train_tokens: the skipgram model's sample holds no document")
    key = core.content_key([docs, str(row[1]), int(row[2]), vne_identity(cfg, None)], 16)
    path = files.join(config.table_path("_models"), "vne", f"skipgram-{key}.bin")
    if files.exists(path):
        log.info("entropy: VNE skipgram model %s (cached; %d training documents)", path, docs)
        return path
    log.info("entropy: training the VNE skipgram model on %d documents (%d-d)", docs, cfg.vne_dim)
    workdir = Path(tempfile.mkdtemp(prefix="quadmix-vne-"))
    try:
        train_file = workdir / "train.txt"
        with train_file.open("wb") as out:  # the sample only, streamed: never more on the driver
            for r in sample.orderBy("u", "doc_key").select("text").toLocalIterator():
                out.write(r["text"].encode("utf-8") + b"\n")
        model = _fit_skipgram(train_file, cfg)
        with files.local_file(path) as local:
            model.save_model(str(local))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary.vne_trained = True
    return path


def _fit_skipgram(train_file: Path, cfg: EntropyConfig):
    import fasttext

    # One thread: fastText's threads race on the shared matrices, so only one gives the same model
    # for the same sample (fastText's own seed is fixed at 0; the Python wrapper does not take it).
    # On small samples this build now and then stops with "Encountered NaN" where the same call
    # succeeds when repeated: a few tries, then an error that says what to change.
    train = partial(
        fasttext.train_unsupervised,
        input=str(train_file),
        model="skipgram",
        dim=cfg.vne_dim,
        epoch=cfg.vne_epochs,
        minn=SKIPGRAM_SUBWORDS[0],
        maxn=SKIPGRAM_SUBWORDS[1],
        bucket=SKIPGRAM_SUBWORDS[2],
        thread=1,
        verbose=0,
    )
    for _ in range(SKIPGRAM_TRIES - 1):
        try:
            return train()
        except RuntimeError as err:
            if "NaN" not in str(err):
                raise
            log.warning("entropy: fastText stopped with %s; training the skipgram model again", err)
    try:
        return train()
    except RuntimeError as err:
        raise RuntimeError(
            f"entropy: fastText stopped training the VNE skipgram model {SKIPGRAM_TRIES} times: {err} "
            "(raise entropy.vne_train_tokens or entropy.vne_epochs, or set entropy.vne_model: classifier)"
        ) from err


def write_mixtures(config: PipelineConfig, summary: EntropySummary) -> None:
    """One mixture file r = softmax(H) per measure in ``entropy.output_dir``; shares and paths into
    ``summary``."""
    cfg = config.entropy
    files.makedirs(cfg.output_dir)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    entropy_table = config.table_path(cfg.output_table)
    for m, per_domain in summary.values.items():
        vne = m == "vne"
        mixture = softmax_mixture(
            per_domain,
            cfg.temperature,
            method=f"entropy:{m}",
            measure=m,
            entropy_nats=per_domain,
            # VNE is an eigenvalue entropy: no sample-frequency estimator applies
            estimator=None if vne else cfg.estimator,
            **({"entropy_plugin_nats": summary.plugin_values[m]} if m in summary.plugin_values else {}),
            log_base=LOG_BASE,
            softmax_temperature=cfg.temperature,
            entropy_id=summary.entropy_id,
            inputs={
                "table": summary.input_table,
                "version": summary.annotated_version,
                "entropy_table": entropy_table,
            },
            tokens=summary.vne_tokens if vne else summary.tokens,
            docs=summary.vne_docs if vne else summary.docs,
            sample={
                "tokens_per_domain": cfg.tokens_per_domain,
                "tokenizer": cfg.tokenizer,
                "vne_docs": cfg.vne_docs,
                "vne_model": summary.vne_model if vne else None,
                "vne_model_file": summary.vne_model_file if vne else None,
                "vne_dim": summary.vne_dim if vne else None,
                "vne_train_tokens": cfg.vne_train_tokens if vne and cfg.vne_model == VNE_SKIPGRAM else None,
                "seed": cfg.seed,
            },
            created_at=created,
            code_version=__version__,
        )
        summary.shares[m] = dict(mixture.shares)
        summary.mixtures[m] = files.join(cfg.output_dir, f"mixture_entropy_{m}.yaml")
        with files.local_file(summary.mixtures[m]) as local:
            mixture.to_file(local)


def _write_table(
    spark: SparkSession, s: EntropySummary, config: PipelineConfig, cost: dict[str, Any]
) -> int | None:
    rows = []
    for m, per_domain in s.values.items():
        for d, value in per_domain.items():
            tokens = s.vne_tokens[d] if m == "vne" else s.tokens[d]
            docs = s.vne_docs[d] if m == "vne" else s.docs[d]
            rows.append((s.entropy_id, s.input_table, s.annotated_version, d, m, float(value), tokens, docs))
    df = spark.createDataFrame(rows, TABLE_SCHEMA)
    metadata = {
        "job": "entropy",
        "entropy_id": s.entropy_id,
        "input_table": s.input_table,
        "annotated_version": s.annotated_version,
        "estimator": s.estimator,
        "log_base": s.log_base,
        **({"vne_model": s.vne_model_file, "vne_dim": s.vne_dim} if s.vne_dim else {}),
        "config": asdict(config.entropy),
        "code_version": __version__,
        **cost,
    }
    if not tables.exists(spark, s.table):
        return tables.write(df, s.table, "append", metadata)
    # A rerun of the same inputs replaces its rows instead of adding them again.
    return tables.write(
        df, s.table, "overwrite", metadata, {"replaceWhere": f"entropy_id = '{s.entropy_id}'"}
    )


def format_summary(s: EntropySummary) -> str:
    lines = [
        f"entropy {s.entropy_id}: {len(s.domains)} domains of {s.input_table} (version "
        f"{s.annotated_version}); values in nats (log base {s.log_base}), SE/JE/CE {s.estimator} "
        f"estimates from the tokens sampled per domain, shares r = softmax(H / {s.temperature:g})",
    ]
    header = f"  {'domain':<20} {'tokens':>10} {'docs':>7}"
    for m in s.values:
        header += f" {m.upper():>7} {'r_' + m:>7}"
    lines.append(header)
    for d in s.domains:
        line = f"  {d:<20} {s.tokens.get(d, 0):>10,} {s.docs.get(d, 0):>7,}"
        for m in s.values:
            line += f" {s.values[m][d]:>7.3f} {s.shares[m][d]:>7.4f}"
        lines.append(line)
    if s.tokens:
        lines.append(
            f"  sample: {sum(s.tokens.values()):,} of {sum(s.domain_tokens.values()):,} tokens, "
            f"{sum(s.docs.values()):,} documents; {s.histogram_rows:,} count-histogram rows collected"
        )
    if s.vne_docs:
        zero = sum(s.vne_zero_vectors.values())
        lines.append(
            f"  VNE: {sum(s.vne_docs.values()):,} document vectors of {s.vne_dim} dimensions from the "
            f"{s.vne_model} model {s.vne_model_file}"
            + (" (trained now)" if s.vne_trained else "")
            + (f" ({zero} zero vectors left out)" if zero else "")
        )
    lines.append(
        f"  wrote {len(s.mixtures)} mixture files to {files.parent(next(iter(s.mixtures.values())))}, "
        f"{s.table} version {s.table_version} in {s.seconds}s"
    )
    if s.cost is not None:
        lines.append(f"  {Cost.from_json(s.cost).line()}")
    return "\n".join(lines)
