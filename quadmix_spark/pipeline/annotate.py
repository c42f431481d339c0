"""The annotate job: raw corpus → annotated Delta table (+ quarantine), scored once.

Steps: check config, models and the input's named columns (no Spark job over the data yet) → a
census of the input on the columns the quarantine reasons need: records, records with a reason,
ids that more than one record carries (JSON lines are parsed once, by this job, and persisted; a
Parquet or Delta input is read again by each later query, only the columns it needs) → split, one
record per id (matched by id only when the census found a duplicated one), dropping ids the
annotated table already holds with the same text (reruns and nightly refreshes score only new
documents; a changed text follows ``annotate.on_changed_text``) → quarantine MERGE keyed by record,
committed before the documents it balances (skipped when the census found nothing to quarantine),
and a check of the quarantined share (``annotate.max_quarantine_fraction``) before the expensive
pass → one ``mapInArrow`` pass running every annotator per Arrow batch → an insert-only Delta
MERGE on id with provenance (two runs at once leave each id once; a MERGE that updates too when
changed texts replace their rows; a plain overwrite in ``overwrite`` mode) → summary with
reconciled counts.

Each term of ``input = annotated + already annotated + quarantined`` is counted from the data where
it passes: input records by the job that reads them, ids already in the table where they leave the
clean documents (observed during the annotated write), annotated rows from the Delta commit's
metrics (rows another run inserted first count as already annotated: the rows reaching the MERGE,
observed, less those it inserted), quarantined records as the quarantine write consumes them (or
none, when the census found no record to quarantine and no duplicated id). A run
whose terms do not add up raises :class:`CountsDoNotReconcile` after both writes, naming the
versions it committed. The per-domain lines of the summary are observed on the rows written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from quadmix_spark import __version__, core
from quadmix_spark.config import AnnotatorConfig, ConfigError, InputConfig, PipelineConfig, resolve
from quadmix_spark.spark import tables
from quadmix_spark.spark.reading import (
    REASONS,
    InputFiles,
    StagedInput,
    check_changed_text_policy,
    check_input_columns,
    check_input_files,
    check_input_path,
    split_input,
    stage_input,
)
from udfs.annotate import UNKNOWN, annotate_batches, output_schema
from udfs.files import OPENERS, check_files
from udfs.heuristics import SIGNALS
from udfs.models import default_langid_model, fasttext_labels, load_tokenizer

log = logging.getLogger(__name__)

# Duplicated ids up to this many are shipped to every task to be matched with the clean records;
# more, and both sides are shuffled by id.
BROADCAST_DUPLICATED_IDS = 200_000


@dataclass
class AnnotateSummary:
    """What one annotate run did; ``input_rows == annotated + skipped_existing + quarantined``."""

    input_rows: int
    annotated: int
    skipped_existing: int
    quarantined: int
    quarantined_by_reason: dict[str, int]
    docs_by_domain: dict[str, int] = field(default_factory=dict)
    tokens_by_domain: dict[str, int] = field(default_factory=dict)
    # With annotate.min_domain_confidence: documents below it (now ``unknown``) by the model's label.
    low_confidence_by_domain: dict[str, int] = field(default_factory=dict)
    skipped_hidden_files: int = 0  # files never read (annotate.input.skip_hidden_files)
    # Ids the table holds with another text (annotate.on_changed_text): kept (part of
    # ``skipped_existing``) or replaced (part of ``annotated``).
    changed_text_kept: int = 0
    replaced: int = 0
    annotated_version: int | None = None
    quarantine_version: int | None = None
    seconds: float = 0.0

    @property
    def reconciles(self) -> bool:
        return self.input_rows == self.annotated + self.skipped_existing + self.quarantined


class AnnotateFailed(RuntimeError):
    """An annotate run that must not pass as a success; ``summary`` holds what was counted."""

    summary: AnnotateSummary | None = None


class QuarantineShareExceeded(AnnotateFailed):
    """More of the input was quarantined than ``annotate.max_quarantine_fraction`` allows."""


class AnnotatorsChanged(ConfigError):
    """An incremental run whose annotators differ from those that scored the table it would append to."""


class CountsDoNotReconcile(AnnotateFailed):
    """The counted terms of an annotate run do not add up: a record was lost or doubled."""

    def __init__(self, summary: AnnotateSummary):
        self.summary = summary
        s = summary
        super().__init__(
            f"annotate: counts do not reconcile: {s.input_rows} input rows != {s.annotated} annotated "
            f"+ {s.skipped_existing} already annotated + {s.quarantined} quarantined "
            f"(annotated table version {s.annotated_version}, quarantine version {s.quarantine_version})"
        )


def annotator_specs(config: PipelineConfig) -> list[dict[str, Any]]:
    """Plain-dict annotator specs (what the Python workers receive)."""
    specs = []
    for ann in config.annotate.annotators:
        spec = {k: v for k, v in asdict(ann).items() if v is not None}
        if ann.kind == "language_id" and not ann.model:
            spec["model"] = default_langid_model()
        if ann.kind == "fasttext_domain" and config.annotate.min_domain_confidence:
            spec["min_confidence"] = config.annotate.min_domain_confidence
        specs.append(spec)
    return specs


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def check_annotators(annotators: list[AnnotatorConfig], specs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Fail before Spark starts when a model, tokenizer, label or signal is wrong.

    Every local fastText model is loaded here, on the driver, once: a file that is not a model, or
    a ``label`` the quality model does not have, fails in seconds, naming the key, instead of in a
    Python worker after the job started. Returns each local model's labels, by its path, so that
    no model is loaded twice for them.
    """
    if not annotators:
        raise ConfigError("annotate.annotators: at least one annotator is required")
    models: dict[str, str] = {}
    labels: dict[str, list[str]] = {}
    for i, spec in enumerate(specs):
        key = f"annotate.annotators[{i}]"
        model = spec.get("model")
        if model:
            if "://" not in model and not Path(model).is_file():
                raise ConfigError(f"{key}.model: model file not found: {model}")
            name = os.path.basename(model)
            if models.setdefault(name, model) != model:
                raise ConfigError(f"{key}.model: two different models share the file name {name}")
            if "://" not in model:
                labels[model] = _check_model(key, spec, model)
        if spec["kind"] == "tokens" and spec["tokenizer"] != "whitespace":
            try:
                load_tokenizer(spec["tokenizer"])
            except Exception as err:
                raise ConfigError(f"{key}.tokenizer: unknown tokenizer {spec['tokenizer']!r}") from err
        unknown = set(spec.get("signals") or ()) - set(SIGNALS)
        if unknown:
            raise ConfigError(f"{key}.signals: unknown signal(s) {sorted(unknown)}")
    return labels


