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
reconciled counts. In the code: plan (:func:`plan_annotate`: every check, the files shipped, no
Spark job over the data) → compute (the census, the split) → write (the quarantine, then the
annotated documents) → publish (the reconciled summary).

The annotators are the classes of :mod:`udfs.annotators`, found by their ``kind``: each checks
itself and its files on the driver, declares its output fields and the files it ships, and is
sent to the workers in the ``mapInArrow`` closure. This module names no kind.

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

import copy
import functools
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from quadmix_spark import __version__, core
from quadmix_spark.config import AnnotateConfig, ConfigError, InputConfig, PipelineConfig, resolve
from quadmix_spark.spark import tables
from quadmix_spark.spark.cost import Cost, CostMeter, commit_cost
from quadmix_spark.spark.reading import (
    REASONS,
    IdMatching,
    InputFiles,
    SplitInput,
    StagedInput,
    check_changed_text_policy,
    check_input_columns,
    check_input_files,
    check_input_path,
    split_records,
    stage_input,
)
from quadmix_spark.spark.shipping import ship, ship_file
from udfs import annotators as registry
from udfs.annotate import annotate_batches, output_schema
from udfs.annotators import Annotator, DomainAnnotator, OptionError, TokenCounter
from udfs.files import OPENERS, check_files

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
    tokens: int | None = None  # of the documents annotated (with a token counter)
    cost: dict[str, Any] | None = None  # wall, executor core/CPU seconds, tokens per core-hour

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


def annotator_specs(config: PipelineConfig) -> list[Annotator]:
    """The configured annotators (:mod:`udfs.annotators`), with the job settings each kind reads."""
    return [ann.annotator(**_settings(config, ann.kind)) for ann in config.annotate.annotators]


def _settings(config: PipelineConfig, kind: str) -> dict[str, Any]:
    """The job settings ``kind`` reads (e.g. ``annotate.min_domain_confidence``); unset ones left out."""
    values = {}
    for name, dotted in registry.settings(kind).items():
        value = functools.reduce(getattr, dotted.split("."), config)
        if value:  # 0 / None: off, and out of the annotator hash
            values[name] = value
    return values


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def check_annotators(annotators: list[Annotator]) -> None:
    """Fail before Spark starts when a file, model, tokenizer, label or signal is wrong.

    Every local file an annotator ships must exist, and files shipped together need distinct names
    (workers find them by name); then each annotator checks itself on the driver (a fastText
    model is loaded here once: a file that is not a model, or a ``label`` the model does not have,
    fails in seconds, naming the key, instead of in a Python worker after the job started).
    """
    if not annotators:
        raise ConfigError("annotate.annotators: at least one annotator is required")
    shipped: dict[str, str] = {}
    for i, annotator in enumerate(annotators):
        key = f"annotate.annotators[{i}]"
        for option, path in annotator.files().items():
            if "://" not in path and not Path(path).is_file():
                raise ConfigError(f"{key}.{option}: {option} file not found: {path}")
            name = os.path.basename(path)
            if shipped.setdefault(name, path) != path:
                raise ConfigError(f"{key}.{option}: two different files share the file name {name}")
        try:
            annotator.check()
        except OptionError as err:
            dotted = registry.settings(annotator.kind).get(err.key, f"{key}.{err.key}")
            raise ConfigError(f"{dotted}: {err}") from err


# The keys every annotator's spec carried when one flat config class held the keys of all kinds,
# with their defaults: kept in the hashed spec, so tables scored since then keep their hash.
_FLAT_SPEC_KEYS = {"direction": "higher_is_better", "tokenizer": "cl100k_base"}


def _plain_spec(annotator: Annotator) -> dict[str, Any]:
    return {**_FLAT_SPEC_KEYS, **annotator.spec()}


def annotator_hash(annotators: list[Annotator]) -> str:
    """Hash of the annotators' settings and the contents of the local files they ship."""
    content = []
    for annotator in annotators:
        spec = _plain_spec(annotator)
        for option, path in annotator.files().items():
            if "://" not in path:
                spec[f"{option}_sha256"] = _file_digest(path)
        content.append(spec)
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


