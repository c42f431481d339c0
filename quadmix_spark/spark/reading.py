"""Reading a raw corpus and splitting it into clean documents and quarantined records.

Every input record ends up in exactly one of the two outputs, so counts reconcile:
``input rows = clean rows + quarantined rows``. Quarantined rows keep the raw record and a reason.
A job whose input is a Delta table (the annotated table) reads it with :func:`read_latest`.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

from quadmix_spark.config import ConfigError, InputConfig, resolve
from quadmix_spark.spark import tables

# Reasons, in the order they are tested: a record gets the first that applies.
REASONS = (
    "unreadable_file",
    "invalid_utf8",
    "blank_line",
    "malformed_json",
    "malformed_record",
    "missing_id",
    "invalid_id",
    "missing_text",
    "non_string_text",
    "empty_text",
    "too_large",
    "duplicate_id",
    "changed_text",
)

# What an incremental run does with a document whose id the annotated table holds with another text
# (``annotate.on_changed_text``).
CHANGED_TEXT_POLICIES = ("keep", "replace", "quarantine")

QUARANTINE_COLUMNS = ("record_key", "id", "reason", "source_file", "raw", "raw_bytes")

log = logging.getLogger(__name__)

# What Spark and Hadoop write beside data files under hidden names: never data, never reported.
_MARKERS = re.compile(r"_SUCCESS|_committed_.*|_started_.*|_metadata|_common_metadata|\..*\.crc")

# A character that makes a text non-empty: anything but separators (spaces, NBSP, ideographic
# space, line/paragraph separators: Z), controls (tabs, newlines: Cc) and format characters
# (zero-width space/joiners, word joiner, BOM, soft hyphen: Cf).
VISIBLE_CHAR = r"[^\p{Z}\p{Cc}\p{Cf}]"
# Characters searched first: Spark's rlike decodes its whole input to a Java string, so the
# text itself is searched only when its first characters are all blank.
VISIBLE_PREFIX_CHARS = 64

# JSON lines whose keys are read on the driver to check the configured column names.
SAMPLE_RECORDS = 1000


@dataclass(frozen=True)
class SplitInput:
    """Clean documents (``id``, ``text``, kept columns) and quarantined records."""

    clean: DataFrame
    quarantined: DataFrame
    # Input records counted as they are read (``rows``), filled by the first action over ``clean``
    # or ``quarantined``: no pass of its own.
    input_rows: Observation
    # Chosen records whose id the annotated table already holds (``same`` text, ``changed`` text),
    # counted as ``clean`` is consumed.
    existing_counts: Observation
    # Files quarantined whole (``unreadable_file``), each one input record; none of them is read.
    unreadable_files: int = 0


def read_latest(spark: SparkSession, path: str, key: str, hint: str) -> tuple[DataFrame, int]:
    """The Delta table at ``path`` as of its latest version, and that version.

    Pinned to the version, so a concurrent write does not change what the job reads and its
    provenance names what it read. No table there is a :class:`ConfigError` naming ``key``, with
    ``hint`` (what to run first).
    """
    version = tables.version(spark, path)
    if version is None:
        raise ConfigError(f"{key}: no Delta table at {path} ({hint})")
    return spark.read.format("delta").option("versionAsOf", version).load(path), version


def input_location(path: str) -> str:
    """``path`` as Spark reads it: absolute, and for a local path with symlinks and ``..`` resolved.

    A record's ``source_file`` (and so its quarantine key) is then the same however the path was
    spelled: relative or absolute, through a symlink or not, a file or its folder.
    """
    resolved = resolve(path)
    if resolved.startswith("file://"):
        return "file://" + os.path.realpath(resolved[len("file://") :])
    if "://" in resolved:
        return resolved
    return os.path.realpath(resolved)


def _json_path(name: str) -> str:
    return "$['" + name.replace("'", "\\'") + "']"


def _jsonl_lines(spark: SparkSession, cfg: InputConfig, files: InputFiles | None = None) -> DataFrame:
    # Subfolders too: without recursiveFileLookup Spark reads only the files directly in the path.
    reader = spark.read.option("recursiveFileLookup", "true")
    return reader.text(files.readable() if files and files.unreadable else input_location(cfg.path))


def _json_id(parsed: Column, path: str) -> Column:
    """A JSON id as text: a string's own text, an integer's digits as written; null for anything else.

    So ``"a1"`` is ``a1``, ``7`` is ``7`` (the same id as ``"7"``), and a 41-digit integer keeps
    every digit: Spark parses integers beyond DECIMAL(38) as doubles, so their digits are read from
    the line itself (a second parse, paid only by such ids). Fractions, exponents, booleans,
    objects and arrays give null (``invalid_id``).
    """
    kind = F.schema_of_variant(F.try_variant_get(parsed, path, "variant"))
    text = F.try_variant_get(parsed, path, "string")
    literal = F.get_json_object(F.col("raw"), path)
    return F.when(kind.isin("STRING", "BIGINT") | kind.rlike(r"^DECIMAL\(\d+,0\)$"), text).when(
        (kind == "DOUBLE") & literal.rlike(r"^-?[0-9]+$"), literal
    )


def _read_jsonl(spark: SparkSession, cfg: InputConfig, files: InputFiles | None) -> DataFrame:
    """JSON lines as (raw, source_file, id, text, text_type, kept columns...)."""
    lines = _jsonl_lines(spark, cfg, files).select(
        F.col("value").alias("raw"), F.col("_metadata.file_path").alias("source_file")
    )
    parsed = F.try_parse_json("raw")
    text_variant = F.try_variant_get(parsed, _json_path(cfg.text_column), "variant")
    columns = [
        "raw",
        "source_file",
        F.lit(None).cast("string").alias("_position"),
        F.when(parsed.isNull(), F.lit("malformed")).alias("_parse"),
        F.try_variant_get(parsed, _json_path(cfg.text_column), "string").alias("text"),
        F.schema_of_variant(text_variant).alias("_text_type"),
    ]
    if cfg.id_column:
        id_path = _json_path(cfg.id_column)
        columns.append(_json_id(parsed, id_path).alias("id"))
        columns.append(F.schema_of_variant(F.try_variant_get(parsed, id_path, "variant")).alias("_id_type"))
    # JSON has no schema to speak of: kept columns are carried as strings.
    columns += [F.try_variant_get(parsed, _json_path(c), "string").alias(c) for c in cfg.keep_columns]
    return lines.select(*columns)


def _position(fmt: str) -> Column:
    """A Parquet record's place in its file: the file's modification time and the row's index."""
    if fmt != "parquet":  # Delta's reader has no row index; its files never change
        return F.lit(None).cast("string").alias("_position")
    mtime = F.unix_micros(F.col("_metadata.file_modification_time")).cast("string")
    return F.concat_ws(":", mtime, F.col("_metadata.row_index").cast("string")).alias("_position")