def _check_model(key: str, spec: dict[str, Any], model: str) -> list[str]:
    try:
        labels = fasttext_labels(model)
    except Exception as err:
        raise ConfigError(f"{key}.model: {model} is not a fastText model that loads: {err}") from err
    if spec["kind"] == "fasttext_quality" and spec["label"] not in labels:
        raise ConfigError(f"{key}.label: {spec['label']!r} is not one of the labels of {model}: {labels}")
    if spec.get("min_confidence") and UNKNOWN in labels:
        raise ConfigError(
            f"annotate.min_domain_confidence: the domain model {model} has a label {UNKNOWN!r}, the "
            "domain given to low-confidence documents"
        )
    return labels


def annotator_hash(specs: list[dict[str, Any]]) -> str:
    """Hash of the annotator config and the model files' contents."""
    content = [
        {**s, "model_sha256": _file_digest(s["model"])} if s.get("model") and "://" not in s["model"] else s
        for s in specs
    ]
    return core.content_key(content, 16)


def check_annotator_hash(table: DataFrame, path: str, ann_hash: str) -> None:
    """Refuse to add rows scored by other annotators to a table (one small scan of its hash column).

    Rows of two annotator hashes in one table would mix scores of different models or settings.
    """
    if "annotator_hash" in table.columns:
        found = {r[0] for r in table.select("annotator_hash").distinct().limit(10).collect()}
    else:
        found = {None}
    others = sorted(str(h) for h in found - {ann_hash})
    if others:
        raise AnnotatorsChanged(
            f"annotate.annotators: the annotated table {path} was scored by annotators with hash "
            f"{', '.join(others)}, but this run's annotators (their settings and model files) hash to "
            f"{ann_hash}; an incremental run would mix their scores in one table. Rescore everything "
            "with --mode overwrite, or write to a new annotate.output_table"
        )