def annotate_frame(df: DataFrame, annotators: list[Annotator], text_column: str = "text") -> DataFrame:
    """Add every annotator's columns to ``df`` in one Arrow pass (lazy; nothing runs yet)."""
    in_schema = to_arrow_schema(df.schema)
    out_schema = from_arrow_schema(output_schema(in_schema, annotators))

    ship(*{type(a) for a in annotators})  # a kind registered outside our packages goes by value

    def run(batches):  # on the workers; the closure holds the configured annotators, no models
        return annotate_batches(batches, annotators, text_column)

    return df.mapInArrow(run, out_schema)


def _domain(annotators: list[Annotator]) -> DomainAnnotator | None:
    return next((a for a in annotators if isinstance(a, DomainAnnotator)), None)


def _token_column(annotators: list[Annotator]) -> str | None:
    return next((a.column for a in annotators if isinstance(a, TokenCounter)), None)


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


AnnotateStep = Callable[[DataFrame, list[Annotator]], DataFrame]


@dataclass(frozen=True)
class AnnotatePlan:
    """What a run does, settled (and checked) before any Spark job over the data."""

    config: PipelineConfig
    mode: str  # incremental | overwrite
    step: AnnotateStep  # adds the annotators' columns to the clean documents
    annotators: list[Annotator]  # checked on the driver
    files: InputFiles
    existing: DataFrame | None  # incremental: the annotated table at the version appended to
    metadata: dict[str, Any]  # provenance of both commits
    started: float  # time.time() at the start of the run
    meter: CostMeter | None = None  # measures the run; commits carry its cost so far

    def commit_metadata(self) -> dict[str, Any]:
        return {**self.metadata, **commit_cost(self.meter)}

    @property
    def cfg(self) -> AnnotateConfig:
        return self.config.annotate

    @property
    def out_path(self) -> str:
        return self.config.table_path(self.cfg.output_table)

    @property
    def q_path(self) -> str:
        return self.config.table_path(self.cfg.quarantine_table)


@dataclass(frozen=True)
class Census:
    """The input counted on the columns the quarantine reasons need (one small aggregation)."""

    rows: int  # records read
    rejected: int  # records with a quarantine reason
    dup_ids: int  # ids that more than one clean record carries


@dataclass(frozen=True)
class QuarantineWrite:
    version: int | None
    rows: int  # quarantined records, new or already recorded
    by_reason: dict[str, int]


@dataclass(frozen=True)
class AnnotatedWrite:
    commit: tables.Commit | None
    rows: int  # annotated: inserted, or inserted + replaced
    raced: int  # rows another run inserted first (already annotated)
    replaced: int  # changed texts that replaced their row (on_changed_text=replace)
    observed: Observation  # what reached the write: rows, and per domain label docs/tokens/low


def run_annotate(
    spark: SparkSession,
    config: PipelineConfig,
    mode: str = "incremental",
    annotate_step: AnnotateStep | None = None,
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
    with CostMeter(spark, "annotate") as meter:
        plan = replace(plan_annotate(spark, config, mode, annotate_step or annotate_frame), meter=meter)
        cfg = config.annotate
        staged = stage_input(spark, cfg.input, cfg.max_text_bytes, plan.files)
        # Parsing JSON lines costs more than keeping the parsed records; a columnar file is cheaper
        # to read again (only the columns each query needs) than to cache.
        if cfg.input.format == "jsonl":
            staged.rows.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            summary = _annotate_staged(spark, plan, staged)
        finally:
            staged.rows.unpersist()
    summary.cost = meter.cost.with_tokens(summary.tokens).to_json()
    return summary


def plan_annotate(spark: SparkSession, config: PipelineConfig, mode: str, step: AnnotateStep) -> AnnotatePlan:
    """Check the annotators, the input and the table appended to; ship the annotators' files."""
    started = time.time()
    cfg = config.annotate
    annotators = annotator_specs(config)
    check_annotators(annotators)
    check_input_path(spark, cfg.input)
    files = find_unreadable_files(spark, cfg.input, check_input_files(spark, cfg.input))
    check_input_columns(spark, cfg.input, files=files)
    ann_hash = annotator_hash(annotators)
    out_path = config.table_path(cfg.output_table)
    existing_version = tables.version(spark, out_path) if mode == "incremental" else None
    existing = None
    if existing_version is not None:
        existing = spark.read.format("delta").option("versionAsOf", existing_version).load(out_path)
        check_annotator_hash(existing, cfg.output_table, ann_hash)

    shipped = [_with_shipped_files(spark, a) for a in annotators]
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.spark.arrow_batch_size))
    spark.conf.set("spark.sql.files.maxRecordsPerFile", str(config.spark.max_records_per_file))
    metadata = {
        "job": "annotate",
        "input_path": cfg.input.path,
        "input_format": cfg.input.format,
        "input_version": _input_version(spark, cfg.input.format, resolve(cfg.input.path)),
        "annotator_hash": ann_hash,
        "annotators": [_plain_spec(a) for a in annotators],
        "code_version": __version__,
        "skipped_hidden_files": len(files.hidden),
    }
    check_changed_text_policy(cfg.on_changed_text)
    return AnnotatePlan(config, mode, step, shipped, files, existing, metadata, started)