def _read_table(
    spark: SparkSession, cfg: InputConfig, files: InputFiles | None
) -> tuple[DataFrame, list[str]]:
    """Parquet or Delta rows as (_record, source_file, id, text, text_type, kept columns...).

    Also returns the files' column names in order, from which :func:`record_json` makes ``raw``.
    """
    reader = spark.read.format("delta" if cfg.format == "delta" else "parquet")
    if cfg.format == "parquet":
        # Files may hold different columns (one lacks the text column): merged, every record keeps
        # all of its own columns in ``raw``. Files whose types would not merge are found unreadable
        # before this read.
        reader = reader.option("mergeSchema", "true")
    root = input_location(cfg.path)
    if files and files.plain_subfolders:
        # Parquet in plain subfolders: Spark's partition discovery reads only ``key=value`` folders
        # (and none at all below a folder that also holds files). Partition columns are then not
        # inferred: a kept column must be in the files.
        reader = reader.option("recursiveFileLookup", "true")
    if files and files.unreadable:  # the readable files by name; partitions found below the root
        if files.folder and not files.plain_subfolders:
            reader = reader.option("basePath", root)
        df = reader.load(files.readable())
    else:
        df = reader.load(root)
    _check_table_columns(df, cfg)
    # The record as JSON (``raw``) is made only for the few records that are quarantined
    # (:func:`record_json`): the text stays one column, and the rest of the record rides along.
    columns = [
        F.struct(*[F.col(c) for c in df.columns if c != cfg.text_column]).alias("_record"),
        F.lit(None).cast("string").alias("raw"),
        F.col("_metadata.file_path").alias("source_file"),
        _position(cfg.format),
        F.lit(None).cast("string").alias("_parse"),
        F.col(cfg.text_column).alias("text"),
        F.when(F.col(cfg.text_column).isNull(), F.lit("VOID")).otherwise(F.lit("STRING")).alias("_text_type"),
    ]
    if cfg.id_column:
        columns.append(F.col(cfg.id_column).cast("string").alias("id"))
        columns.append(F.when(F.col(cfg.id_column).isNotNull(), F.lit("STRING")).alias("_id_type"))
    columns += [F.col(c) for c in cfg.keep_columns if c not in (cfg.id_column, cfg.text_column)]
    return df.select(*columns), list(df.columns)