def annotate_frame(df: DataFrame, specs: list[dict[str, Any]], text_column: str = "text") -> DataFrame:
    """Add every annotator's columns to ``df`` in one Arrow pass (lazy; nothing runs yet)."""
    in_schema = to_arrow_schema(df.schema)
    out_schema = from_arrow_schema(output_schema(in_schema, specs))

    def run(batches):  # runs on the workers; specs are plain data, so the closure pickles small
        return annotate_batches(batches, specs, text_column)

    return df.mapInArrow(run, out_schema)


def _domain_column(specs: list[dict[str, Any]]) -> str | None:
    return next((s["column"] for s in specs if s["kind"] == "fasttext_domain"), None)


def _token_column(specs: list[dict[str, Any]]) -> str | None:
    return next((s["column"] for s in specs if s["kind"] == "tokens"), None)


def find_unreadable_files(spark: SparkSession, cfg: InputConfig, files: InputFiles) -> InputFiles:
    """``files`` with the files Spark could not read whole: one small Spark job over the file list.

    JSON lines: every compressed file (``.gz``, ``.bz2``) is decompressed once to its end (with
    ``check_compressed_files``), so a truncated one is found before Spark aborts on it. Parquet:
    every file's footer is read, and a file with a column whose type differs from the type most
    files give it (ties: the first file's type) is unreadable too: the files are read with their
    schemas merged, so that a record keeps all its columns in ``raw``, and Spark cannot merge two
    types. Only local files are checked.
    """
    if cfg.format == "jsonl" and cfg.check_compressed_files:
        uris = [uri for uri, _ in files.data if uri.endswith(tuple(OPENERS))]
    elif cfg.format == "parquet":
        uris = [uri for uri, _ in files.data]
    else:
        uris = []
    if not uris:
        return files
    kind = cfg.format

    def run(batches):  # on the workers; plain data in the closure
        return check_files(batches, kind)

    frame = spark.createDataFrame([(u,) for u in uris], "uri string")
    tasks = max(1, min(len(uris), spark.sparkContext.defaultParallelism * 4))
    rows = frame.repartition(tasks).mapInPandas(run, "uri string, error string, types string").collect()
    unreadable = {r["uri"]: r["error"] for r in rows if r["error"]}
    typed = sorted((r["uri"], json.loads(r["types"])) for r in rows if r["types"] and not r["error"])
    columns = sorted({c for _, types in typed for c in types})
    for column in columns:
        counts = Counter(types[column] for _, types in typed if column in types)
        if len(counts) < 2:
            continue
        first = next(types[column] for _, types in typed if column in types)
        usual = max(counts, key=lambda t: (counts[t], t == first))
        for uri, types in typed:
            if types.get(column, usual) != usual:
                unreadable.setdefault(
                    uri, f"column {column!r} is {types[column]} here, {usual} in most files"
                )
    if unreadable:
        log.warning("%d unreadable file(s) under %s: %s", len(unreadable), cfg.path, sorted(unreadable)[:5])
    if unreadable and len(unreadable) == len(files.data):
        shown = "; ".join(f"{u}: {e}" for u, e in sorted(unreadable.items())[:3])
        raise ConfigError(f"annotate.input.path: no file under {cfg.path} can be read ({shown})")
    return replace(files, unreadable=unreadable)