def _with_shipped_files(spark: SparkSession, annotator: Annotator) -> Annotator:
    """A copy of ``annotator`` whose files are shipped copies the workers read through SparkFiles
    (each key of ``files()`` is the field holding that file)."""
    shipped = copy.copy(annotator)
    for key, path in annotator.files().items():
        setattr(shipped, key, ship_file(spark, resolve(path)))
    return shipped


def _annotate_staged(spark: SparkSession, plan: AnnotatePlan, staged: StagedInput) -> AnnotateSummary:
    """census → split → quarantine (committed first) → annotated documents → summary."""
    cfg = plan.cfg
    census = _census(staged)
    existing = plan.existing.select("id", "text") if plan.existing is not None else None
    matching = IdMatching(existing, cfg.on_changed_text, census.dup_ids, BROADCAST_DUPLICATED_IDS)
    split = split_records(spark, staged, cfg.input, matching)
    # Records as read, and each unreadable file as one record (quarantined whole, never read).
    input_rows = census.rows + split.unreadable_files
    # The quarantine first: it holds the rejected records before the documents they balance
    # are committed, and a run that would quarantine too much of its input fails before the
    # expensive pass.
    quarantine = _write_quarantine_step(spark, plan, split, census)
    _check_quarantine_share(cfg, input_rows, quarantine)
    written = _write_annotated(plan, split)
    return _summarize(plan, split, input_rows, quarantine, written)


def _census(staged: StagedInput) -> Census:
    """Records, records with a reason, and the ids that more than one clean record carries."""
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
    return Census(*(int(counts[k] or 0) for k in ("rows", "rejected", "dup_ids")))


def _write_quarantine_step(
    spark: SparkSession, plan: AnnotatePlan, split: SplitInput, census: Census
) -> QuarantineWrite:
    """MERGE the quarantined records; an input with nothing to quarantine is not read for it."""
    changed_to_quarantine = plan.existing is not None and plan.cfg.on_changed_text == "quarantine"
    if census.rejected or census.dup_ids or split.unreadable_files or changed_to_quarantine:
        counts = Observation()
        version = _write_quarantine(spark, split.quarantined, plan.q_path, plan.commit_metadata(), counts)
        observed = counts.get
        by_reason = {r: int(observed[r]) for r in REASONS if observed[r]}
        return QuarantineWrite(version, int(observed["rows"]), by_reason)
    # The table is there all the same, for whoever reads it.
    tables.ensure_table(spark, plan.q_path, _stamped_quarantine(split.quarantined).schema)
    return QuarantineWrite(tables.version(spark, plan.q_path), 0, {})


def _check_quarantine_share(cfg: AnnotateConfig, input_rows: int, quarantine: QuarantineWrite) -> None:
    quarantined = quarantine.rows
    if input_rows and quarantined / input_rows > cfg.max_quarantine_fraction:
        reasons = ", ".join(f"{r}: {n}" for r, n in quarantine.by_reason.items())
        raise QuarantineShareExceeded(
            f"annotate.max_quarantine_fraction: {quarantined} of {input_rows} input records "
            f"({quarantined / input_rows:.1%}) were quarantined ({reasons}), more than the "
            f"{cfg.max_quarantine_fraction:g} allowed; the annotated table was not written "
            f"(quarantine version {quarantine.version} holds the records)"
        )