def _check_table_columns(df: DataFrame, cfg: InputConfig) -> None:
    """Fail, naming the key, when a column the config names is missing or of the wrong type."""
    names = set(df.columns)
    for key, column in (("text_column", cfg.text_column), ("id_column", cfg.id_column)):
        if column and column not in names:
            raise ConfigError(
                f"annotate.input.{key}: column {column!r} not in {cfg.path} "
                f"(columns: {', '.join(sorted(names))})"
            )
    for column in cfg.keep_columns:
        if column not in names:
            raise ConfigError(f"annotate.input.keep_columns: column {column!r} not in {cfg.path}")
    text_type = df.schema[cfg.text_column].dataType.simpleString()
    if text_type != "string":
        raise ConfigError(
            f"annotate.input.text_column {cfg.text_column!r} has type {text_type}, expected string"
        )
    if cfg.id_column:
        id_type = df.schema[cfg.id_column].dataType.simpleString()
        if id_type not in ("string", "tinyint", "smallint", "int", "bigint") and not re.fullmatch(
            r"decimal\(\d+,0\)", id_type
        ):
            raise ConfigError(
                f"annotate.input.id_column {cfg.id_column!r} has type {id_type}; ids must be strings or "
                "integers (a floating-point id is not exact)"
            )


def record_json(cfg: InputConfig, columns: list[str]) -> Column:
    """A Parquet or Delta record as one JSON object, its columns in the file's order (``raw``)."""
    fields = [
        (F.col("text") if c == cfg.text_column else F.col("_record").getField(c)).alias(c) for c in columns
    ]
    return F.to_json(F.struct(*fields))


def _reason(cfg: InputConfig, max_text_bytes: int) -> Column:
    text = F.col("text")
    # JSON lines: the line's bytes. Tables: the text itself; ``raw`` is rendered by to_json, which
    # turns invalid bytes into U+FFFD, so checking it would miss them.
    utf8_source = "raw" if cfg.format == "jsonl" else "text"
    reason = F.when(~F.is_valid_utf8(utf8_source), F.lit("invalid_utf8"))
    if cfg.format == "jsonl":
        # Spark parses a JSON line into a variant of at most 16 MiB: a longer line never parses.
        # Longer than max_text_bytes (at most 16 MiB), it is too large whatever it holds.
        too_long = F.octet_length("raw") > max_text_bytes
        reason = reason.when(F.col("_parse").isNotNull() & too_long, F.lit("too_large"))
    if cfg.format == "jsonl":
        # A blank line never parses: counted apart, it is not a broken record.
        reason = reason.when(
            F.col("_parse").isNotNull() & ~_has_visible_char(F.col("raw")), F.lit("blank_line")
        )
    reason = reason.when(F.col("_parse").isNotNull(), F.lit("malformed_json"))
    if cfg.format == "jsonl":
        # Valid JSON that is not an object (an array, a string, a number): it has no fields at all.
        reason = reason.when(~_json_object(F.col("raw")), F.lit("malformed_record"))
    if cfg.id_column:
        no_id = F.col("_id_type").isNull() | (F.col("_id_type") == "VOID") | (F.trim(F.col("id")) == "")
        reason = reason.when(no_id, F.lit("missing_id")).when(F.col("id").isNull(), F.lit("invalid_id"))
    return (
        reason.when(F.col("_text_type").isNull() | (F.col("_text_type") == "VOID"), F.lit("missing_text"))
        .when(F.col("_text_type") != "STRING", F.lit("non_string_text"))
        .when(~_has_visible_char(text), F.lit("empty_text"))
        .when(F.octet_length(text) > max_text_bytes, F.lit("too_large"))
    )


def _json_object(raw: Column) -> Column:
    """True when a JSON line that parsed is an object: its first character after blanks is ``{``."""
    prefix = F.substring(raw, 1, VISIBLE_PREFIX_CHARS)
    return prefix.rlike(r"^\s*\{") | (~prefix.rlike(r"\S") & raw.rlike(r"^\s*\{"))


