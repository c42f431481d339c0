"""Typed YAML configuration: every key is declared here, with its type, default, meaning and constraint.

A config file is validated before any Spark work starts: an unknown key, a value of the wrong type
or a missing file raises :class:`ConfigError` naming the dotted key. Any key can be overridden on
the command line with ``--set section.key=value`` (the value is parsed as YAML). Files and values
are read with the project's one YAML loader (:func:`quadmix_spark.core.params.load_yaml`), which
reads ``1e-3`` as a number.

Declaring a key
---------------
A section is a stdlib dataclass; each key is one field made by :func:`setting`::

    max_repeats: int = setting(4, "With a mixture: copies of one document are capped here.", ge=1)

The type hint is the key's type, then come its default (:data:`REQUIRED`: none), its meaning
(one line: the ``meaning`` cell of its row in docs/config.md) and, where one applies, a
constraint on its value (:class:`Check`: ``ge``/``gt``/``le``/``lt`` bounds, ``nonempty``,
``distinct``, a ``pattern``). A field made with plain ``field(default_factory=Section)`` is a
section of its own (flattened into its parent's keys, or a table of its own at the top level).
``scripts/config_docs.py`` writes docs/config.md's key tables from these declarations (and the
annotator kinds' keys from their registry, :mod:`udfs.annotators`); tests/test_config.py fails
when the committed doc differs. Reading (:func:`from_dict`) checks names and types; the one
validator (:func:`validate`) checks every declared constraint, then the rules between keys, which
live together in :data:`_RULES`. Names looked up in a registry that config cannot import (the
selectors, the mixture sources) are checked beside their registry (``pipeline.select.check_config``).

Why dataclasses and not pydantic: pydantic is not a dependency, and it would not remove code. The
reader below is about sixty lines and already gives the messages users and tests rely on (the
dotted key with list indexes, ``unknown config key select.foo (allowed: ...)``, ``1e-3`` read as a
number, Spark conf values given as numbers taken as strings, ``str | list[str]`` unions tried in
order); pydantic's errors and coercion rules (lax mode turns ``"1"`` into ``1``, strict mode
refuses ``4`` for a ``str``) would have to be translated back into these. The code base copies and
prints configs with ``dataclasses.replace`` and ``dataclasses.asdict``, and the annotator registry
builds its kinds as dataclasses whose fields are their keys: one mechanism serves both. The
declarations add a meaning and a constraint to each field as dataclass metadata, nothing more.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from quadmix_spark.core.params import load_yaml
from quadmix_spark.mixing.reweighters import BUILT_IN, REWEIGHTERS
from quadmix_spark.proxy.trainers import TRAINERS
from udfs import annotators as registry


class ConfigError(ValueError):
    """A configuration problem, named by its dotted key or file."""


Direction = Literal["higher_is_better", "lower_is_better"]
EntropyMeasure = Literal["se", "je", "ce", "vne"]

# Spark parses a JSON line into a variant, which holds at most 16 MiB.
MAX_JSON_LINE_BYTES = 16 * 1024 * 1024

#: The default of a required key.
REQUIRED = dataclasses.MISSING
#: Field metadata: a key's meaning (one line) and its :class:`Check`.
DOC, CHECK = "doc", "check"


@dataclass(frozen=True)
class Check:
    """A constraint on one key's value, declared beside the key.

    Bounds (``ge``, ``gt``, ``le``, ``lt``; the value must also be finite) and ``pattern`` (a full
    match, described by ``rule`` in messages and ``shown`` in the docs) apply to a scalar, to each
    item of a list and to each value of a map; ``nonempty`` and ``distinct`` to the list itself
    (``rule``, when given, is also what the message of an empty list says). A null value is not
    checked. ``what`` names the value in messages (``a number of tokens > 0``).
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    nonempty: bool = False
    distinct: bool = False
    pattern: str | None = None
    rule: str = ""
    shown: str = ""
    what: str = ""

    def validate(self, value: Any, key: str) -> None:
        """Raise :class:`ConfigError` naming ``key`` (or an item of it) when ``value`` breaks this."""
        if value is None:
            return
        if isinstance(value, list | dict):
            if self.nonempty and not value:
                raise ConfigError(f"{key}: {self.rule or 'at least one value is required'}, got {value!r}")
            if self.distinct and len(set(map(repr, value))) != len(value):
                raise ConfigError(f"{key}: a value is given twice: {value!r}")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for name, item in items:
                self.validate(item, f"{key}.{name}" if isinstance(value, dict) else f"{key}[{name}]")
            return
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            raise ConfigError(f"{key} must {self.rule}, got {value!r}")
        if self._bounded() and not self._inside(value):
            raise ConfigError(f"{key} must be {self._words()}, got {value!r}")

    def doc(self) -> str:
        """The constraint as docs/config.md shows it beside the type, e.g. ``≥ 1``, ``in (0, 1)``."""
        parts = [self._symbols("≥", "≤")] if self._bounded() else []
        parts += ["non-empty"] * self.nonempty + ["distinct"] * self.distinct
        parts += [self.shown] if self.pattern is not None else []
        return ", ".join(parts)

    def _bounded(self) -> bool:
        return any(b is not None for b in (self.ge, self.gt, self.le, self.lt))

    def _inside(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def _words(self) -> str:
        if self.what:
            return f"{self.what} {self._symbols('>=', '<=')}"
        low, high = _first(self.ge, self.gt), _first(self.le, self.lt)
        if low is not None and high is not None:
            return self._symbols(">=", "<=")
        if self.gt == 0:
            return "positive"
        if self.ge is not None and self.ge != 0:
            return f"at least {_num(self.ge)}"
        if self.le is not None:
            return f"at most {_num(self.le)}"
        return self._symbols(">=", "<=")

    def _symbols(self, ge: str, le: str) -> str:
        low, high = _first(self.ge, self.gt), _first(self.le, self.lt)
        if low is not None and high is not None:
            left, right = "[" if self.ge is not None else "(", "]" if self.le is not None else ")"
            return f"in {left}{_num(low)}, {_num(high)}{right}"
        if low is not None:
            return f"{ge if self.ge is not None else '>'} {_num(low)}"
        return f"{le if self.le is not None else '<'} {_num(high)}"


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def setting(default: Any, doc: str, **check: Any) -> Any:
    """One config key: its default (:data:`REQUIRED`: none), its meaning and its :class:`Check`.

    A list, map or section default is copied for every config, as ``default_factory`` would.
    """
    metadata = {DOC: doc, **({CHECK: Check(**check)} if check else {})}
    if default is REQUIRED:
        return field(metadata=metadata)
    if isinstance(default, type):  # a section
        return field(default_factory=default, metadata=metadata)
    if isinstance(default, list | dict):
        return field(default_factory=functools.partial(copy.deepcopy, default), metadata=metadata)
    return field(default=default, metadata=metadata)


# -- the sections --------------------------------------------------------------------------------


@dataclass
class SparkConfig:
    """How the SparkSession is built. Under spark-submit, ``master`` is ignored."""

    app_name: str = setting("quadmix", "Spark application name.")
    master: str = setting(
        "local[2]",
        "Master for local runs (`local[N]` gets retries: see `spark.local_max_failures`); ignored "
        "under `spark-submit`, where `--master` wins.",
        # Checked here: Spark reports a master it cannot parse only once the JVM is up.
        pattern=r"local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|(spark|k8s|mesos)://\S+|yarn",
        rule="be local, local[N], local[*], local[N,F], spark://HOST:PORT, yarn or k8s://URL",
        shown="`local[N]`, `spark://…`, `yarn`, `k8s://…`",
    )
    local_max_failures: int = setting(
        4,
        "Attempts per task in local mode: `spark.master: local[N]` runs as `local[N,4]`, so a crashed "
        "Python worker is retried instead of failing the job (Spark's default in local mode is one "
        "attempt). A master that names its own count (`local[2,1]`) keeps it; on a cluster Spark's "
        "`spark.task.maxFailures` (default 4) applies.",
        ge=1,
    )
    shuffle_partitions: int = setting(8, "`spark.sql.shuffle.partitions`.", gt=0)
    arrow_batch_size: int = setting(
        2000,
        "Rows per Arrow batch handed to the annotators (`spark.sql.execution.arrow.maxRecordsPerBatch`).",
        gt=0,
    )
    max_records_per_file: int = setting(
        50_000,
        "Rows per data file (and so per Parquet row group at most) of every table the jobs write "
        "(`spark.sql.files.maxRecordsPerFile`, which `annotate` and `select` set on their session): a "
        "larger input gives proportionally more files, so later scans get more tasks on a cluster. "
        "`0` = unbounded.",
        ge=0,
    )
    conf: dict[str, str] = setting(
        {},
        "Any other Spark setting, e.g. `spark.executor.memory: 8g`. A local run sets "
        "`spark.databricks.delta.snapshotPartitions` to its core count (Delta's default, 50, rebuilds a "
        "table's state after every commit in 50 tasks, seconds per write on a few cores); a value here wins.",
    )


@dataclass
class InputConfig:
    """The raw corpus the annotate job reads."""

    path: str = setting("data/demo/corpus", "Input file, directory or table.")
    format: Literal["jsonl", "parquet", "delta"] = setting("jsonl", "Input format.")
    id_column: str | None = setting(
        "id",
        "Id column; `null` derives the id from SHA-256 of the text (exact duplicates are then quarantined "
        "as `duplicate_id`). Ids are text, kept exactly (below).",
    )
    text_column: str = setting(
        "text",
        "Text column (must be a string column in Parquet/Delta). Named columns are checked before the job: "
        "against the schema for Parquet/Delta, and for JSONL against the keys of the first 1,000 records "
        "(a key that none of them has is an error, even if later records have it).",
    )
    keep_columns: list[str] = setting(
        [],
        "Columns carried through to the annotated table (from JSONL they are strings); checked like "
        "`text_column`.",
    )
    skip_hidden_files: bool = setting(
        False,
        "Files named `_*` or `.*` (or under such a folder), which Spark never reads, fail the run unless "
        "this is `true`, which skips them and reports their count (below).",
    )
    check_compressed_files: bool = setting(
        True,
        "Before the job, one Spark job checks every file Spark would abort on, and quarantines such a file "
        "whole as `unreadable_file` (below); `false` skips the check.",
    )


@dataclass
class AnnotatorConfig:
    """One annotator. ``kind`` names its class in the annotator registry (:mod:`udfs.annotators`),
    which declares the kind's other keys, their types, defaults and meanings (docs/config.md lists them).

    ``options`` holds the kind's keys as given, validated against the registry; it is not a key
    itself. ``direction`` is a key old files carry: ``scorers`` is what gives a column its
    direction, so it is only checked against ``scorers`` (the rule ``_check_annotators``).
    """

    kind: str = setting(REQUIRED, "A registered kind (below): what it computes, and which other keys apply.")
    name: str = setting("", "Unique name (logs, provenance); empty: the kind.")
    column: str = setting(
        "",
        "Output column (some kinds also write `<column>_*` columns, below); required unless the kind "
        "names its own columns.",
    )
    options: dict[str, Any] = field(default_factory=dict)
    direction: Direction | None = setting(
        None,
        "Not read: `scorers` gives every column its direction (heuristics write many columns with both "
        "directions, and a scorer may be a column no annotator writes). Accepted so that older config "
        "files load; when given for a column `scorers` names, it must agree with `scorers`.",
    )

    @classmethod
    def from_config(cls, data: Any, key: str) -> AnnotatorConfig:
        """Validate ``data`` (one item of ``annotate.annotators``) with its kind's declared keys."""
        if not isinstance(data, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(data).__name__}")
        if "kind" not in data:
            raise ConfigError(f"missing required config key {key}.kind")
        kind = _coerce(str, data["kind"], f"{key}.kind")
        if kind not in registry.kinds():
            raise ConfigError(
                f"{key}.kind: {kind!r} is not one of the annotator kinds: {', '.join(registry.kinds())}"
            )
        keys = registry.config_keys(kind)
        common = set(declared_keys(cls))
        unknown = sorted(set(data) - common - set(keys))
        if unknown:
            allowed = ", ".join(sorted(common | set(keys)))
            raise ConfigError(f"unknown config key {key}.{unknown[0]} (allowed for kind {kind}: {allowed})")
        hints = typing.get_type_hints(cls)
        values = {
            name: _coerce(hints[name], data[name], f"{key}.{name}")
            for name in common - {"kind"}
            if name in data
        }
        options = {}
        for name, declared in keys.items():
            if name in data:
                options[name] = _coerce(declared.type, data[name], f"{key}.{name}")
            elif declared.required:
                raise ConfigError(f"{key}.{name} is required for kind {kind}")
        if registry.annotator_class(kind).needs_column and not values.get("column"):
            raise ConfigError(f"{key}.column is required for kind {kind}")
        return cls(kind=kind, options=options, **values)

    def annotator(self, **settings: Any) -> registry.Annotator:
        """The registered class of ``kind`` with these keys and the job ``settings`` it reads."""
        cls = registry.annotator_class(self.kind)
        return cls(name=self.name, column=self.column, **self.options, **settings)


@dataclass
class AnnotateConfig:
    """The annotate job: input → annotated Delta table + quarantine Delta table."""

    input: InputConfig = field(default_factory=InputConfig)
    output_table: str = setting("annotated", "The annotated Delta table.")
    quarantine_table: str = setting(
        "quarantine",
        "The quarantine Delta table: one row per record that could not be annotated, with its `reason` "
        "(columns below).",
    )
    max_text_bytes: int = setting(
        1_000_000,
        "Documents with more UTF-8 bytes are quarantined as `too_large`. For JSON lines at most 16 MiB "
        "(16777216): Spark parses a line into a variant of at most that size, and a line that does not "
        "parse and is longer than this is `too_large` too (not `malformed_json`).",
        gt=0,
    )
    max_quarantine_fraction: float = setting(
        0.5,
        "A run that quarantines a larger share of its input records fails (exit status 1) after writing "
        "the quarantine and before the annotation pass; the annotated table is not written. `1` turns the "
        "check off.",
        ge=0,
        le=1,
    )
    on_changed_text: Literal["keep", "replace", "quarantine"] = setting(
        "keep",
        "An incremental run meeting an id the annotated table holds with another text: `keep` the table's "
        "row (first seen wins), `replace` it, or `quarantine` the new record as `changed_text` (below).",
    )
    min_domain_confidence: float = setting(
        0.0,
        "A document whose `fasttext_domain` probability (`<column>_prob`) is below this gets the domain "
        "`unknown`; the model's label stays in `<column>_label`, and the summary counts such documents per "
        "model label (a θ file then needs an `unknown` domain). `0` turns it off (no `<column>_label` "
        "column). Part of the annotator hash.",
        ge=0,
        lt=1,
    )
    annotators: list[AnnotatorConfig] = setting(
        [],
        "The annotators, all run in one pass per Arrow batch; keys below. Their hash is recorded with the "
        "annotated table (below).",
    )


@dataclass
class DemoConfig:
    """The bundled demo corpus generator."""

    output_path: str = setting("data/demo/corpus", "Where the demo corpus is written.")
    n_docs: int = setting(20_000, "Documents to generate (`--docs` overrides; 1M+ works with `workers: 2`).")
    seed: int = setting(0, "Seed; document *i* depends only on (seed, *i*).")
    format: Literal["jsonl", "parquet"] = setting("jsonl", "Output format.")
    defect_rate: float = setting(
        0.35,
        "Share of documents with a defect (boilerplate, spam, repeated lines, truncation, shuffled words, "
        "non-English, very short/long).",
    )
    malformed_rate: float = setting(
        0.002,
        "JSONL only: extra malformed records (bad JSON, invalid UTF-8, null/empty/numeric text, duplicate "
        "ids) that the annotate job must quarantine.",
    )
    workers: int = setting(2, "Generator processes.")


@dataclass
class ClassifierConfig:
    """Training of one fastText supervised classifier from a labelled corpus or table."""

    input: InputConfig = setting(InputConfig, "The labelled corpus: the keys of `annotate.input`.")
    label_column: str = setting("true_domain", "Column holding the label.")
    output_model: str = setting(
        "models/domain.bin", "Model path; metadata (labels, metrics, params) goes to `<output_model>.json`."
    )
    holdout_fraction: float = setting(
        0.1, "Share held out for evaluation, chosen by a hash of the id.", gt=0, lt=1
    )
    max_eval_docs: int = setting(
        50_000,
        "Held-out documents scored for the metrics; they are scored in Spark and only the (truth, "
        "predicted) counts reach the driver.",
    )
    seed: int = setting(0, "Seed of the split and of the training-file shuffle.")
    epoch: int = setting(10, "fastText `epoch`.")
    lr: float = setting(0.5, "fastText `lr`.")
    word_ngrams: int = setting(2, "fastText `wordNgrams`.")
    dim: int = setting(64, "fastText `dim`.")
    min_count: int = setting(2, "fastText `minCount`.")
    threads: int = setting(2, "fastText training threads.")
    quantize: bool = setting(False, "Quantize the model (smaller file, small accuracy cost).")


@dataclass
class StatsConfig:
    """The stats job: per-domain and global counts, tokens and quantile sketches of each scorer.

    Sketches are exact quantiles of a sample chosen by a hash of ``doc_key``, so they are the same
    whatever the partitioning (``percentile_approx`` is not: its merge order leaks into the result).
    """

    input_table: str = setting("annotated", "The annotated table.")
    output_table: str = setting("stats", "The stats table (appended; one stats run per Delta version).")
    n_quantiles: int = setting(1000, "Sketch resolution: `n_quantiles + 1` cut points.")
    sample_size: int = setting(
        200_000, "Documents (chosen by a hash of `doc_key`) behind each global sketch, σ's reference."
    )
    domain_sample_size: int = setting(20_000, "Documents per domain behind the per-domain sketches.")
    low_confidence_below: float = setting(
        0.5,
        "A document whose domain probability (the annotated `<domain_column>_prob` column) is below this "
        "counts as low-confidence in its domain; the counts are in the stats summary and the select report "
        "(a column only when the annotated table has the probability). Routing such documents to "
        "`unknown` is `annotate.min_domain_confidence`.",
        ge=0,
        le=1,
    )


@dataclass
class SelectConfig:
    """The select job: annotated + stats + θ → selected Delta table, shards, manifest, report."""

    input_table: str = setting(
        "annotated", "The annotated table (read at the version the stats were computed on)."
    )
    stats_table: str = setting("stats", "The stats table.")
    stats_version: int | None = setting(None, "Stats version to use; `null` = latest.")
    output_table: str = setting(
        "selected",
        "Selected Delta table, partitioned by `selection_id`; one row per kept document with its "
        "`copies`. A rerun replaces its own slice.",
    )
    output_dir: str = setting(
        "data/selections",
        "Per selection: `<output_dir>/<selection_id>/{manifest.json, shards/, report/}`. `manifest.json` "
        "is removed when a rerun starts and written last, naming `selected_version` (the Delta version of "
        "the selected table it describes): a folder without one is an unfinished run. The id hashes the "
        "input tables' locations and versions with θ and seed: warehouses may share this folder.",
    )
    params: str = setting("conf/params/demo.yaml", "θ file (YAML/JSON; format in [params.md](params.md)).")
    allow_unused_domains: bool = setting(
        False,
        "Accept a θ naming domains the data lacks (a domain of the data missing from θ is always an error).",
    )
    selector: str = setting(
        "quadmix",
        "`quadmix` (θ), or a baseline: `uniform`, `topk:<scorer>`, `union_topk` (the paper's Criteria "
        "Mix). Baselines need `token_budget`. The name is checked by the selectors' registry "
        "(`quadmix_spark.spark.selectors`) before Spark starts.",
    )
    seed: int = setting(0, "Seed of the copy draws and of the shard order.")
    token_budget: int | None = setting(
        None, "Target tokens (counting copies); `null` lets θ decide the size.", gt=0
    )
    mixture: str | None = setting(
        None,
        "A domain mixture composed with the selector: a [mixture source](#mixture-sources): `natural`, "
        "`uniform`, another job's mixture or a mixture file. Each domain gets `token_budget × share` "
        "tokens, chosen inside the domain by the selector (θ for `quadmix`). Needs `token_budget`.",
    )
    max_repeats: int = setting(
        4,
        "With a mixture: copies of one document are capped here, so a domain yields at most its tokens × "
        "`max_repeats`.",
        ge=1,
    )
    mixture_shortfall: Literal["error", "redistribute"] = setting(
        "error",
        "With a mixture, a domain whose target exceeds what it can yield: `error` fails before any write, "
        "naming the domain, its target and what it can yield; `redistribute` caps it and spreads the rest "
        "over the other domains by their shares (the manifest lists the capped domains).",
    )
    budget_tolerance: float = setting(
        0.002,
        "Calibration stops when realised tokens are within ± this fraction of the budget (of each "
        "domain's target, with a mixture).",
        gt=0,
        lt=0.05,
    )
    rank_mode: Literal["exact", "scalable"] = setting(
        "scalable",
        "`exact`: Spark window per domain (small data, tests). `scalable`: per-domain q̄ → r̄ mapping "
        "fitted on a hash sample, applied row-wise.",
    )
    rank_sample_size: int = setting(
        10_000, "Documents per domain behind the scalable mapping (the paper uses 10,000)."
    )
    shard_target_mb: float = setting(64.0, "Target text MB per training shard.")
    shard_formats: list[Literal["parquet", "jsonl"]] = setting(
        ["parquet", "jsonl"], "Shard formats; `[]` writes no shards."
    )
    report: bool = setting(True, "Write the PNG/Markdown/HTML report.")
    report_sample_size: int = setting(20_000, "Documents behind the report's histograms.")


@dataclass
class SearchConfig:
    """The fit-search job: proxy-run metrics → LightGBM regressor → θ* (docs/config.md)."""

    runs_path: str = setting(
        "data/proxy_runs.parquet", "Proxy-run metrics (runs trained elsewhere can be imported this way)."
    )
    runs_format: Literal["csv", "parquet", "delta"] = setting("parquet", "Format of `runs_path`.")
    mode: Literal["quadmix", "regmix"] = setting(
        "quadmix",
        "Features: θ vectors (QuaDMix, Algorithm-1 candidates) or domain mixtures (RegMix, Dirichlet "
        "candidates).",
    )
    template_params: str = setting(
        "conf/params/demo.yaml",
        "A θ file naming the domains and scorers, i.e. the vector layout (QuaDMix mode; RegMix mode uses it "
        "only as the last source of domain names).",
    )
    domains: list[str] = setting(
        [],
        "RegMix mode: the domain order of the runs' mixture vectors; `[]` = the domains of `search.prior` "
        "when it is read from a file (a mixture file, `entropy:<measure>`, `bimix`, …; sorted), else the "
        "template's.",
    )
    prior: str = setting(
        "natural",
        "RegMix mode: the centre of the candidate mixtures: a [mixture source](#mixture-sources) "
        "(`natural`: token shares from `select.stats_table`).",
    )
    temperature: float = setting(
        0.5,
        "RegMix mode: the prior is raised to this power and renormalised (RegMix: 0.5; < 1 lifts small "
        "domains). Each candidate is `Dirichlet(strength × tempered prior)` with a strength from 15 "
        "log-spaced values in [0.1, 5].",
    )
    max_usage: float = setting(
        15.0,
        "RegMix mode: a candidate with a share above `max_usage × prior` is rejected (RegMix's "
        "MAXIMUM_USAGE: at most about that many epochs of a domain).",
    )
    holdout_runs: str | None = setting(
        None,
        "A text file of run ids (one per line) kept out of the fit and the cross-validation, and scored by "
        "the chosen surrogate after it (e.g. a published swarm's fixed test split); instead of "
        "`holdout_fraction`'s hash.",
    )
    output_mixture: str = setting(
        "data/search/mixture_star.yaml",
        "RegMix mode: r* as a mixture file, with the fit's metrics in its provenance.",
    )
    ranges: dict[str, list[float]] = setting(
        {},
        "Algorithm 1's β ranges, `{lambda|omega|eta|epsilon: [low, high]}`; unset keys keep the paper's "
        "scales (λ ≤ 1000, ω ≤ 0.1, η ≤ 1, ε ≤ 0.001). ω's range should cover the token budget's share of "
        "the pool: the paper's proxies take ~0.2% of theirs.",
    )
    holdout_fraction: float = setting(
        0.0,
        "Runs kept out of the fit (by a hash of `run_id`) and scored after it; 0: every run serves the "
        "cross-validation and the fit.",
        ge=0,
        lt=0.5,
    )
    regressor: str | list[str] = setting(
        "auto",
        "The surrogate: `auto` (cross-validate every registered family and fit the best, or the mean of the "
        "best when it scores higher), one family (`lightgbm`, `loglinear`, `gp`, `linear`, or one a user "
        "registered; [extending.md](extending.md)), or a list of families to choose among.",
        nonempty=True,
        rule="an empty list names no family (auto: all of them)",
    )
    regressor_params: dict[str, dict[str, Any]] = setting(
        {}, "Constructor arguments per family, e.g. `{gp: {n_restarts: 3}, loglinear: {alpha: 0.01}}`."
    )
    cv_folds: int = setting(5, "Folds of the cross-validation that scores and chooses the surrogate.", ge=2)
    cv_repeats: int = setting(
        3,
        "Repeats of the cross-validation, each with other folds; the table shows the mean Spearman and its "
        "standard deviation over them.",
        ge=1,
    )
    features: Literal["auto", "theta", "realised", "both"] = setting(
        "auto",
        "QuaDMix mode: what the surrogate reads of a θ: θ itself, what θ selects (per domain: share of the "
        "selected tokens, kept fraction, mean copies, mean σ of each scorer over the selected tokens, "
        "estimated from a pool sample by Eq. 1–3; [surrogates](#search)), or both side by side; `auto` "
        "cross-validates all three and keeps the best (θ alone when fit-search has no pool: no stats table).",
    )
    feature_sample: int = setting(
        1000,
        "Pool documents per domain behind the realised features (drawn by the rank sample's hash, so a "
        "subset of `proxy.rank_sample_size`'s sample). Larger follows the proxies' own selections more "
        "closely where ω keeps few documents; the search's cost grows with it (100,000 candidates × 11 "
        "domains × 1,000 documents: about a minute on 2 cores).",
        ge=10,
    )
    keep_candidate: bool = setting(
        False,
        "Write the searched θ* (r*) even when it is not predicted better than the best observed run by more "
        "than `search.evidence_margin` (the default writes that run's θ or mixture instead).",
    )
    evidence_margin: float = setting(
        1.0,
        "CV MAEs by which θ* (r*) must be predicted below the best run to be written; the run's side is the "
        "surrogate's prediction for it, moved towards its observed loss beyond 2 MAE. 0 trusts the surrogate "
        "more: closer to the best choice on average, but can lose badly "
        "([search](search.md#the-best-run-or-the-candidate)).",
        ge=0.0,
    )
    min_child_samples: int | None = setting(
        None,
        "LightGBM's `min_data_in_leaf`; `null` = min(20, max(5, fit runs / 10)): 20 (LightGBM's default) "
        "from 200 runs on, smaller on few runs, where 20 leaves one split per tree (64 demo runs, 8-fold CV "
        "Spearman: 0.19 at 20, 0.45 at 5).",
    )
    rounds: list[int] | None = setting(
        None,
        "The experiment's proxy runs per round: round 1 draws θ from Algorithm 1; each later round trains "
        "the best candidates of the surrogate fitted on every run before it (inside the runs' region), and "
        "the surrogate is refitted on all runs; `null`: `experiment.n_runs` in one round below 48 runs, else "
        "three quarters then a quarter (64 → `[48, 16]`). The first round needs at least 20 runs.",
        nonempty=True,
        ge=1,
        rule="list at least one round",
    )
    mixture: str | None = setting(
        None,
        "The experiment: search only θ's in-domain part at these domain shares (a [mixture "
        "source](#mixture-sources), e.g. the best mixture row of an earlier experiment): every proxy "
        "dataset gives each domain its share of the budget and θ chooses the documents inside it; θ* is "
        "selected with the mixture, and the comparison adds the mixture with random documents inside "
        "each domain.",
    )
    n_candidates: int = setting(100_000, "Candidates drawn for the search.")
    top_k: int = setting(
        10,
        "θ* (or r*) is the mean of the `top_k` best predicted candidates, in both modes (RegMix's code uses "
        "128 of 100,000; with the few dozen to few hundred runs a proxy budget allows, the surrogate's top "
        "is flatter and 10 keeps r* near it).",
    )
    seed: int = setting(0, "Seed of the split, the regressor and the candidates.")
    output_params: str = setting("data/search/theta_star.yaml", "θ* as a params file (QuaDMix mode).")
    output_dir: str = setting(
        "data/search",
        "`predicted_vs_actual.png` (out-of-fold predictions of the chosen surrogate, with the CV table), "
        "`search_summary.json`, and the fitted surrogate (`regressor.pkl`, with `regressor.json`: family, "
        "mode, features, feature names, CV table) that `quadmix predict-mixture --mixture SOURCE` scores "
        "mixtures with (any [mixture source](#mixture-sources), repeatable).",
    )


@dataclass
class TinyLMConfig:
    """The ``tinylm`` proxy trainer: a small decoder-only transformer (PyTorch, optional extra).

    The defaults follow RegMix's 1M proxy: 2 layers, d=256, 8 heads, SwiGLU 512 (about 1M
    non-embedding parameters); the embedding is tied to the output layer.
    """

    d_model: int = setting(256, "Model width.")
    n_layers: int = setting(2, "Transformer blocks.")
    n_heads: int = setting(8, "Attention heads.")
    d_ff: int = setting(512, "SwiGLU hidden width.")
    context: int = setting(256, "Tokens per training sequence.")
    batch_size: int = setting(8, "Sequences per optimizer step.")
    lr: float = setting(3e-3, "AdamW peak learning rate (linear warmup, cosine decay).")
    seed: int = setting(0, "Initialisation seed.")
    device: str = setting("cpu", "`cpu`, `cuda` or `auto`.")
    threads: int = setting(1, "Torch CPU threads per run (Spark already runs one task per core).")
    eval_tokens: int = setting(65_536, "Tokens of each evaluation set scored.")
    vocab: str = setting(
        "full",
        "The model's vocabulary: `full`, the tokenizer's ids (cl100k: 100,277 outputs), or `top:N`, the N "
        "most frequent ids of the pool plus one UNK id for all others (below).",
        pattern=r"full|top:[1-9][0-9]*",
        rule="be 'full' or 'top:N' with N >= 1 (e.g. top:8192)",
        shown="`full` or `top:N`",
    )


@dataclass
class TargetSetConfig:
    """A user-provided target set (e.g. instruction data, benchmark training splits)."""

    path: str = setting("", "File or directory of the set (required).")
    format: Literal["jsonl", "parquet", "delta"] = setting("jsonl", "Its format.")
    text_column: str = setting("text", "Column holding the text.")
    max_tokens: int = setting(200_000, "Tokens kept, documents taken in hash-of-text order.")


@dataclass
class TargetsConfig:
    """The evaluation sets of every proxy run and how their losses make the target.

    Evaluation sets are the ``target_sets`` (named as given) and, with ``heldout_fraction`` > 0,
    one held-out set per domain (``heldout:<domain>``) carved from the pool by a hash of
    ``doc_key``; held-out documents are removed from the pool the proxies select from.
    """

    target_sets: dict[str, TargetSetConfig] = setting(
        {},
        "Name → user-provided target set (instruction data, benchmark training splits), keys below.",
    )
    heldout_fraction: float = setting(
        0.05,
        "Fraction of the annotated table (by a hash of `doc_key`) held out for per-domain evaluation sets "
        "and removed from the experiment's pool; `0` = none.",
    )
    heldout_filter: str | None = setting(
        None,
        "SQL predicate on held-out rows that may evaluate, e.g. `quality = 'high'`. Checked against the "
        "annotated table's columns (with `domain_column`, `token_column` and `scorers`) before the "
        "experiment's first job.",
    )
    heldout_max_tokens: int = setting(50_000, "Tokens per held-out domain set.")
    weights: dict[str, float] = setting(
        {}, "Eval set → weight of its final loss in the target; `{}` = the plain mean over all sets."
    )


@dataclass
class ProxyConfig:
    """Proxy datasets (many θ, one scan) and proxy runs (Spark tasks) into ``runs_table``."""

    datasets_table: str = setting(
        "proxy_datasets",
        "One row per (run, kept document): `run_id`, `doc_key`, `domain_idx`, `tokens`, `copies` (no text; "
        "trainers join it).",
    )
    runs_table: str = setting("proxy_runs", "The runs table described above.")
    token_budget: int = setting(
        300_000, "Training tokens of every proxy run (the stream is cut to exactly this)."
    )
    overshoot: float = setting(
        0.05,
        "Datasets aim at `budget · (1 + overshoot)` expected tokens so that the cut always has enough.",
    )
    rank_sample_size: int = setting(
        10_000, "Documents per domain behind each θ's rank mapping (as `select.rank_sample_size`)."
    )
    seed: int = setting(
        0, "Seed of the rank sample, the copy draws (shared by all runs) and the stream order."
    )
    trainer: str = setting(
        "ngram",
        "A name of the trainer registry (`proxy.trainers.TRAINERS`). `ngram`: Kneser-Ney n-gram model in "
        "numpy, seconds per run. `tinylm`: a ~1M-parameter transformer (needs the `torch` extra). Another "
        "trainer is one class and one registration there.",
    )
    ngram_order: int = setting(2, "n of the n-gram trainer (≤ 3 at cl100k's vocabulary).")
    n_checkpoints: int = setting(4, "Losses are logged at T/2^(n−1), …, T/2, T training tokens.")
    tasks: int | None = setting(
        None,
        "Spark tasks the runs are spread over (by a hash of `run_id`, so a task may hold two runs and "
        "another none); `null` = as many tasks as runs.",
    )
    tinylm: TinyLMConfig = field(default_factory=TinyLMConfig)


@dataclass
class ExperimentConfig:
    """The experiment: proxies → fit → search → θ* against the baselines at one token budget."""

    n_runs: int = setting(
        64,
        "Proxy runs (θ from Algorithm 1); at least 24, and the first round ≥ 20 after "
        "`search.holdout_fraction`'s held-out runs (25 with the demo's 0.2).",
        ge=24,
    )
    seed: int = setting(0, "Seed of the θ draws and of the held-out split.")
    pool_table: str = setting("experiment_pool", "The annotated table minus the held-out slice.")
    stats_table: str = setting("experiment_stats", "Stats of the pool.")
    selected_table: str = setting(
        "experiment_selected", "The evaluation selections (θ* and baselines), as `select.output_table`."
    )
    output_dir: str = setting("data/experiment", "Where the results are written.")
    baselines: list[str] = setting(
        ["uniform", "topk", "union_topk"],
        "Baselines beside θ* (selectors other than `quadmix`): `topk` means top-k of every scorer, "
        "`topk:<scorer>` one.",
    )
    decompose: bool = setting(
        True,
        "Also evaluate θ*'s two halves apart: `θ* mixture, uniform in-domain` (θ*'s realised token shares, "
        "random documents inside each domain) and `natural mixture, θ* in-domain` (θ*'s in-domain sampling "
        "with the pool's own shares), so the table says how much each half contributes.",
    )
    seeds: int = setting(
        3,
        "Select seeds of each decomposition row (at least 1 with `decompose`); the table prints their mean "
        "and standard deviation.",
    )
    mixtures: list[str] = setting(
        [],
        "Mixtures to compose θ* with, one row each (`θ* ∘ <name>`): [mixture sources](#mixture-sources), "
        "resolved on the experiment's pool, except `tandem` and `doremi`, which the experiment makes on its "
        "own pool (`quadmix reweight` there) rather than reading `reweight.output_dir`.",
    )
    mixture_method: Literal["bimix"] | None = setting(
        None,
        "A mixture-level method whose rows join the comparison (`pipeline.mixture_methods`; below). Needs "
        "`proxy.n_checkpoints` ≥ 3.",
    )
    mixture_draws: int = setting(
        3,
        "Dirichlet(1) mixtures trained for the method's fit beside its own mixtures (seeded by "
        "`experiment.seed`); not rows of the comparison.",
        ge=0,
    )


@dataclass
class BimixConfig:
    """The bimix job: proxy runs → BiMix law per domain → diagnostics → r* mixture file (docs/config.md)."""

    runs_path: str | None = setting(
        None,
        "`null` = `proxy.runs_table`. Else runs trained elsewhere, already in BiMix's long format, one row "
        "per (run, domain, checkpoint): `run_id`, `domain`, `r` (the domain's share of the run's mixture), "
        "`step_tokens`, `loss` (the domain's held-out loss); Parquet, or CSV when the name ends in `.csv`.",
    )
    s_target: float | None = setting(
        None,
        "Tokens of the run r* is for; `null` = the largest step in the runs.",
        gt=0,
        what="a number of tokens",
    )
    budget: int | None = setting(
        None,
        "Tokens the caps are computed for (`max_repeats × tokens_i / budget`); `null` = "
        "`proxy.token_budget`.",
        gt=0,
    )
    fixed_step: bool | None = setting(
        None,
        "Fit `L_i = A_i / r_i^α_i` per domain at one step, for swarms that log only their final loss: "
        "`null` = when all rows with r > 0 share one step, with a message; `true` = at the largest "
        "step, other steps left out; `false` = never (3 distinct steps needed). The law holds at "
        "that step only: `s_target` must be `null` or that step.",
    )
    unseen_k: int | None = setting(
        None,
        "Mixtures left out per fold of the unseen-mixture error (runs of one mixture stay together); "
        "`null` = 1 up to 20 mixtures, else ⌈mixtures / 20⌉: at most 20 folds, each a fit of the law "
        "(leave-one-out over a 768-run swarm would be 768 fits).",
        ge=1,
    )
    output_dir: str = setting(
        "data/bimix",
        "`bimix_fit.png` (observed and fitted loss curves per domain) and `bimix_summary.json` (everything "
        "printed, as values).",
    )
    output_mixture: str = setting(
        "data/bimix/mixture_bimix.yaml",
        "r* as a mixture file.",
        pattern=r"(?i).*\.(yaml|yml|json)",
        rule="end in .yaml, .yml or .json",
        shown="`.yaml`, `.yml` or `.json`",
    )


@dataclass
class RefreshConfig:
    """The refresh job: annotate (incremental) → stats → select for one run date (docs/config.md)."""

    runs_table: str = setting(
        "refresh_runs",
        "Append-only Delta table, one row per event of a run date's steps (columns below). Created "
        "race-free.",
    )


@dataclass
class EntropyConfig:
    """The entropy job: per-domain SE/JE/CE/VNE of a hash sample → softmax mixtures (docs/config.md)."""

    input_table: str = setting("annotated", "The annotated table (its latest version).")
    output_table: str = setting("entropy", "The entropy Delta table.")
    output_dir: str = setting("data/entropy", "Mixture files and the summary JSON.")
    measures: list[EntropyMeasure] = setting(
        ["se", "je", "ce", "vne"],
        "Which of `se`, `je`, `ce`, `vne` to compute; each gives one mixture file.",
        nonempty=True,
        distinct=True,
    )
    tokens_per_domain: int = setting(
        20_000_000, "Tokens sampled per domain for SE, JE and CE (a domain with fewer is taken whole).", gt=0
    )
    tokenizer: Literal["cl100k_base", "o200k_base"] = setting("cl100k_base", "The token ids counted.")
    vne_docs: int = setting(
        1000,
        "Documents per domain behind VNE (at most): those with the smallest `hash_uniform(doc_key, seed, "
        "ENTROPY_STREAM + 1)`. VNE costs O(vne_docs · d²) on the driver.",
        ge=2,
    )
    vne_model: str | None = setting(
        "skipgram",
        "VNE's sentence vectors: `skipgram`, a general-purpose unsupervised fastText model (`vne_dim` "
        "dimensions) trained on a hash sample of the input and cached under `<warehouse>/_models/vne/` by "
        "the sample's digest; `classifier`, the `fasttext_domain` annotator's model (what `null` once "
        "meant; `null` is refused); or a fastText model's path.",
    )
    vne_dim: int = setting(300, "Dimensions of the `skipgram` model (VNE ≤ log of it).", gt=0)
    vne_epochs: int = setting(5, "Training epochs of the `skipgram` model.", gt=0)
    vne_train_tokens: int = setting(
        250_000,
        "Tokens (`token_column`) per domain of the `skipgram` model's training sample: documents with "
        "`hash_uniform(doc_key, seed, ENTROPY_STREAM + 2)` below the domain's rate; the driver holds only "
        "this sample.",
        gt=0,
    )
    seed: int = setting(0, "Seed of the hash samples (SE/JE/CE, VNE's documents, the skipgram model's).")
    estimator: Literal["plugin", "miller_madow"] = setting(
        "plugin",
        "SE/JE/CE from the sample: `plugin` (its frequencies; biased low by about (K − 1) / (2N) nats, K "
        "distinct codes in N items, so domains below the cap look less varied) or `miller_madow` (plus "
        "(K − 1) / (2N)). Not VNE. The default keeps the published method and existing mixtures unchanged.",
    )
    temperature: float = setting(
        1.0,
        "T of r = softmax(H / T), H in nats: 1 is BiMix's softmax; larger is flatter (T = ln 2 is the "
        "softmax of entropies in bits).",
        gt=0,
    )


@dataclass
class StreamsConfig:
    """The streams job: per-domain token streams for online reweighting (docs/config.md#reweight)."""

    input_table: str = setting(
        "annotated",
        "The annotated table, or a selected table with `selection_id`. Needs `domain_column`, "
        "`token_column`, `doc_key` and `text`.",
    )
    selection_id: str | None = setting(
        None,
        "With a selected table: the selection to read (each kept document once; the reweighting decides "
        "repetition).",
    )
    output_table: str = setting("domain_streams", "The streams table described above.")
    tokens_per_domain: int = setting(
        200_000, "Tokens sampled from every domain (a domain with fewer gives all it has).", gt=0
    )
    max_tokens: dict[str, int] = setting(
        {},
        "Data-restricted domains: domain → at most this many unique tokens (a prefix of its uncapped "
        "stream). A name that is not a domain of the streams fails.",
        gt=0,
    )
    domains: list[str] = setting([], "The domains to stream; `[]` = every domain of the input.")
    chunk_tokens: int = setting(65_536, "Tokens per row of the table.", gt=0)
    seed: int = setting(0, "Seed of the documents' order inside a domain.")


@dataclass
class ReweightConfig:
    """The reweight job: domain streams → TANDEM / DoReMi / Uniform runs → mixture files."""

    streams: StreamsConfig = field(default_factory=StreamsConfig)
    runs_table: str = setting("reweight_runs", "The runs table described above.")
    methods: list[str] = setting(
        list(BUILT_IN),
        "Methods `quadmix reweight` runs when no `--method` is given: names of the reweighting registry "
        "(`mixing.reweighters.REWEIGHTERS`; the default is its built-in methods). Another method is one "
        "`OnlineReweighter` class and one registration there.",
        nonempty=True,
    )
    seeds: list[int] = setting(
        [0],
        "One run per seed (and per hyperparameter set); a method's mixture is the mean over its ok seeds.",
        nonempty=True,
        distinct=True,
    )
    params: dict[str, list[dict[str, Any]]] = setting(
        {},
        "Hyperparameter sets per method: keyword arguments of its class (below); one run per set and seed. "
        "A missing method runs with the class defaults.",
    )
    final: dict[str, Literal["avg", "last"]] = setting(
        {},
        "Method → which α is its mixture (`mixture_<method>.yaml`, the `tandem` / `doremi` mixture sources, "
        "`experiment.mixtures`): `avg`, the time average of α over the run (DoReMi's ᾱ), or `last`, the α "
        "of the last episode / step; each a mean over the ok seeds. Both are written beside it "
        "(`mixture_<method>_avg.yaml`, `mixture_<method>_last.yaml`). A method not named: `avg`.",
    )
    retry_failed: bool = setting(False, "Train runs recorded as failed again (`--retry-failed`).")
    tasks: int | None = setting(None, "Spark tasks the runs are spread over; `null` = one per run.", gt=0)
    output_dir: str = setting(
        "data/reweight", "Mixture files, `alpha.png`, `vocab.json`, `reweight_summary.json`."
    )
    eval_tokens: int = setting(
        0,
        "With > 0: a fresh tinylm (`proxy.tinylm`, one per seed) is trained on each method's mixture, "
        "`eval_tokens` tokens drawn from the streams (below), and scored on the validation streams; the "
        "target loss is their mean. `0` = no evaluation.",
        ge=0,
    )
    eval_seeds: list[int] = setting(
        [],
        "Seeds of the fresh proxies (initialisation and the order of the mixture's pieces), one proxy per "
        "seed and mixture; the printed target is their mean ± standard deviation. `[]` = `reweight.seeds`.",
        distinct=True,
    )


@dataclass
class ClusterConfig:
    """The cluster job (domains for a corpus without labels) and the assign step (docs/clustering.md)."""

    input_table: str = setting(
        "annotated", "The annotated table: needs `id`, `doc_key`, `text` and `token_column`."
    )
    output_table: str = setting(
        "clusters",
        "The clusters Delta table, one row per cluster (overwritten by each fit; columns in "
        "docs/clustering.md).",
    )
    model_dir: str = setting(
        "cluster_model",
        "Where the fitted pipeline (words → Word2Vec or TF-IDF → Normalizer → k-means, MLlib's own format) "
        "and `cluster.json` (names, model id) are saved; a name resolves under the warehouse like a table.",
    )
    column: str = setting(
        "cluster",
        "Column of the annotated table `quadmix assign` writes (the cluster's name); `<column>_model` holds "
        "the model id it came from. Set `domain_column` to it to use clusters as domains.",
        pattern=r"[A-Za-z_][A-Za-z0-9_]*",
        rule="be a column name (letters, digits, _)",
        shown="a column name",
    )
    sample_size: int = setting(
        20_000,
        "Documents (about; chosen by a hash of `doc_key`, the same on any partitioning) the features and "
        "k-means are fitted on; the driver holds no more than this sample's per-cluster summaries.",
        ge=2,
    )
    algorithm: Literal["kmeans", "bisecting_kmeans"] = setting(
        "kmeans", "MLlib `KMeans` (k-means||) or `BisectingKMeans`."
    )
    k: int | Literal["auto"] = setting(
        "auto", "Clusters; `auto`: the k of `cluster.k_range` with the best silhouette on the sample."
    )
    k_range: list[int] = setting(
        [4, 8, 12, 16], "The k tried by `cluster.k: auto` (one fit each).", ge=2, nonempty=True, distinct=True
    )
    seed: int = setting(
        0, "Seed of the sample and of k-means; the same seed and input give the same clusters."
    )
    max_iter: int = setting(40, "k-means iterations at most.", ge=1)
    features: Literal["word2vec", "tfidf"] = setting(
        "word2vec",
        "Document vectors: the mean of MLlib `Word2Vec` word vectors trained on the sample, or hashed "
        "unigram TF-IDF (docs/clustering.md compares them).",
    )
    dim: int = setting(64, "`word2vec`: vector size.", ge=2)
    num_features: int = setting(1 << 18, "`tfidf`: HashingTF buckets.", ge=1024)
    min_doc_freq: int = setting(
        2,
        "`word2vec`: words seen fewer times are left out; `tfidf`: a term in fewer documents weighs 0.",
        ge=0,
    )
    partitions: int = setting(
        8,
        "Partitions of the sample while fitting, by a hash of `doc_key` (k-means|| draws per partition, so "
        "this, not the input's partitioning, is part of the result).",
        ge=1,
    )
    name_terms: int = setting(3, "Top terms in a cluster's name (`c07:python,pandas,df`).", ge=1)
    top_terms: int = setting(10, "Top terms kept per cluster in the clusters table.", ge=1)
    examples: int = setting(5, "Sample documents nearest each centre kept as examples (their ids).", ge=0)


@dataclass
class PipelineConfig:
    """The whole pipeline; each job reads its own section."""

    warehouse: str = setting(
        "warehouse",
        "Directory under which table names resolve: table `annotated` is `<warehouse>/annotated`. A value "
        "containing `/` or `:` is used as a path/URI instead.",
    )
    spark: SparkConfig = field(default_factory=SparkConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    classifiers: dict[str, ClassifierConfig] = field(default_factory=dict)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    domain_column: str = setting(
        "domain",
        "Column of the annotated table holding the domain label (written by the `fasttext_domain` "
        "annotator, or kept from the input). A document whose domain is null belongs to no domain: "
        "`stats` counts such documents apart (summary and commit metadata) and `select` leaves them out, "
        "with the count in its summary and manifest.",
    )
    token_column: str = setting(
        "n_tokens", "Column holding each document's token count (written by the `tokens` annotator)."
    )
    scorers: dict[str, Direction] = setting(
        {},
        "The quality scorers θ weighs: annotated-table column → `higher_is_better` or `lower_is_better`. "
        "Required by `stats` and `select`.",
    )
    stats: StatsConfig = field(default_factory=StatsConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    bimix: BimixConfig = field(default_factory=BimixConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    reweight: ReweightConfig = field(default_factory=ReweightConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def table_path(self, name: str) -> str:
        """A table name under the warehouse, or a path/URI given as is (see :func:`resolve`)."""
        if "/" in name or ":" in name:
            return resolve(name)
        return resolve(str(Path(self.warehouse) / name))


def declared_keys(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of section ``cls`` that are keys (made by :func:`setting`), by name, in order."""
    return {f.name: f for f in dataclasses.fields(cls) if DOC in f.metadata}


# -- reading ------------------------------------------------------------------------------------


def resolve(path: str) -> str:
    """A path as Spark should see it: URIs as given, local paths made absolute.

    The JVM resolves relative paths against its own working directory, which is not the Python
    process's when the session was started elsewhere; absolute paths mean the same to both.
    """
    if "://" in path or path.startswith("/"):
        return path
    return str(Path(path).resolve())


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Read, override and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    for item in overrides:
        _apply_override(data, item)
    config = from_dict(PipelineConfig, data)
    validate(config)
    return config


def _apply_override(data: dict, item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    try:
        node[parts[-1]] = load_yaml(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {key}: {raw!r} is not a YAML value: {err}") from err


def from_dict(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass ``cls`` from plain data, checking names and types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]} (allowed: {', '.join(sorted(fields))})")
    values = {}
    for name, f in fields.items():
        dotted = f"{key}.{name}" if key else name
        if name in data:
            values[name] = _coerce(hints[name], data[name], dotted)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key {dotted}")
    return cls(**values)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if tp is Any:  # free-form values (e.g. a method's keyword arguments), checked by their user
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for tp_ in inner[:-1]:  # e.g. str | list[str]: the first type the value fits
            try:
                return _coerce(tp_, value, key)
            except ConfigError:
                pass
        return _coerce(inner[-1], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and hasattr(tp, "from_config"):  # a section that validates itself
        return tp.from_config(value, key)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # spark conf values such as 4 or 0.5 are strings to Spark
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


# -- the one validator ---------------------------------------------------------------------------


def validate(node: Any, key: str = "") -> None:
    """Check ``node``, the whole config or one section at dotted ``key``, and raise :class:`ConfigError`.

    Each key's declared :class:`Check` first, then the sections below it, then the rules between
    keys of ``node``'s class (:data:`_RULES`). Jobs given a config built in code (not read by
    :func:`load_config`) call it on their section instead of repeating its rules.
    """
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        dotted = f"{key}.{f.name}" if key else f.name
        check = f.metadata.get(CHECK)
        if check is not None:
            check.validate(value, dotted)
        for inner_key, section in _sections_in(value, dotted):
            validate(section, inner_key)
    for rule in _RULES.get(type(node), ()):
        rule(node, key)


def _sections_in(value: Any, key: str) -> list[tuple[str, Any]]:
    if dataclasses.is_dataclass(value):
        return [(key, value)]
    if isinstance(value, list):
        return [(f"{key}[{i}]", v) for i, v in enumerate(value) if dataclasses.is_dataclass(v)]
    if isinstance(value, dict):
        return [(f"{key}.{k}", v) for k, v in value.items() if dataclasses.is_dataclass(v)]
    return []


def _check_annotators(config: PipelineConfig, key: str) -> None:
    """Names given and unique, and no ``direction`` that contradicts ``scorers`` (the keys of each
    kind were checked against the registry on reading)."""
    seen: set[str] = set()
    for i, ann in enumerate(config.annotate.annotators):
        where = f"annotate.annotators[{i}]"
        ann.name = ann.name or ann.kind
        if ann.name in seen:
            raise ConfigError(f"{where}.name {ann.name!r} is used twice")
        seen.add(ann.name)
        scorer = config.scorers.get(ann.column)
        if ann.direction is not None and scorer is not None and scorer != ann.direction:
            raise ConfigError(
                f"{where}.direction: {ann.direction}, but scorers.{ann.column} is {scorer} (scorers gives "
                "a column its direction; the annotator's direction can be left out)"
            )


def _check_mixture_method(config: PipelineConfig, key: str) -> None:
    if config.experiment.mixture_method == "bimix" and config.proxy.n_checkpoints < 3:
        raise ConfigError(
            "proxy.n_checkpoints must be at least 3 with experiment.mixture_method=bimix (BiMix's β and C "
            f"need 3 distinct steps), got {config.proxy.n_checkpoints}"
        )


def _check_annotate(cfg: AnnotateConfig, key: str) -> None:
    """JSON lines' size limit, at most one domain annotator, and one for the confidence threshold."""
    if cfg.input.format == "jsonl" and cfg.max_text_bytes > MAX_JSON_LINE_BYTES:
        raise ConfigError(
            f"{key}.max_text_bytes must be at most {MAX_JSON_LINE_BYTES} (16 MiB) for JSON lines: "
            "Spark parses a line into a variant of at most 16 MiB"
        )
    domain = _domain_annotators(cfg.annotators)
    if len(domain) > 1:
        raise ConfigError(f"{key}.annotators: at most one domain annotator ({_domain_kinds()})")
    if cfg.min_domain_confidence and not domain:
        raise ConfigError(f"{key}.min_domain_confidence needs a domain annotator ({_domain_kinds()})")


def _check_select(cfg: SelectConfig, key: str) -> None:
    # The selector and the mixture source's name are checked by their registries, which live
    # beside what they describe (spark/selectors, mixing/sources): pipeline.select.check_config.
    if cfg.mixture is not None and cfg.token_budget is None:
        raise ConfigError(f"{key}.token_budget is required with {key}.mixture")


def _check_proxy(cfg: ProxyConfig, key: str) -> None:
    try:
        TRAINERS.check(cfg.trainer, f"{key}.trainer")
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _check_cluster(cfg: ClusterConfig, key: str) -> None:
    if cfg.k != "auto" and cfg.k < 2:
        raise ConfigError(f"{key}.k must be at least 2 or auto, got {cfg.k!r}")
    if cfg.name_terms > cfg.top_terms:
        raise ConfigError(
            f"{key}.name_terms ({cfg.name_terms}) must be at most {key}.top_terms ({cfg.top_terms})"
        )


def _check_experiment(cfg: ExperimentConfig, key: str) -> None:
    if cfg.decompose and cfg.seeds < 1:
        raise ConfigError(f"{key}.seeds must be at least 1 with {key}.decompose, got {cfg.seeds}")


def _check_reweight_methods(cfg: ReweightConfig, key: str) -> None:
    unknown = [m for m in cfg.methods if m not in REWEIGHTERS]
    if unknown:
        raise ConfigError(f"{key}.methods: {unknown} not among {', '.join(REWEIGHTERS)}")
    extra = sorted(set(cfg.params) - set(REWEIGHTERS))
    if extra:
        raise ConfigError(f"{key}.params.{extra[0]}: not a method ({', '.join(REWEIGHTERS)})")
    extra = sorted(set(cfg.final) - set(REWEIGHTERS))
    if extra:
        raise ConfigError(f"{key}.final.{extra[0]}: not a method ({', '.join(REWEIGHTERS)})")
    for method, sets in cfg.params.items():
        if not sets:
            raise ConfigError(f"{key}.params.{method}: an empty list runs nothing (leave the key out)")
        for k, params in enumerate(sets):
            # the job writes both mixtures from every run's α history: one run serves both choices
            if "final" in params:
                raise ConfigError(
                    f"{key}.params.{method}[{k}].final: every run's averaged and last α are both written; "
                    f"choose the method's mixture with {key}.final.{method}: avg | last"
                )


def _check_entropy(cfg: EntropyConfig, key: str) -> None:
    if cfg.vne_model is None:  # its meaning once; now a name says it
        raise ConfigError(
            f"{key}.vne_model: null no longer means the domain classifier's vectors: set `classifier` for "
            "them, `skipgram` (the default) or the path of a fastText model"
        )


#: The rules between keys, by the section they read (a rule gets the section and its dotted key).
_RULES: dict[type, tuple[Callable[[Any, str], None], ...]] = {
    PipelineConfig: (_check_annotators, _check_mixture_method),
    AnnotateConfig: (_check_annotate,),
    SelectConfig: (_check_select,),
    ProxyConfig: (_check_proxy,),
    ExperimentConfig: (_check_experiment,),
    ReweightConfig: (_check_reweight_methods,),
    EntropyConfig: (_check_entropy,),
    ClusterConfig: (_check_cluster,),
}


def _check_semantics(config: PipelineConfig) -> None:
    """The whole config's values (:func:`validate`; the name tests call)."""
    validate(config)


def _check_reweight(cfg: ReweightConfig) -> None:
    """The reweight section's values (:func:`validate`; the name tests call)."""
    validate(cfg, "reweight")


def _domain_annotators(annotators: list[AnnotatorConfig]) -> list[AnnotatorConfig]:
    return [a for a in annotators if issubclass(registry.annotator_class(a.kind), registry.DomainAnnotator)]


def _domain_kinds() -> str:
    domain = registry.DomainAnnotator
    return " | ".join(k for k in registry.kinds() if issubclass(registry.annotator_class(k), domain))


#: ``entropy.vne_model``'s named choices: a model trained by the entropy job; the domain classifier.
VNE_SKIPGRAM, VNE_CLASSIFIER = "skipgram", "classifier"


def vne_model(config: PipelineConfig) -> str | None:
    """The fastText file of VNE's vectors that the config names: ``entropy.vne_model`` as a path,
    or with ``classifier`` the ``model`` of the domain annotator (None without one); None for
    ``skipgram``, which the entropy job trains."""
    model = config.entropy.vne_model
    if model == VNE_SKIPGRAM:
        return None
    if model == VNE_CLASSIFIER:
        return next((a.options.get("model") for a in _domain_annotators(config.annotate.annotators)), None)
    return model


def to_dict(config: Any) -> dict:
    """Plain-data form of a config (for hashing and for commit metadata)."""
    return dataclasses.asdict(config)
