"""Config loading: errors name the key, overrides apply, every key is documented."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from quadmix_spark.cli import main
from quadmix_spark.config import (
    AnnotatorConfig,
    ClassifierConfig,
    ConfigError,
    InputConfig,
    PipelineConfig,
    TargetSetConfig,
    load_config,
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


def _keys(cls: type, prefix: str) -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        # Input sections are documented once, under annotate.input.
        nested = dataclasses.is_dataclass(tp) and (tp is not InputConfig or prefix == "annotate.")
        if nested:
            keys += _keys(tp, f"{key}.")
        else:
            keys.append(key)
    return keys


def test_every_key_is_documented():
    doc = (ROOT / "docs/config.md").read_text()
    keys = _keys(PipelineConfig, "")
    keys += _keys(ClassifierConfig, "classifiers.<name>.")
    keys += _keys(TargetSetConfig, "targets.target_sets.<name>.")
    keys += [f.name for f in dataclasses.fields(AnnotatorConfig) if f.name != "options"]
    missing = [k for k in keys if f"`{k}`" not in doc and k not in ("classifiers", "annotate.annotators")]
    # Every key of every built-in annotator kind, as a row of the kinds' table.
    builtin = [k for k in annotators.kinds() if annotators.annotator_class(k).__module__ == "udfs.annotators"]
    missing += [
        f"{kind}.{key}"
        for kind in builtin
        for key in annotators.config_keys(kind)
        if f"| `{kind}` | `{key}` |" not in doc
    ]
    assert missing == []
    assert builtin == ["fasttext_domain", "fasttext_quality", "language_id", "heuristics", "tokens"]