def _has_visible_char(text: Column) -> Column:
    """True when ``text`` holds a character that is not blank (:data:`VISIBLE_CHAR`)."""
    prefix = F.substring(text, 1, VISIBLE_PREFIX_CHARS)
    return prefix.rlike(VISIBLE_CHAR) | text.rlike(VISIBLE_CHAR)


def _record_key() -> Column:
    # Stable key for a quarantined record: reruns MERGE on it instead of appending duplicates. It is
    # the record's file as Spark names it after input_location (so never the path as spelled) and
    # its ``raw`` record or, for Parquet, its position in the file (``_position``): a Parquet row's
    # ``raw`` depends on how the folder was read (a file read alone has no partition columns).
    # Equal records of one file (blank lines, a line repeated) are told apart by their count among
    # them, ``_copy``: the set of keys is the same whatever order they are read in, and the first
    # keeps the key it had before copies were counted.
    record = F.concat_ws("\u0000", F.col("source_file"), F.coalesce(F.col("_position"), F.col("raw")))
    numbered = F.concat_ws("\u0000", record, F.col("_copy").cast("string"))
    return F.sha2(F.when(F.col("_copy") > 1, numbered).otherwise(record), 256)


def _numbered_copies(df: DataFrame) -> DataFrame:
    """``_copy``: 1, 2, ... over the records of one file that are equal (only quarantined ones are)."""
    same = Window.partitionBy("source_file", F.coalesce(F.col("_position"), F.col("raw"))).orderBy("raw")
    return df.withColumn("_copy", F.row_number().over(same))


@dataclass(frozen=True)
class StagedInput:
    """Every input record, read once: its columns, ``_reason`` (null: clean) and ``_hash`` (of a clean text).

    The one frame every output of a run is derived from: persist ``rows`` and the input is read
    once however many outputs (quarantine, documents, counts) come from it.
    """

    rows: DataFrame
    # Input records counted as they are read (``rows``), filled by the first action over them.
    input_rows: Observation
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file URI, error), never read
    raw: Column = field(default_factory=lambda: F.col("raw"))  # a record's ``raw``, from ``rows``


def stage_input(
    spark: SparkSession, cfg: InputConfig, max_text_bytes: int, files: InputFiles | None = None
) -> StagedInput:
    """Read ``cfg.path`` into one frame of records with their quarantine reason (lazy).

    JSON lines are read from the folder and all its subfolders; Parquet too when a data file sits
    in a subfolder that is not a ``key=value`` partition (``files``, from :func:`check_input_files`,
    says; listed here when not given). A missing path or column raises :class:`ConfigError`
    before any distributed work. Files in ``files.unreadable`` are never read.
    """
    if cfg.format == "jsonl":
        rows = _read_jsonl(spark, cfg, files)
        raw = F.col("raw")
    else:
        if files is None and cfg.format == "parquet":
            files = list_input(spark, input_location(cfg.path))
        rows, original = _read_table(spark, cfg, files)
        raw = record_json(cfg, original)
    input_rows = Observation()
    rows = rows.observe(input_rows, F.count(F.lit(1)).alias("rows"))
    rows = rows.withColumn("_reason", _reason(cfg, max_text_bytes))
    if not cfg.id_column:
        rows = rows.withColumn("id", F.sha2(F.col("text"), 256))
    rows = rows.withColumn("_hash", F.when(F.col("_reason").isNull(), F.xxhash64("text")))
    unreadable = sorted((files.unreadable if files else {}).items())
    return StagedInput(rows, input_rows, unreadable, raw)


def duplicated_ids(staged: StagedInput) -> DataFrame:
    """``id`` of every clean id that more than one record carries (one aggregate over id only)."""
    good = staged.rows.where(F.col("_reason").isNull())
    return good.groupBy("id").count().where("count > 1").select("id", F.lit(True).alias("_dup"))


def check_changed_text_policy(policy: str) -> None:
    """Fail, naming the key, on an ``annotate.on_changed_text`` that is not a policy."""
    if policy not in CHANGED_TEXT_POLICIES:
        raise ConfigError(
            f"annotate.on_changed_text: {policy!r} is not one of {', '.join(CHANGED_TEXT_POLICIES)}"
        )


