"""Config loading: errors name the key, overrides apply, the doc's key tables come from the declarations."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import typing
from pathlib import Path

import pytest

from quadmix_spark.cli import main
from quadmix_spark.config import (
    DOC,
    AnnotatorConfig,
    Check,
    ClassifierConfig,
    ConfigError,
    InputConfig,
    PipelineConfig,
    SelectConfig,
    TargetSetConfig,
    declared_keys,
    load_config,
    validate,
)
from udfs import annotators

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_demo_config_loads_with_overrides():
    config = load_config(ROOT / "conf/demo.yaml", ["select.seed=7", "spark.conf={spark.a: '1'}"])
    assert config.select.seed == 7
    assert config.spark.conf == {"spark.a": "1"}
    assert [a.kind for a in config.annotate.annotators] == [
        "fasttext_domain",
        "fasttext_quality",
        "language_id",
        "heuristics",
        "tokens",
    ]
    assert config.scorers["dup_5gram_char_frac"] == "lower_is_better"


def test_annotators_are_built_from_the_registry_with_their_defaults(tmp_path):
    from udfs.models import default_langid_model

    config = load_config(ROOT / "conf/demo.yaml")
    built = {a.name: a.annotator() for a in config.annotate.annotators}
    assert {name: type(a).__name__ for name, a in built.items()} == {
        "domain": "FastTextDomain",
        "fasttext_quality": "FastTextQuality",
        "language": "LanguageId",
        "heuristics": "Heuristics",
        "tokens": "Tokens",
    }
    assert config.annotate.annotators[1].options == {"model": "models/quality.bin", "label": "high"}
    assert config.annotate.annotators[1].direction == "higher_is_better"  # old key, agrees with scorers
    assert built["fasttext_quality"].label == "high"
    assert built["heuristics"].signals is None and built["tokens"].tokenizer == "cl100k_base"
    assert built["language"].files() == {"model": default_langid_model()}
    assert built["domain"].min_confidence is None  # a job setting, not one of the annotator's keys
    with pytest.raises(ConfigError, match=r"unknown config key annotate.annotators\[0\].min_confidence"):
        load_config(
            write(
                tmp_path, "annotate: {annotators: [{kind: fasttext_domain, column: d, min_confidence: 0.5}]}"
            )
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sparkk: {}", "unknown config key sparkk"),
        ("select: {seedd: 1}", "unknown config key select.seedd"),
        ("select: {seed: one}", "select.seed: expected int, got str"),
        ("select: {rank_mode: fast}", "select.rank_mode: 'fast' is not one of"),
        ("scorers: {q: best}", "scorers.q: 'best' is not one of"),
        ("annotate: {annotators: [{kind: tokens}]}", r"annotate.annotators\[0\].column is required"),
        (
            "annotate: {annotators: [{column: x}]}",
            r"missing required config key annotate.annotators\[0\].kind",
        ),  # noqa: E501
        ("annotate: {annotators: [{kind: fasttext_quality, column: q, model: m.bin}]}", "label is required"),
        (
            "annotate: {annotators: [{kind: fasttext_domain, column: d}]}",
            r"annotate.annotators\[0\].model is required for kind fasttext_domain",
        ),
        (
            "annotate: {annotators: [{kind: tokens, column: n}, {kind: heuristics, model: m.bin}]}",
            r"unknown config key annotate.annotators\[1\].model \(allowed for kind heuristics: column, "
            r"direction, kind, name, signals\)",
        ),
        (
            "annotate: {annotators: [{kind: tokens, column: n}, {kind: heuristics, signals: word_count}]}",
            r"annotate.annotators\[1\].signals: expected a list, got str",
        ),
        (
            "annotate: {annotators: [{kind: heuristics}, {kind: tokens, column: n, tokenizer: [a, b]}]}",
            r"annotate.annotators\[1\].tokenizer: expected str, got list",
        ),
        (
            "annotate: {annotators: [{kind: heuristics}, {kind: heuristics, name: h2}, {kind: perplexity}]}",
            r"annotate.annotators\[2\].kind: 'perplexity' is not one of the annotator kinds: "
            "fasttext_domain, fasttext_quality, language_id, heuristics, tokens",
        ),
        ("annotate: {annotators: [3]}", r"annotate.annotators\[0\]: expected a mapping, got int"),
        (
            "annotate: {annotators: [{kind: fasttext_domain, column: d, model: a.bin}, "
            "{kind: fasttext_domain, name: d2, column: e, model: b.bin}]}",
            r"annotate.annotators: at most one domain annotator \(fasttext_domain\)",
        ),
        (
            "annotate: {annotators: [{kind: heuristics}, {kind: heuristics}]}",
            r"annotate.annotators\[1\].name 'heuristics' is used twice",
        ),
        (
            "annotate: {min_domain_confidence: 0.5, annotators: [{kind: heuristics}]}",
            r"annotate.min_domain_confidence needs a domain annotator \(fasttext_domain\)",
        ),
        (
            "{scorers: {q: lower_is_better}, annotate: {annotators: [{kind: fasttext_quality, column: q, "
            "model: m.bin, label: high, direction: higher_is_better}]}}",
            r"annotate.annotators\[0\].direction: higher_is_better, but scorers.q is lower_is_better",
        ),
        ("select: {token_budget: -5}", "select.token_budget must be positive"),
        ("select: {mixture: natural}", "select.token_budget is required with select.mixture"),
        ("annotate: {max_quarantine_fraction: 1.5}", r"annotate.max_quarantine_fraction must be in \[0, 1\]"),
        ("annotate: {max_quarantine_fraction: -1}", r"annotate.max_quarantine_fraction must be in \[0, 1\]"),
        ("annotate: {max_text_bytes: 20000000}", r"annotate.max_text_bytes must be at most 16777216"),
        ("annotate: {min_domain_confidence: 1.5}", r"annotate.min_domain_confidence must be in \[0, 1\)"),
        ("- a list", "the top level must be a mapping"),
    ],
)
def test_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(write(tmp_path, "{}"), ["select.seed"])
    with pytest.raises(ConfigError, match=r"override select.seed: '\[1' is not a YAML value"):
        load_config(write(tmp_path, "{}"), ["select.seed=[1"])


def test_exponent_floats_read_as_numbers_in_files_and_overrides(tmp_path):
    # Plain YAML 1.1 (yaml.safe_load) reads 1e-3 as the string "1e-3"; params files never did.
    config = load_config(ROOT / "conf/demo.yaml", ["select.budget_tolerance=1e-3"])
    assert config.select.budget_tolerance == 0.001
    config = load_config(write(tmp_path, "select: {budget_tolerance: 2e-3}"))
    assert config.select.budget_tolerance == 0.002


def test_cli_reports_config_errors_without_starting_spark(tmp_path, capsys):
    code = main(["select", "--config", str(write(tmp_path, "select: {seedd: 1}"))])
    assert code == 2
    assert "configuration error: unknown config key select.seedd" in capsys.readouterr().err


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_tables_are_generated_from_the_declarations():
    config_docs = _load_script("config_docs")
    committed = (ROOT / "docs/config.md").read_text()
    generated = config_docs.render(committed)
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "docs/config.md (committed)",
            "docs/config.md (from the declarations)",
            n=0,
        )
    )
    assert not diff, f"docs/config.md's key tables are stale: run {config_docs.COMMAND}\n{diff[:3000]}"
    tables = config_docs.tables()
    rows = {row[0] for rows in tables.values() for row in rows}
    assert {"`select.seed`", "`annotate.input.id_column`", "`reweight.streams.max_tokens`"} <= rows
    assert "`classifiers.<name>.holdout_fraction`" in rows and "`targets.target_sets.<name>.path`" in rows
    assert "| `spark.local_max_failures` | int, ≥ 1 | `4` |" in committed
    assert "| `entropy.measures` | list[`se` \\| `je` \\| `ce` \\| `vne`], non-empty, distinct |" in committed
    kinds = [(row[0], row[1]) for row in tables["annotate.annotators.kinds"]]
    assert kinds == [
        ("`fasttext_domain`", "`model`"),
        ("`fasttext_quality`", "`model`"),
        ("`fasttext_quality`", "`label`"),
        ("`language_id`", "`model`"),
        ("`heuristics`", "`signals`"),
        ("`tokens`", "`tokenizer`"),
    ]
    # the check fails on a stale table and names the command that fixes it
    stale = committed.replace("| `select.seed` | int | `0` |", "| `select.seed` | int | `1` |")
    assert stale != committed and config_docs.render(stale) == committed
    with pytest.raises(ValueError, match=r"tables without markers \['select'\]"):
        config_docs.render(committed.replace("<!-- keys:select -->", ""))


def _sections(cls: type) -> list[type]:
    """``cls`` and every section class below it."""
    found = [cls]
    for tp in typing.get_type_hints(cls).values():
        inner = [tp, *typing.get_args(tp)]
        found += [s for t in inner if dataclasses.is_dataclass(t) for s in _sections(t)]
    return list(dict.fromkeys(found))


def test_every_key_declares_its_meaning():
    classes = _sections(PipelineConfig)
    assert {AnnotatorConfig, ClassifierConfig, InputConfig, TargetSetConfig} <= set(classes)
    undeclared, bad_docs = [], []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            is_section = dataclasses.is_dataclass(tp) or (
                typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1])
            )
            if DOC not in f.metadata and not is_section and (cls, f.name) != (AnnotatorConfig, "options"):
                undeclared.append(f"{cls.__name__}.{f.name}")
            doc = f.metadata.get(DOC)
            if doc is not None and not (0 < len(doc) <= 400 and "\n" not in doc):  # one line, in a table
                bad_docs.append(f"{cls.__name__}.{f.name}")
    builtin = [k for k in annotators.kinds() if annotators.annotator_class(k).__module__ == "udfs.annotators"]
    bad_docs += [f"{k}.{n}" for k in builtin for n, key in annotators.config_keys(k).items() if not key.doc]
    assert undeclared == [] and bad_docs == []
    # the keys every annotator has are its declared fields
    assert list(declared_keys(AnnotatorConfig)) == ["kind", "name", "column", "direction"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spark: {local_max_failures: 0}", r"spark.local_max_failures must be at least 1, got 0"),
        ("spark: {max_records_per_file: -1}", r"spark.max_records_per_file must be >= 0, got -1"),
        ("classifiers: {d: {holdout_fraction: 1}}", r"classifiers.d.holdout_fraction must be in \(0, 1\)"),
        ("select: {budget_tolerance: 0.05}", r"select.budget_tolerance must be in \(0, 0.05\), got 0.05"),
        ("bimix: {s_target: .inf}", r"bimix.s_target must be a number of tokens > 0, got inf"),
        ("bimix: {output_mixture: r.txt}", r"bimix.output_mixture must end in .yaml, .yml or .json"),
        (
            "entropy: {measures: [se, ce, se]}",
            r"entropy.measures: a value is given twice: \['se', 'ce', 'se'\]",
        ),
        ("entropy: {measures: []}", r"entropy.measures: at least one value is required"),
        ("entropy: {temperature: -1}", r"entropy.temperature must be positive, got -1.0"),
        ("entropy: {estimator: mle}", r"entropy.estimator: 'mle' is not one of 'plugin', 'miller_madow'"),
        (
            "reweight: {streams: {max_tokens: {a: 5, b: 0}}}",
            r"reweight.streams.max_tokens.b must be positive",
        ),
        ("reweight: {seeds: []}", r"reweight.seeds: at least one value is required"),
        ("experiment: {n_runs: 10}", r"experiment.n_runs must be at least 24, got 10"),
        ("experiment: {seeds: 0}", r"experiment.seeds must be at least 1 with experiment.decompose"),
        ("proxy: {tinylm: {vocab: 'top:0'}}", r"proxy.tinylm.vocab must be 'full' or 'top:N'"),
        ("{experiment: {mixture_method: bimix}, proxy: {n_checkpoints: 2}}", r"proxy.n_checkpoints must be"),
    ],
)
def test_declared_constraints_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_constraint_binds_only_where_declared(tmp_path):
    config = load_config(
        write(tmp_path, "experiment: {seeds: 0, decompose: false}\nbimix: {output_mixture: R.YML}")
    )
    assert config.experiment.seeds == 0 and config.bimix.output_mixture == "R.YML"
    assert load_config(write(tmp_path, "select: {token_budget: null}")).select.token_budget is None
    # one section alone, as a job given a config built in code checks it
    select = SelectConfig(mixture="natural")
    with pytest.raises(ConfigError, match="select.token_budget is required with select.mixture"):
        validate(select, "select")
    validate(SelectConfig(mixture="natural", token_budget=10), "select")


def test_check_words_and_docs():
    assert (Check(ge=1).doc(), Check(gt=0).doc(), Check(ge=0, lt=1).doc()) == ("≥ 1", "> 0", "in [0, 1)")
    assert Check(nonempty=True, distinct=True).doc() == "non-empty, distinct"
    with pytest.raises(ConfigError, match=r"^k must be in \[0, 1\], got 1.5$"):
        Check(ge=0, le=1).validate(1.5, "k")
    with pytest.raises(ConfigError, match=r"^k\[1\] must be at most 3, got 4$"):
        Check(le=3).validate([1, 4], "k")
    with pytest.raises(ConfigError, match=r"^k must be positive, got nan$"):
        Check(gt=0).validate(float("nan"), "k")
    Check(gt=0).validate(None, "k")  # null: not checked