def run_annotate(
    spark: SparkSession,
    config: PipelineConfig,
    mode: str = "incremental",
    annotate_step: Callable[[DataFrame, list[dict[str, Any]]], DataFrame] | None = None,
) -> AnnotateSummary:
    """Run the annotate job; ``mode`` is ``incremental`` (score new ids only) or ``overwrite``.

    ``annotate_step`` adds the annotators' columns to the clean documents (default
    :func:`annotate_frame`); it must keep every row, and the counts catch one that does not:
    :class:`CountsDoNotReconcile` is raised when the counted terms do not add up.

    JSON lines are parsed once: the records, with their quarantine reasons, are persisted on the
    executors (memory, spilling to disk) by the census, and the quarantine and the documents are
    written from that copy. A Parquet or Delta input costs less to read again than to cache: the
    census reads the columns the reasons need, the documents' write the whole records, and the
    quarantine's write happens only when the census found records to quarantine.
    """
    step = annotate_step or annotate_frame
    started = time.time()
    cfg = config.annotate
    specs = annotator_specs(config)
    labels = _domain_labels(specs, check_annotators(cfg.annotators, specs))
    check_input_path(spark, cfg.input)
    files = find_unreadable_files(spark, cfg.input, check_input_files(spark, cfg.input))
    check_input_columns(spark, cfg.input, files=files)
    out_path = config.table_path(cfg.output_table)
    ann_hash = annotator_hash(specs)
    existing_version = tables.version(spark, out_path) if mode == "incremental" else None
    existing = None
    if existing_version is not None:
        existing = spark.read.format("delta").option("versionAsOf", existing_version).load(out_path)
        check_annotator_hash(existing, cfg.output_table, ann_hash)

    for spec in specs:  # ship model files; workers read them through SparkFiles
        if spec.get("model"):
            spark.sparkContext.addFile(resolve(spec["model"]))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.spark.arrow_batch_size))
    spark.conf.set("spark.sql.files.maxRecordsPerFile", str(config.spark.max_records_per_file))

    metadata = {
        "job": "annotate",
        "input_path": cfg.input.path,
        "input_format": cfg.input.format,
        "input_version": _input_version(spark, cfg.input.format, resolve(cfg.input.path)),
        "annotator_hash": ann_hash,
        "annotators": specs,
        "code_version": __version__,
        "skipped_hidden_files": len(files.hidden),
    }
    check_changed_text_policy(cfg.on_changed_text)
    staged = stage_input(spark, cfg.input, cfg.max_text_bytes, files)
    # Parsing JSON lines costs more than keeping the parsed records; a columnar file is cheaper
    # to read again (only the columns each query needs) than to cache.
    if cfg.input.format == "jsonl":
        staged.rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _annotate_staged(
            spark, config, mode, step, specs, labels, staged, existing, metadata, files, started
        )
    finally:
        staged.rows.unpersist()