def read_input(
    spark: SparkSession,
    cfg: InputConfig,
    max_text_bytes: int,
    files: InputFiles | None = None,
    existing: DataFrame | None = None,
    on_changed_text: str = "keep",
) -> SplitInput:
    """Read ``cfg.path`` and split it into clean documents and quarantined records.

    :func:`stage_input` then :func:`split_records`; see both.
    """
    check_changed_text_policy(on_changed_text)
    staged = stage_input(spark, cfg, max_text_bytes, files)
    return split_records(spark, staged, cfg, IdMatching(existing, on_changed_text))


@dataclass(frozen=True)
class IdMatching:
    """How :func:`split_records` settles records that share an id, or whose id the table holds.

    ``existing``: the annotated table's ``id`` and ``text`` (None: a first run).
    ``on_changed_text``: a policy of :data:`CHANGED_TEXT_POLICIES`. ``duplicated``, when the
    caller counted them, is the number of clean ids that more than one record carries: with none,
    the records are not matched by id at all (the input is not read again to look for them); with
    at most ``broadcast_limit``, they are shipped to every task, so the clean records never move
    between tasks to be matched with them.
    """

    existing: DataFrame | None = None
    on_changed_text: str = "keep"
    duplicated: int | None = None
    broadcast_limit: int = 0


def split_records(
    spark: SparkSession, staged: StagedInput, cfg: InputConfig, matching: IdMatching = IdMatching()
) -> SplitInput:
    """Split staged records into clean documents and quarantined records (lazy).

    Each unreadable file is one quarantined record (``unreadable_file``, the error in ``raw``),
    counted in ``unreadable_files``.

    Each id keeps one record, chosen by a rule that depends on neither file order nor
    partitioning: with ``existing`` (the annotated table's ``id`` and ``text``) and a policy other
    than ``replace``, the record whose text the table already holds; otherwise the one with the
    smallest text hash. The other records of the id are quarantined as ``duplicate_id``. The
    chosen record is then ``new`` (the table lacks the id: in ``clean``), ``same`` (the table holds
    this text: counted in ``existing_counts``, not in ``clean``) or ``changed`` (the table holds
    the id with another text), which ``on_changed_text`` settles: ``keep`` leaves the table's row
    (counted like ``same``), ``replace`` puts the record in ``clean`` so that it replaces the row,
    ``quarantine`` quarantines it as ``changed_text``. Texts are compared by a 64-bit hash.
    """
    check_changed_text_policy(matching.on_changed_text)
    flagged = _flag_ids(staged, matching)
    chosen, dups = _choose_per_id(flagged, staged, matching)
    existing_counts = Observation()
    clean = _clean_documents(chosen, cfg, matching, existing_counts)
    quarantined = _quarantined(spark, staged, dups, chosen, matching)
    return SplitInput(
        clean=clean,
        quarantined=quarantined,
        input_rows=staged.input_rows,
        existing_counts=existing_counts,
        unreadable_files=len(staged.unreadable),
    )


def _same_text() -> Column:
    return F.col("_hash") == F.col("_t_hash")


def _flag_ids(staged: StagedInput, matching: IdMatching) -> DataFrame:
    """Clean records with ``_dup`` (their id is carried twice) and ``_t_hash`` (the table's text hash)."""
    good = staged.rows.where(F.col("_reason").isNull())
    # Only ids seen twice take part in the window, so the common case costs one small aggregate,
    # and none when the caller counted no duplicated id.
    if matching.duplicated == 0:
        flagged = good.withColumn("_dup", F.lit(None).cast("boolean"))
    else:
        dup_ids = duplicated_ids(staged)
        broadcast = matching.duplicated is not None and matching.duplicated <= matching.broadcast_limit
        flagged = good.join(F.broadcast(dup_ids) if broadcast else dup_ids, "id", "left")
    if matching.existing is not None:
        known = matching.existing.groupBy("id").agg(F.min(F.xxhash64("text")).alias("_t_hash"))
        return flagged.join(known, "id", "left")
    return flagged.withColumn("_t_hash", F.lit(None).cast("long"))


