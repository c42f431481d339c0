"""Typed YAML configuration: every key is declared here, with its type, default and meaning.

A config file is validated before any Spark work starts: an unknown key, a value of the wrong type
or a missing file raises :class:`ConfigError` naming the dotted key. Any key can be overridden on
the command line with ``--set section.key=value`` (the value is parsed as YAML). Files and values
are read with the project's one YAML loader (:func:`quadmix_spark.core.params.load_yaml`), which
reads ``1e-3`` as a number.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Sequence
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


@dataclass
class SparkConfig:
    """How the SparkSession is built. Under spark-submit, ``master`` is ignored."""

    app_name: str = "quadmix"
    master: str = "local[2]"
    # Attempts per task in local mode: local[N] becomes local[N,<this>] (Spark's own default, 1,
    # lets one crashed Python worker fail the whole job). Under spark-submit, spark.task.maxFailures.
    local_max_failures: int = 4
    shuffle_partitions: int = 8
    arrow_batch_size: int = 2000  # rows per Arrow batch handed to the annotators
    # Rows per data file of every table a job writes (spark.sql.files.maxRecordsPerFile): a larger
    # input gives more files, so later scans get more tasks; 0 = unbounded.
    max_records_per_file: int = 50_000
    conf: dict[str, str] = field(default_factory=dict)  # any other spark.* setting


@dataclass
class InputConfig:
    """The raw corpus the annotate job reads."""

    path: str = "data/demo/corpus"
    format: Literal["jsonl", "parquet", "delta"] = "jsonl"
    id_column: str | None = "id"  # None: derive the id from a SHA-256 of the text
    text_column: str = "text"
    keep_columns: list[str] = field(default_factory=list)  # carried through to the output
    # Files named _* or .* (or under such a folder) are never read; unless this is true, their
    # presence fails the run. True: skip them, counted in the summary.
    skip_hidden_files: bool = False
    # JSON lines: decompress every .gz/.bz2 file once before the job, so that a truncated one is
    # quarantined whole (``unreadable_file``) instead of aborting the run.
    check_compressed_files: bool = True


@dataclass
class AnnotatorConfig:
    """One annotator. ``kind`` names its class in the annotator registry (:mod:`udfs.annotators`),
    which declares the kind's other keys, their types and defaults (docs/config.md lists them).

    ``options`` holds the kind's keys as given, validated against the registry. ``direction`` is
    a key old files carry: ``scorers`` is what gives a column its direction, so it is only checked
    against ``scorers`` (see :func:`_check_annotators`).
    """

    kind: str
    name: str = ""
    column: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    direction: Direction | None = None

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
        common = {"kind", "name", "column", "direction"}
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
    output_table: str = "annotated"
    quarantine_table: str = "quarantine"
    max_text_bytes: int = 1_000_000  # larger documents are quarantined as ``too_large``
    max_quarantine_fraction: float = 0.5  # a run quarantining a larger share of its input fails
    # An incremental run meeting an id the table holds with another text: keep the table's row
    # (first seen wins), replace it, or quarantine the new record as ``changed_text``.
    on_changed_text: Literal["keep", "replace", "quarantine"] = "keep"
    # A document whose domain probability is below this gets the domain ``unknown`` (0: off).
    min_domain_confidence: float = 0.0
    annotators: list[AnnotatorConfig] = field(default_factory=list)


@dataclass
class DemoConfig:
    """The bundled demo corpus generator."""

    output_path: str = "data/demo/corpus"
    n_docs: int = 20_000
    seed: int = 0
    format: Literal["jsonl", "parquet"] = "jsonl"
    defect_rate: float = 0.35
    malformed_rate: float = 0.002  # JSONL only: malformed records for the quarantine path
    workers: int = 2


@dataclass
class ClassifierConfig:
    """Training of one fastText supervised classifier from a labelled corpus or table."""

    input: InputConfig = field(default_factory=InputConfig)
    label_column: str = "true_domain"
    output_model: str = "models/domain.bin"
    holdout_fraction: float = 0.1  # by hash of the id, so the split is stable across runs
    max_eval_docs: int = 50_000  # held-out documents scored (in Spark) for the metrics
    seed: int = 0
    epoch: int = 10
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 64
    min_count: int = 2
    threads: int = 2
    quantize: bool = False  # smaller model (.ftz-style) at a small cost in accuracy


@dataclass
class StatsConfig:
    """The stats job: per-domain and global counts, tokens and quantile sketches of each scorer.

    Sketches are exact quantiles of a sample chosen by a hash of ``doc_key``, so they are the same
    whatever the partitioning (``percentile_approx`` is not: its merge order leaks into the result).
    """

    input_table: str = "annotated"
    output_table: str = "stats"
    n_quantiles: int = 1000  # sketch resolution: n_quantiles + 1 cut points from min to max
    sample_size: int = 200_000  # documents behind the global sketches (σ's reference)
    domain_sample_size: int = 20_000  # documents per domain behind the per-domain sketches
    # Documents whose domain probability (``<domain_column>_prob``) is below this are counted per
    # domain as low-confidence: a source that fits no trained domain shows up in the reports.
    low_confidence_below: float = 0.5


@dataclass
class SelectConfig:
    """The select job: annotated + stats + θ → selected Delta table, shards, manifest, report."""

    input_table: str = "annotated"
    stats_table: str = "stats"
    stats_version: int | None = None  # None: the latest stats
    output_table: str = "selected"
    output_dir: str = "data/selections"  # <output_dir>/<selection_id>/{shards,manifest.json,report}
    params: str = "conf/params/demo.yaml"
    allow_unused_domains: bool = False  # θ may name domains the data does not have (small pools)
    selector: str = "quadmix"  # quadmix | uniform | topk:<scorer> | union_topk (spark/selectors)
    seed: int = 0
    token_budget: int | None = None  # None: the size follows from θ
    mixture: str | None = None  # a mixture source (mixing/sources): each domain gets budget × share
    max_repeats: int = 4  # with a mixture: at most this many copies of a document
    mixture_shortfall: Literal["error", "redistribute"] = "error"  # a domain short of its target
    budget_tolerance: float = 0.002  # relative; calibration stops inside ±tolerance
    rank_mode: Literal["exact", "scalable"] = "scalable"
    rank_sample_size: int = 10_000  # documents per domain for the scalable rank mapping
    shard_target_mb: float = 64.0
    shard_formats: list[Literal["parquet", "jsonl"]] = field(default_factory=lambda: ["parquet", "jsonl"])
    report: bool = True  # PNG figures + report.md/html beside the manifest
    report_sample_size: int = 20_000  # documents behind the report's histograms


@dataclass
class SearchConfig:
    """The fit-search job: proxy-run metrics → LightGBM regressor → θ* (docs/config.md)."""

    runs_path: str = "data/proxy_runs.parquet"
    runs_format: Literal["csv", "parquet", "delta"] = "parquet"
    mode: Literal["quadmix", "regmix"] = "quadmix"
    template_params: str = "conf/params/demo.yaml"  # names the domains and scorers of the layout
    # RegMix mode: the order of the runs' mixture vectors ([] = the prior file's, else the template's)
    domains: list[str] = field(default_factory=list)
    prior: str = "natural"  # RegMix candidates' centre: a mixture source (mixing/sources)
    temperature: float = 0.5  # the prior is raised to this power (RegMix: 0.5)
    max_usage: float = 15.0  # RegMix's MAXIMUM_USAGE: reject candidates with a share > max_usage × prior
    holdout_runs: str | None = None  # a file of run ids (one per line) kept out of the fit, scored after it
    output_mixture: str = "data/search/mixture_star.yaml"  # RegMix mode: r* as a mixture file
    # Algorithm 1's β ranges: {lambda|omega|eta|epsilon: [low, high]}; unset = the paper's scales
    # (λ ≤ 1000, ω ≤ 0.1, η ≤ 1, ε ≤ 0.001). ω's range should cover the budget's share of the pool.
    ranges: dict[str, list[float]] = field(default_factory=dict)
    holdout_fraction: float = 0.0  # runs kept out of the fit by a hash of run_id, scored after it
    # The surrogate: auto (cross-validate every registered family, fit the best), a family, or a
    # list of families to choose among (docs/config.md)
    regressor: str | list[str] = "auto"
    regressor_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # family → its arguments
    cv_folds: int = 5
    cv_repeats: int = 3
    # QuaDMix mode: what the surrogate reads: θ, what θ selects (per domain, estimated from a pool
    # sample), both, or auto (the one with the best cross-validated Spearman)
    features: Literal["auto", "theta", "realised", "both"] = "auto"
    feature_sample: int = 1000  # pool documents per domain behind the realised features
    # Write the searched θ*/r* even when it is not predicted better than the best run by more than
    # the cross-validated error (otherwise the best run's θ/mixture is written, with a warning)
    keep_candidate: bool = False
    # The experiment's proxy runs per round: round 1 from Algorithm 1, each later one where the
    # surrogate fitted so far predicts best; None: experiment.n_runs, in two rounds (3/4, 1/4) from 48 on
    rounds: list[int] | None = None
    # The experiment: search θ's in-domain part at these domain shares (a mixture source); the proxies'
    # datasets compose each θ with it, and the comparison adds that mixture with random documents
    mixture: str | None = None
    min_child_samples: int | None = None  # LightGBM min_data_in_leaf; None: min(20, max(5, fit runs / 10))
    n_candidates: int = 100_000
    top_k: int = 10
    seed: int = 0
    output_params: str = "data/search/theta_star.yaml"
    output_dir: str = "data/search"


@dataclass
class TinyLMConfig:
    """The ``tinylm`` proxy trainer: a small decoder-only transformer (PyTorch, optional extra).

    The defaults follow RegMix's 1M proxy: 2 layers, d=256, 8 heads, SwiGLU 512 (about 1M
    non-embedding parameters); the embedding is tied to the output layer.
    """

    d_model: int = 256
    n_layers: int = 2
    n_heads: int = 8
    d_ff: int = 512
    context: int = 256  # tokens per training sequence
    batch_size: int = 8  # sequences per optimizer step
    lr: float = 3e-3  # AdamW peak learning rate (linear warmup, cosine decay)
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto
    threads: int = 1  # torch CPU threads per run (Spark already runs one task per core)
    eval_tokens: int = 65_536  # at most this many tokens of each evaluation set are scored
    # full: the tokenizer's ids; top:N: the pool's N most frequent ids + UNK (docs/config.md)
    vocab: str = "full"


@dataclass
class TargetSetConfig:
    """A user-provided target set (e.g. instruction data, benchmark training splits)."""

    path: str = ""
    format: Literal["jsonl", "parquet", "delta"] = "jsonl"
    text_column: str = "text"
    max_tokens: int = 200_000  # the first documents (by hash of the text) up to this many tokens


@dataclass
class TargetsConfig:
    """The evaluation sets of every proxy run and how their losses make the target.

    Evaluation sets are the ``target_sets`` (named as given) and, with ``heldout_fraction`` > 0,
    one held-out set per domain (``heldout:<domain>``) carved from the pool by a hash of
    ``doc_key``; held-out documents are removed from the pool the proxies select from.
    """

    target_sets: dict[str, TargetSetConfig] = field(default_factory=dict)
    heldout_fraction: float = 0.05
    heldout_filter: str | None = None  # SQL predicate on the held-out rows, e.g. "quality = 'high'"
    heldout_max_tokens: int = 50_000  # per domain
    weights: dict[str, float] = field(default_factory=dict)  # eval set → weight; {} = the mean


@dataclass
class ProxyConfig:
    """Proxy datasets (many θ, one scan) and proxy runs (Spark tasks) into ``runs_table``."""

    datasets_table: str = "proxy_datasets"
    runs_table: str = "proxy_runs"
    token_budget: int = 300_000  # training tokens of every proxy run
    overshoot: float = 0.05  # datasets aim at budget·(1 + overshoot) tokens, the trainer cuts to budget
    rank_sample_size: int = 10_000  # documents per domain behind each θ's rank mapping
    seed: int = 0
    trainer: str = "ngram"  # a name of the trainer registry (proxy/trainers.py)
    ngram_order: int = 2
    n_checkpoints: int = 4  # losses at T/2^(n-1), …, T/2, T training tokens
    tasks: int | None = None  # Spark tasks for the runs; None: one per run
    tinylm: TinyLMConfig = field(default_factory=TinyLMConfig)


@dataclass
class ExperimentConfig:
    """The experiment: proxies → fit → search → θ* against the baselines at one token budget."""

    n_runs: int = 64
    seed: int = 0
    pool_table: str = "experiment_pool"  # the annotated table minus the held-out documents
    stats_table: str = "experiment_stats"
    selected_table: str = "experiment_selected"  # the evaluation datasets (θ* and baselines)
    output_dir: str = "data/experiment"
    baselines: list[str] = field(default_factory=lambda: ["uniform", "topk", "union_topk"])
    # θ*'s halves apart: its realised mixture with random in-domain documents, and the natural
    # mixture with θ*'s in-domain sampling, each over `seeds` select seeds
    decompose: bool = True
    seeds: int = 3
    mixtures: list[str] = field(default_factory=list)  # θ* composed with each mixture source
    # A mixture-level method whose rows join the comparison (None: none): bimix trains proxies on
    # the entropy mixtures and `mixture_draws` Dirichlet mixtures, fits BiMix on them, adds r*
    mixture_method: Literal["bimix"] | None = None
    mixture_draws: int = 3


@dataclass
class BimixConfig:
    """The bimix job: proxy runs → BiMix law per domain → diagnostics → r* mixture file (docs/config.md)."""

    # None: the proxy_runs table; else runs in BiMix's long format (run_id, domain, r, step_tokens,
    # loss) as Parquet, or CSV when the name ends in .csv
    runs_path: str | None = None
    s_target: float | None = None  # tokens of the run r* is for; None: the largest step in the runs
    budget: int | None = None  # tokens the share caps are computed for; None: proxy.token_budget
    unseen_k: int = 1  # mixtures left out per fold of the unseen-mixture error
    output_dir: str = "data/bimix"  # bimix_fit.png and bimix_summary.json
    output_mixture: str = "data/bimix/mixture_bimix.yaml"


@dataclass
class RefreshConfig:
    """The refresh job: annotate (incremental) → stats → select for one run date (docs/config.md)."""

    runs_table: str = "refresh_runs"  # one row per run event: inputs, Delta versions, counts


@dataclass
class EntropyConfig:
    """The entropy job: per-domain SE/JE/CE/VNE of a hash sample → softmax mixtures (docs/config.md)."""

    input_table: str = "annotated"
    output_table: str = "entropy"
    output_dir: str = "data/entropy"  # mixture_entropy_<measure>.yaml and entropy_summary.json
    measures: list[EntropyMeasure] = field(default_factory=lambda: ["se", "je", "ce", "vne"])
    tokens_per_domain: int = 20_000_000  # sample size behind SE/JE/CE (documents drawn by hash)
    tokenizer: Literal["cl100k_base", "o200k_base"] = "cl100k_base"
    vne_docs: int = 1000  # documents per domain behind VNE (at most)
    vne_model: str | None = None  # fastText model of the sentence vectors; None: the domain annotator's
    seed: int = 0


@dataclass
class StreamsConfig:
    """The streams job: per-domain token streams for online reweighting (docs/config.md#reweight)."""

    input_table: str = "annotated"  # the annotated table, or a selected table with selection_id
    selection_id: str | None = None  # with a selected table: the selection to read
    output_table: str = "domain_streams"
    tokens_per_domain: int = 200_000  # tokens sampled from every domain (fewer if it has fewer)
    # Data-restricted runs: domain → at most this many unique tokens (the domain then repeats)
    max_tokens: dict[str, int] = field(default_factory=dict)
    domains: list[str] = field(default_factory=list)  # [] = every domain of the input
    chunk_tokens: int = 65_536  # tokens per row of the streams table
    seed: int = 0  # the hash order of the documents inside a domain


@dataclass
class ReweightConfig:
    """The reweight job: domain streams → TANDEM / DoReMi / Uniform runs → mixture files."""

    streams: StreamsConfig = field(default_factory=StreamsConfig)
    runs_table: str = "reweight_runs"
    methods: list[str] = field(default_factory=lambda: list(BUILT_IN))  # names in mixing/reweighters.py
    seeds: list[int] = field(default_factory=lambda: [0])
    # method → hyperparameter sets (keyword arguments of the method's class); one run per set × seed
    params: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    retry_failed: bool = False  # train runs recorded as failed again (never done silently)
    tasks: int | None = None  # Spark tasks for the runs; None: one per run
    output_dir: str = "data/reweight"
    # Fresh proxies (proxy.tinylm) trained on each method's mixture drawn from the streams
    # (restricted domains repeat) and scored on the validation streams; 0 = no evaluation
    eval_tokens: int = 0
    eval_seeds: list[int] = field(default_factory=list)  # fresh proxies' seeds; [] = reweight.seeds


@dataclass
class PipelineConfig:
    """The whole pipeline; each job reads its own section."""

    warehouse: str = "warehouse"  # Delta tables live at <warehouse>/<table name>
    spark: SparkConfig = field(default_factory=SparkConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    classifiers: dict[str, ClassifierConfig] = field(default_factory=dict)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    # Columns of the annotated table that are the scorers of θ, with their direction.
    domain_column: str = "domain"
    token_column: str = "n_tokens"
    scorers: dict[str, Direction] = field(default_factory=dict)
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

    def table_path(self, name: str) -> str:
        """A table name under the warehouse, or a path/URI given as is (see :func:`resolve`)."""
        if "/" in name or ":" in name:
            return resolve(name)
        return resolve(str(Path(self.warehouse) / name))


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
    _check_semantics(config)
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


def _check_semantics(config: PipelineConfig) -> None:
    """Rules that types alone cannot express."""
    _check_annotators(config)
    if config.spark.local_max_failures < 1:
        raise ConfigError("spark.local_max_failures must be at least 1")
    if config.spark.arrow_batch_size <= 0:
        raise ConfigError("spark.arrow_batch_size must be positive")
    if config.spark.max_records_per_file < 0:
        raise ConfigError("spark.max_records_per_file must be 0 (unbounded) or positive")
    if not 0 < config.select.budget_tolerance < 0.05:
        raise ConfigError("select.budget_tolerance must be in (0, 0.05)")
    if config.select.token_budget is not None and config.select.token_budget <= 0:
        raise ConfigError("select.token_budget must be positive")
    if config.select.max_repeats < 1:
        raise ConfigError("select.max_repeats must be at least 1")
    # select.selector and the mixture sources are checked by their registries, which live beside
    # what they describe (spark/selectors, mixing/sources): pipeline.select.check_config.
    if config.select.mixture is not None and config.select.token_budget is None:
        raise ConfigError("select.token_budget is required with select.mixture")
    if config.annotate.max_text_bytes <= 0:
        raise ConfigError("annotate.max_text_bytes must be positive")
    if config.annotate.input.format == "jsonl" and config.annotate.max_text_bytes > MAX_JSON_LINE_BYTES:
        raise ConfigError(
            f"annotate.max_text_bytes must be at most {MAX_JSON_LINE_BYTES} (16 MiB) for JSON lines: "
            "Spark parses a line into a variant of at most 16 MiB"
        )
    if not 0 <= config.stats.low_confidence_below <= 1:
        raise ConfigError(
            f"stats.low_confidence_below must be in [0, 1], got {config.stats.low_confidence_below}"
        )
    confidence = config.annotate.min_domain_confidence
    if not 0 <= confidence < 1:
        raise ConfigError(f"annotate.min_domain_confidence must be in [0, 1), got {confidence}")
    if confidence and not _domain_annotators(config):
        raise ConfigError(f"annotate.min_domain_confidence needs a domain annotator ({_domain_kinds()})")
    share = config.annotate.max_quarantine_fraction
    if not 0 <= share <= 1:
        raise ConfigError(f"annotate.max_quarantine_fraction must be in [0, 1], got {share}")
    _check_search(config.search)
    try:
        TRAINERS.check(config.proxy.trainer, "proxy.trainer")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    vocab = config.proxy.tinylm.vocab
    if vocab != "full" and not re.fullmatch(r"top:[1-9][0-9]*", vocab):
        raise ConfigError(
            f"proxy.tinylm.vocab must be 'full' or 'top:N' with N >= 1 (e.g. top:8192), got {vocab!r}"
        )
    _check_bimix(config.bimix)
    _check_entropy(config)
    _check_mixture_method(config)
    _check_reweight(config.reweight)


def _check_search(cfg: SearchConfig) -> None:
    if cfg.cv_folds < 2:
        raise ConfigError(f"search.cv_folds must be at least 2, got {cfg.cv_folds}")
    if cfg.cv_repeats < 1:
        raise ConfigError(f"search.cv_repeats must be at least 1, got {cfg.cv_repeats}")
    if not 0 <= cfg.holdout_fraction < 0.5:
        raise ConfigError(f"search.holdout_fraction must be in [0, 0.5), got {cfg.holdout_fraction}")
    if cfg.feature_sample < 10:
        raise ConfigError(
            f"search.feature_sample must be at least 10 documents per domain, got {cfg.feature_sample}"
        )
    if cfg.rounds is not None and (not cfg.rounds or min(cfg.rounds) < 1):
        raise ConfigError(f"search.rounds must list at least one round of at least 1 run, got {cfg.rounds}")
    if isinstance(cfg.regressor, list) and not cfg.regressor:
        raise ConfigError("search.regressor: an empty list names no family (auto: all of them)")


def _check_annotators(config: PipelineConfig) -> None:
    """Names given and unique, at most one domain annotator, and no ``direction`` that
    contradicts ``scorers`` (the keys of each kind were checked against the registry on reading)."""
    seen: set[str] = set()
    for i, ann in enumerate(config.annotate.annotators):
        key = f"annotate.annotators[{i}]"
        ann.name = ann.name or ann.kind
        if ann.name in seen:
            raise ConfigError(f"{key}.name {ann.name!r} is used twice")
        seen.add(ann.name)
        scorer = config.scorers.get(ann.column)
        if ann.direction is not None and scorer is not None and scorer != ann.direction:
            raise ConfigError(
                f"{key}.direction: {ann.direction}, but scorers.{ann.column} is {scorer} (scorers gives "
                "a column its direction; the annotator's direction can be left out)"
            )
    if len(_domain_annotators(config)) > 1:
        raise ConfigError(f"annotate.annotators: at most one domain annotator ({_domain_kinds()})")


def _domain_annotators(config: PipelineConfig) -> list[AnnotatorConfig]:
    return [
        a
        for a in config.annotate.annotators
        if issubclass(registry.annotator_class(a.kind), registry.DomainAnnotator)
    ]


def _domain_kinds() -> str:
    domain = registry.DomainAnnotator
    return " | ".join(k for k in registry.kinds() if issubclass(registry.annotator_class(k), domain))


def _check_bimix(cfg: BimixConfig) -> None:
    if cfg.s_target is not None and not (math.isfinite(cfg.s_target) and cfg.s_target > 0):
        raise ConfigError(f"bimix.s_target must be a number of tokens > 0, got {cfg.s_target}")
    if cfg.budget is not None and cfg.budget <= 0:
        raise ConfigError(f"bimix.budget must be positive, got {cfg.budget}")
    if cfg.unseen_k < 1:
        raise ConfigError(f"bimix.unseen_k must be at least 1, got {cfg.unseen_k}")
    if Path(cfg.output_mixture).suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"bimix.output_mixture must end in .yaml, .yml or .json: {cfg.output_mixture}")


def _check_entropy(config: PipelineConfig) -> None:
    cfg = config.entropy
    if not cfg.measures:
        raise ConfigError("entropy.measures: at least one of se, je, ce, vne")
    if len(set(cfg.measures)) != len(cfg.measures):
        raise ConfigError(f"entropy.measures: a measure is named twice: {cfg.measures}")
    if cfg.tokens_per_domain <= 0:
        raise ConfigError(f"entropy.tokens_per_domain must be positive, got {cfg.tokens_per_domain}")
    if cfg.vne_docs < 2:
        raise ConfigError(f"entropy.vne_docs must be at least 2, got {cfg.vne_docs}")


def vne_model(config: PipelineConfig) -> str | None:
    """``entropy.vne_model``, else the ``model`` of the domain annotator (``fasttext_domain``), else None."""
    if config.entropy.vne_model:
        return config.entropy.vne_model
    return next((a.options.get("model") for a in _domain_annotators(config)), None)


def _check_mixture_method(config: PipelineConfig) -> None:
    exp = config.experiment
    if exp.mixture_method is None:
        return
    if exp.mixture_draws < 0:
        raise ConfigError(f"experiment.mixture_draws must be >= 0, got {exp.mixture_draws}")
    if exp.mixture_method == "bimix" and config.proxy.n_checkpoints < 3:
        raise ConfigError(
            "proxy.n_checkpoints must be at least 3 with experiment.mixture_method=bimix (BiMix's β and C "
            f"need 3 distinct steps), got {config.proxy.n_checkpoints}"
        )


def _check_reweight(cfg: ReweightConfig) -> None:
    st = cfg.streams
    if st.tokens_per_domain < 1:
        raise ConfigError(f"reweight.streams.tokens_per_domain must be positive, got {st.tokens_per_domain}")
    for domain, cap in st.max_tokens.items():
        if cap < 1:
            raise ConfigError(f"reweight.streams.max_tokens.{domain} must be positive, got {cap}")
    if st.chunk_tokens < 1:
        raise ConfigError(f"reweight.streams.chunk_tokens must be positive, got {st.chunk_tokens}")
    unknown = [m for m in cfg.methods if m not in REWEIGHTERS]
    if unknown or not cfg.methods:
        raise ConfigError(f"reweight.methods: {unknown or '[]'} not among {', '.join(REWEIGHTERS)}")
    extra = sorted(set(cfg.params) - set(REWEIGHTERS))
    if extra:
        raise ConfigError(f"reweight.params.{extra[0]}: not a method ({', '.join(REWEIGHTERS)})")
    for method, sets in cfg.params.items():
        if not sets:
            raise ConfigError(f"reweight.params.{method}: an empty list runs nothing (leave the key out)")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"reweight.seeds must be a non-empty list of distinct seeds, got {cfg.seeds}")
    if cfg.tasks is not None and cfg.tasks < 1:
        raise ConfigError(f"reweight.tasks must be positive, got {cfg.tasks}")
    if len(set(cfg.eval_seeds)) != len(cfg.eval_seeds):
        raise ConfigError(f"reweight.eval_seeds must be distinct, got {cfg.eval_seeds}")
    if cfg.eval_tokens < 0:
        raise ConfigError(f"reweight.eval_tokens must be >= 0, got {cfg.eval_tokens}")


def to_dict(config: Any) -> dict:
    """Plain-data form of a config (for hashing and for commit metadata)."""
    return dataclasses.asdict(config)