def _annotate_staged(
    spark: SparkSession,
    config: PipelineConfig,
    mode: str,
    step: Callable[[DataFrame, list[dict[str, Any]]], DataFrame],
    specs: list[dict[str, Any]],
    labels: list[str] | None,
    staged: StagedInput,
    existing: DataFrame | None,
    metadata: dict[str, Any],
    files: InputFiles,
    started: float,
) -> AnnotateSummary:
    cfg = config.annotate
    out_path = config.table_path(cfg.output_table)
    q_path = config.table_path(cfg.quarantine_table)
    # A census of the input, on the columns the quarantine reasons need: records, records with a
    # reason, and the ids that more than one clean record carries (none: they are not matched).
    clean_key = F.when(F.col("_reason").isNull(), F.col("id")).alias("_k")
    counts = (
        staged.rows.groupBy(clean_key)
        .count()
        .agg(
            F.sum("count").alias("rows"),
            F.sum(F.when(F.col("_k").isNull(), F.col("count"))).alias("rejected"),
            F.count(F.when(F.col("_k").isNotNull() & (F.col("count") > 1), 1)).alias("dup_ids"),
        )
        .first()
    )
    read_rows, rejected, dup_ids = (int(counts[k] or 0) for k in ("rows", "rejected", "dup_ids"))
    split = split_input(
        spark,
        staged,
        cfg.input,
        existing=existing.select("id", "text") if existing is not None else None,
        on_changed_text=cfg.on_changed_text,
        duplicated=dup_ids,
        broadcast_limit=BROADCAST_DUPLICATED_IDS,
    )
    # Records as read, and each unreadable file as one record (quarantined whole, never read).
    input_rows = read_rows + split.unreadable_files

    # The quarantine first: it holds the rejected records before the documents they balance
    # are committed, and a run that would quarantine too much of its input fails before the
    # expensive pass. An input with nothing to quarantine is not read for it.
    changed_to_quarantine = existing is not None and cfg.on_changed_text == "quarantine"
    if rejected or dup_ids or split.unreadable_files or changed_to_quarantine:
        q_counts = Observation()
        q_version = _write_quarantine(spark, split.quarantined, q_path, metadata, q_counts)
        observed_q = q_counts.get
        quarantined = int(observed_q["rows"])
        by_reason = {r: int(observed_q[r]) for r in REASONS if observed_q[r]}
    else:  # the table is there all the same, for whoever reads it
        tables.ensure_table(spark, q_path, _stamped_quarantine(split.quarantined).schema)
        q_version, quarantined, by_reason = tables.version(spark, q_path), 0, {}
    if input_rows and quarantined / input_rows > cfg.max_quarantine_fraction:
        reasons = ", ".join(f"{r}: {n}" for r, n in by_reason.items())
        raise QuarantineShareExceeded(
            f"annotate.max_quarantine_fraction: {quarantined} of {input_rows} input records "
            f"({quarantined / input_rows:.1%}) were quarantined ({reasons}), more than the "
            f"{cfg.max_quarantine_fraction:g} allowed; the annotated table was not written "
            f"(quarantine version {q_version} holds the records)"
        )

    # Ids the table already holds left the clean documents in split_input (counted there, observed).
    annotated = step(split.clean, specs).withColumns(
        {"doc_key": F.xxhash64("id"), "annotator_hash": F.lit(metadata["annotator_hash"])}
    )
    # What reaches the write, counted as it passes (the summary's per-domain lines come from here,
    # not from a read of the table).
    written = Observation()
    annotated = annotated.observe(written, *_written_aggregates(specs, labels))
    log.info("annotating %s → %s (annotators: %s)", cfg.input.path, out_path, [s["name"] for s in specs])
    replaced = 0
    if mode != "incremental":
        commit = tables.write_commit(annotated, out_path, "overwrite", metadata)
        annotated_rows = commit.metric("numOutputRows") if commit else 0
        raced = 0
    elif existing is not None and cfg.on_changed_text == "replace":
        # Changed texts update their row, new ids are inserted: one MERGE on id, one commit.
        commit = tables.merge_commit(annotated, out_path, "id", metadata)
        replaced = commit.metric("numTargetRowsUpdated") if commit else 0
        annotated_rows = (commit.metric("numTargetRowsInserted") if commit else 0) + replaced
        raced = 0
    else:
        # Insert-only MERGE on id: another run that inserted some of these ids meanwhile keeps
        # its rows, and they count as already annotated.
        commit = tables.insert_new(annotated, out_path, "id", metadata)
        annotated_rows = commit.metric("numTargetRowsInserted") if commit else 0
        raced = int(written.get["rows"]) - annotated_rows

    # Both writes ran, so every observation has its numbers; none of these is a pass of its own.
    same, changed = (int(split.existing_counts.get[k]) for k in ("same", "changed"))
    kept = changed if cfg.on_changed_text == "keep" else 0
    summary = AnnotateSummary(
        input_rows=input_rows,
        annotated=annotated_rows,
        skipped_existing=same + kept + raced,
        quarantined=quarantined,
        quarantined_by_reason=by_reason,
        skipped_hidden_files=len(files.hidden),
        changed_text_kept=kept,
        replaced=replaced,
        annotated_version=commit.version if commit else None,
        quarantine_version=q_version,
    )
    if not summary.reconciles:
        summary.seconds = round(time.time() - started, 1)
        raise CountsDoNotReconcile(summary)
    _domain_totals(written.get, labels, summary)
    summary.seconds = round(time.time() - started, 1)
    return summary


def _domain_labels(specs: list[dict[str, Any]], model_labels: dict[str, list[str]]) -> list[str] | None:
    """The values the domain column can take: the model's labels (and ``unknown``); None if unknown.

    ``model_labels``: each local model's labels by path, as :func:`check_annotators` read them.
    """
    spec = next((s for s in specs if s["kind"] == "fasttext_domain"), None)
    if spec is None or spec["model"] not in model_labels:
        return None
    labels = model_labels[spec["model"]]
    return sorted({*labels, UNKNOWN}) if spec.get("min_confidence") else sorted(labels)