def _write_annotated(plan: AnnotatePlan, split: SplitInput) -> AnnotatedWrite:
    """The one pass of every annotator over the clean documents, written to the annotated table."""
    cfg = plan.cfg
    # Ids the table already holds left the clean documents in split_records (counted there, observed).
    annotated = plan.step(split.clean, plan.annotators).withColumns(
        {"doc_key": F.xxhash64("id"), "annotator_hash": F.lit(plan.metadata["annotator_hash"])}
    )
    # What reaches the write, counted as it passes (the summary's per-domain lines come from here,
    # not from a read of the table).
    written = Observation()
    annotated = annotated.observe(written, *_written_aggregates(plan.annotators))
    names = [a.name for a in plan.annotators]
    log.info("annotating %s → %s (annotators: %s)", cfg.input.path, plan.out_path, names)
    if plan.mode != "incremental":
        commit = tables.write_commit(annotated, plan.out_path, "overwrite", plan.commit_metadata())
        return AnnotatedWrite(commit, commit.metric("numOutputRows") if commit else 0, 0, 0, written)
    if plan.existing is not None and cfg.on_changed_text == "replace":
        # Changed texts update their row, new ids are inserted: one MERGE on id, one commit.
        commit = tables.merge_commit(annotated, plan.out_path, "id", plan.commit_metadata())
        replaced = commit.metric("numTargetRowsUpdated") if commit else 0
        inserted = commit.metric("numTargetRowsInserted") if commit else 0
        return AnnotatedWrite(commit, inserted + replaced, 0, replaced, written)
    # Insert-only MERGE on id: another run that inserted some of these ids meanwhile keeps
    # its rows, and they count as already annotated.
    commit = tables.insert_new(annotated, plan.out_path, "id", plan.commit_metadata())
    inserted = commit.metric("numTargetRowsInserted") if commit else 0
    return AnnotatedWrite(commit, inserted, int(written.get["rows"]) - inserted, 0, written)


def _summarize(
    plan: AnnotatePlan,
    split: SplitInput,
    input_rows: int,
    quarantine: QuarantineWrite,
    written: AnnotatedWrite,
) -> AnnotateSummary:
    """The reconciled counts; :class:`CountsDoNotReconcile` when they do not add up."""
    # Both writes ran, so every observation has its numbers; none of these is a pass of its own.
    same, changed = (int(split.existing_counts.get[k]) for k in ("same", "changed"))
    kept = changed if plan.cfg.on_changed_text == "keep" else 0
    summary = AnnotateSummary(
        input_rows=input_rows,
        annotated=written.rows,
        skipped_existing=same + kept + written.raced,
        quarantined=quarantine.rows,
        quarantined_by_reason=quarantine.by_reason,
        skipped_hidden_files=len(plan.files.hidden),
        changed_text_kept=kept,
        replaced=written.replaced,
        annotated_version=written.commit.version if written.commit else None,
        quarantine_version=quarantine.version,
    )
    if not summary.reconciles:
        summary.seconds = round(time.time() - plan.started, 1)
        raise CountsDoNotReconcile(summary)
    _domain_totals(written.observed.get, _domain_values(plan.annotators), summary)
    if "tokens" in written.observed.get:
        summary.tokens = int(written.observed.get["tokens"] or 0)
    summary.seconds = round(time.time() - plan.started, 1)
    return summary


def _domain_values(annotators: list[Annotator]) -> list[str] | None:
    """The values the domain column can take (the domain model's labels, checked); None if unknown."""
    domain = _domain(annotators)
    return domain.domain_values() if domain is not None else None


def _written_aggregates(annotators: list[Annotator]) -> list[Column]:
    """Rows reaching the write and, per domain label, documents, tokens and low-confidence ones."""
    aggs = [F.count(F.lit(1)).alias("rows")]
    domain, tokens = _domain(annotators), _token_column(annotators)
    if tokens:
        aggs.append(F.sum(tokens).alias("tokens"))
    for i, label in enumerate(_domain_values(annotators) or []):
        here = F.col(domain.column) == label
        aggs.append(F.count(F.when(here, 1)).alias(f"docs_{i}"))
        if tokens:
            aggs.append(F.sum(F.when(here, F.col(tokens))).alias(f"tokens_{i}"))
        if domain.min_confidence:
            low = (F.col(domain.label_column) == label) & (F.col(domain.prob_column) < domain.min_confidence)
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
    if summary.cost is not None:
        lines.append(f"  {Cost.from_json(summary.cost).line()}")
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