def _choose_per_id(
    flagged: DataFrame, staged: StagedInput, matching: IdMatching
) -> tuple[DataFrame, DataFrame]:
    """(one record per id with its ``_state``, the records of duplicated ids ranked by ``_rn``)."""
    # keep / quarantine: the table's text, when the input still has it, is the one kept, so a row
    # that stays annotated is never quarantined. replace: the input alone decides.
    prefer_table = [F.when(_same_text(), 0).otherwise(1)] if matching.on_changed_text != "replace" else []
    rank = Window.partitionBy("id").orderBy(*prefer_table, "_hash", "text", "source_file", "raw")
    dups = flagged.where(F.col("_dup")).withColumn("raw", staged.raw)
    dups = dups.withColumn("_rn", F.row_number().over(rank))
    chosen = flagged.where(F.col("_dup").isNull())
    if matching.duplicated != 0:  # each branch of a union reads the input again
        chosen = chosen.unionByName(dups.where(F.col("_rn") == 1).drop("_rn"))
    state = F.when(F.col("_t_hash").isNull(), F.lit("new")).when(_same_text(), F.lit("same"))
    return chosen.withColumn("_state", state.otherwise(F.lit("changed"))), dups


def _clean_documents(
    chosen: DataFrame, cfg: InputConfig, matching: IdMatching, existing_counts: Observation
) -> DataFrame:
    """The chosen records to annotate (``id``, ``text``, kept columns); ``existing_counts`` observed."""
    to_annotate = ["new", "changed"] if matching.on_changed_text == "replace" else ["new"]
    keep_cols = ["id", "text", *[c for c in cfg.keep_columns if c not in ("id", "text")]]
    return (
        chosen.observe(
            existing_counts,
            F.count(F.when(F.col("_state") == "same", 1)).alias("same"),
            F.count(F.when(F.col("_state") == "changed", 1)).alias("changed"),
        )
        .where(F.col("_state").isin(to_annotate))
        .select(*keep_cols)
    )


def _quarantined(
    spark: SparkSession, staged: StagedInput, dups: DataFrame, chosen: DataFrame, matching: IdMatching
) -> DataFrame:
    """Records with a reason, duplicates, unreadable files and (by policy) changed texts, as
    :data:`QUARANTINE_COLUMNS`."""
    bad = staged.rows.where(F.col("_reason").isNotNull()).withColumn("raw", staged.raw)
    quarantined = _to_quarantine(bad)
    if matching.duplicated != 0:
        duplicates = dups.where(F.col("_rn") > 1).withColumn("_reason", F.lit("duplicate_id"))
        quarantined = quarantined.unionByName(_to_quarantine(duplicates))
    if staged.unreadable:
        quarantined = quarantined.unionByName(_unreadable_files(spark, staged.unreadable))
    if matching.on_changed_text == "quarantine" and matching.existing is not None:
        changed = chosen.where(F.col("_state") == "changed").withColumns(
            {"_reason": F.lit("changed_text"), "raw": staged.raw}
        )
        quarantined = quarantined.unionByName(_to_quarantine(changed))
    return quarantined


def _to_quarantine(df: DataFrame) -> DataFrame:
    return _numbered_copies(df).select(
        _record_key().alias("record_key"),
        F.col("id").cast("string").alias("id"),
        F.col("_reason").alias("reason"),
        "source_file",
        # A string column holds valid UTF-8 only (Arrow and pandas refuse anything else): invalid
        # bytes become U+FFFD in ``raw``, and the record's exact bytes go to ``raw_bytes``.
        F.make_valid_utf8("raw").alias("raw"),
        F.when(~F.is_valid_utf8("raw"), F.col("raw").cast("binary")).alias("raw_bytes"),
    )


def _unreadable_files(spark: SparkSession, unreadable: list[tuple[str, str]]) -> DataFrame:
    """One record per file: its path and the error (in ``raw``); the key is the file alone."""
    return spark.createDataFrame(unreadable, "source_file string, error string").select(
        F.sha2(F.concat_ws("\u0000", "source_file", F.lit("unreadable_file")), 256).alias("record_key"),
        F.lit(None).cast("string").alias("id"),
        F.lit("unreadable_file").alias("reason"),
        "source_file",
        F.col("error").alias("raw"),
        F.lit(None).cast("binary").alias("raw_bytes"),
    )