def _written_aggregates(specs: list[dict[str, Any]], labels: list[str] | None) -> list[Column]:
    """Rows reaching the write and, per domain label, documents, tokens and low-confidence ones."""
    aggs = [F.count(F.lit(1)).alias("rows")]
    domain, tokens = _domain_column(specs), _token_column(specs)
    labels = labels or []
    min_confidence = next((s.get("min_confidence") for s in specs if s["kind"] == "fasttext_domain"), None)
    for i, label in enumerate(labels):
        here = F.col(domain) == label
        aggs.append(F.count(F.when(here, 1)).alias(f"docs_{i}"))
        if tokens:
            aggs.append(F.sum(F.when(here, F.col(tokens))).alias(f"tokens_{i}"))
        if min_confidence:
            low = (F.col(f"{domain}_label") == label) & (F.col(f"{domain}_prob") < min_confidence)
            aggs.append(F.count(F.when(low, 1)).alias(f"low_{i}"))
    return aggs


def _write_quarantine(
    spark: SparkSession, rows: DataFrame, path: str, metadata: dict, counts: Observation
) -> int | None:
    """Insert the quarantined records not yet recorded (a MERGE on ``record_key``).

    ``counts`` observes them (``rows``, one per reason), whether new or already recorded.
    """
    per_reason = [F.count(F.when(F.col("reason") == r, 1)).alias(r) for r in REASONS]
    rows = _stamped_quarantine(rows).observe(counts, F.count(F.lit(1)).alias("rows"), *per_reason)
    # A table from before raw_bytes gains the column.
    commit = tables.insert_new(rows, path, "record_key", metadata, evolve_schema=True)
    return commit.version if commit else tables.version(spark, path)


def _stamped_quarantine(rows: DataFrame) -> DataFrame:
    return rows.withColumn("quarantined_at", F.current_timestamp())


def _input_version(spark: SparkSession, fmt: str, path: str) -> int | None:
    return tables.version(spark, path) if fmt == "delta" else None


def _domain_totals(observed: dict[str, Any], labels: list[str] | None, summary: AnnotateSummary) -> None:
    if not labels:
        return
    for i, label in enumerate(labels):
        docs = int(observed[f"docs_{i}"] or 0)
        if docs:
            summary.docs_by_domain[label] = docs
            if f"tokens_{i}" in observed:
                summary.tokens_by_domain[label] = int(observed[f"tokens_{i}"] or 0)
        if int(observed.get(f"low_{i}") or 0):
            summary.low_confidence_by_domain[label] = int(observed[f"low_{i}"])


def format_summary(summary: AnnotateSummary) -> str:
    """Human-readable end-of-job summary."""
    lines = [
        f"annotate: {summary.input_rows} input rows = {summary.annotated} annotated "
        f"+ {summary.skipped_existing} already annotated + {summary.quarantined} quarantined "
        f"({'reconciled' if summary.reconciles else 'DOES NOT RECONCILE'}) in {summary.seconds}s",
    ]
    for reason, count in sorted(summary.quarantined_by_reason.items()):
        lines.append(f"  quarantined {reason:<16} {count:>8}")
    if summary.changed_text_kept:
        lines.append(
            f"  already annotated with another text, kept the table's: {summary.changed_text_kept} "
            "(annotate.on_changed_text=keep)"
        )
    if summary.replaced:
        lines.append(f"  replaced a changed text: {summary.replaced} (annotate.on_changed_text=replace)")
    if summary.skipped_hidden_files:
        lines.append(
            f"  skipped {summary.skipped_hidden_files} hidden file(s) (annotate.input.skip_hidden_files)"
        )
    if summary.docs_by_domain:
        low = summary.low_confidence_by_domain
        header = f"  {'domain (this run)':<24} {'docs':>8} {'tokens':>12}"
        lines.append(header + (f" {'low-confidence':>15}" if low else ""))
        for domain in sorted({*summary.docs_by_domain, *low}):
            docs, tokens = summary.docs_by_domain.get(domain, 0), summary.tokens_by_domain.get(domain, 0)
            line = f"  {domain:<24} {docs:>8} {tokens:>12}"
            lines.append(line + (f" {low.get(domain, 0):>15}" if low else ""))
        if low:
            lines.append(
                f"  ({sum(low.values())} low-confidence documents, by the model's label, are in 'unknown': "
                "annotate.min_domain_confidence)"
            )
    return "\n".join(lines)