def check_input_columns(
    spark: SparkSession,
    cfg: InputConfig,
    key: str = "annotate.input",
    sample_records: int = SAMPLE_RECORDS,
    files: InputFiles | None = None,
) -> None:
    """Fail, naming the key, when a JSON lines column the config names is in no sampled record.

    Only the top-level keys of the first ``sample_records`` lines reach the driver (a ``limit``
    scan that stops early), so a typo fails in seconds instead of quarantining every record as
    ``missing_text`` or filling a kept column with nulls. A column present in none of them is an
    error even if later records have it. Parquet and Delta inputs are checked against their schema
    when read.
    """
    if cfg.format != "jsonl":
        return
    sample = (
        _jsonl_lines(spark, cfg, files)
        .limit(sample_records)
        .select(F.json_object_keys("value").alias("keys"))  # null for a line that is not an object
        .collect()
    )
    seen: Counter[str] = Counter()
    objects = 0
    for row in sample:
        if row["keys"] is not None:
            objects += 1
            seen.update(set(row["keys"]))
    if not objects:
        return  # nothing to judge by; the quarantine share (annotate.max_quarantine_fraction) will tell
    named = [("text_column", cfg.text_column), ("id_column", cfg.id_column)]
    named += [("keep_columns", c) for c in cfg.keep_columns]
    for name, column in named:
        if column and column not in seen:
            keys = ", ".join(sorted(seen, key=lambda k: (-seen[k], k))[:20])  # most frequent first
            raise ConfigError(
                f"{key}.{name}: no record among the first {objects} JSON objects of {cfg.path} "
                f"has the key {column!r} (keys seen: {keys})"
            )


@dataclass(frozen=True)
class InputFiles:
    """What a listing of the input folder found."""

    hidden: list[str]  # files Spark never reads, less Spark's and Hadoop's markers
    plain_subfolders: bool  # a data file in a subfolder that is not a ``key=value`` partition
    # Every file Spark would read: (URI as Spark names it in ``_metadata.file_path``, path to read).
    data: list[tuple[str, str]] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # URI → why the file cannot be read
    folder: bool = True  # the input path is a folder (False: a single file)

    def readable(self) -> list[str]:
        """Paths of the data files that are not unreadable."""
        return [path for uri, path in self.data if uri not in self.unreadable]


def list_input(spark: SparkSession, path: str) -> InputFiles:
    """List the folder ``path`` once through Hadoop's file system (no Spark job).

    Spark skips every file whose name, or a folder's name below ``path``, starts with ``_`` or
    ``.``, even when named explicitly: those are ``hidden``. A file ``path`` lists as nothing.
    """
    jvm = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.getFileStatus(root).isDirectory():
        qualified = fs.makeQualified(root)
        data = [(qualified.toUri().toString(), path)]
        return InputFiles(hidden=[], plain_subfolders=False, data=data, folder=False)
    prefix = fs.makeQualified(root).toUri().getPath().rstrip("/") + "/"
    hidden, plain, data = [], False, []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        file_path = listing.next().getPath()
        parts = file_path.toUri().getPath()[len(prefix) :].split("/")
        if any(p.startswith(("_", ".")) for p in parts):
            if not _MARKERS.fullmatch(parts[-1]):
                hidden.append(file_path.toString())
            continue
        if any("=" not in folder for folder in parts[:-1]):
            plain = True
        data.append((file_path.toUri().toString(), file_path.toString()))
    return InputFiles(hidden=sorted(hidden), plain_subfolders=plain, data=sorted(data))


def check_input_files(spark: SparkSession, cfg: InputConfig, key: str = "annotate.input") -> InputFiles:
    """Fail, naming the key, when the input folder holds files Spark would skip.

    With ``skip_hidden_files`` the files are skipped and only counted (and logged).
    """
    if cfg.format == "delta":  # a table: its _delta_log is metadata, and Delta knows its own files
        return InputFiles(hidden=[], plain_subfolders=False)
    files = list_input(spark, input_location(cfg.path))
    skipped = files.hidden
    if skipped and not cfg.skip_hidden_files:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        raise ConfigError(
            f"{key}.path: {len(skipped)} file(s) under {cfg.path} would never be read, as their name "
            f"or folder starts with '_' or '.' ({shown}); rename them, or set "
            f"{key}.skip_hidden_files=true to skip them"
        )
    if skipped:
        log.warning("skipping %d hidden file(s) under %s: %s", len(skipped), cfg.path, skipped[:5])
    return files


def check_input_path(spark: SparkSession, cfg: InputConfig) -> None:
    """Fail fast, naming the key, when the input path does not exist."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(input_location(cfg.path))
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(hadoop_path):
        raise ConfigError(f"annotate.input.path: {cfg.path} does not exist")
