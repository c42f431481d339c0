"""`quadmix init`: a project folder for one's own corpus, and commands that run from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quadmix_spark.cli import default_config, main
from quadmix_spark.config import load_config
from quadmix_spark.demo.corpus import write_corpus

ROOT = Path(__file__).resolve().parents[1]


def test_init_writes_a_starter_config_that_validates(tmp_path, monkeypatch, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "part-0.parquet").write_bytes(b"")  # only its name is looked at
    monkeypatch.chdir(tmp_path)
    assert main(["init", "proj", "--corpus", "raw"]) == 0
    project = tmp_path / "proj"
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "models", "quadmix.yaml"]
    assert list((project / "models").iterdir()) == []
    assert "quadmix train-classifier" in (project / "README.md").read_text()

    monkeypatch.chdir(project)  # the commands' default config is ./quadmix.yaml
    assert default_config() == "quadmix.yaml"
    config = load_config(default_config())  # what the CLI loads
    assert config.annotate.input.path == "../raw" and config.annotate.input.format == "parquet"
    assert config.classifiers["domain"].input.path == "../raw"
    assert config.classifiers["domain"].label_column == "domain"
    assert config.select.params == "params.yaml"
    assert config.table_path(config.annotate.output_table) == str(project / "warehouse" / "annotated")


def test_init_keeps_an_existing_config_unless_forced(tmp_path, capsys):
    assert main(["init", str(tmp_path), "--corpus", "s3a://bucket/raw", "--format", "jsonl"]) == 0
    (tmp_path / "quadmix.yaml").write_text("# mine\n")
    assert main(["init", str(tmp_path)]) == 2
    assert "quadmix init --force" in capsys.readouterr().err
    assert (tmp_path / "quadmix.yaml").read_text() == "# mine\n"
    assert main(["init", str(tmp_path), "--force", "--corpus", "s3a://bucket/raw"]) == 0
    assert load_config(tmp_path / "quadmix.yaml").annotate.input.path == "s3a://bucket/raw"


def test_a_path_with_spaces_stays_one_yaml_string(tmp_path):
    corpus = tmp_path / "my corpus: v2 #1"
    corpus.mkdir()
    assert main(["init", str(tmp_path / "proj"), "--corpus", str(corpus)]) == 0
    config = load_config(tmp_path / "proj" / "quadmix.yaml")
    assert config.annotate.input.path == "../my corpus: v2 #1"


def test_a_command_outside_a_project_says_to_run_init(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["stats"]) == 2
    err = capsys.readouterr().err
    assert "run `quadmix init`" in err and "conf/demo.yaml" not in err


def test_in_the_checkout_the_demo_config_is_still_the_default(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert default_config() == "conf/demo.yaml"


def test_a_project_from_init_runs_from_its_folder(spark, tmp_path, monkeypatch, capsys):
    """init → train-classifier → annotate → stats → params-template → select, all from the
    project folder with ./quadmix.yaml: no file of the checkout is named."""
    write_corpus(tmp_path / "corpus", n_docs=400, seed=3, fmt="jsonl", malformed_rate=0.0, workers=1)
    monkeypatch.chdir(tmp_path)
    assert main(["init", "proj", "--corpus", "corpus", "--label", "true_domain"]) == 0
    monkeypatch.chdir(tmp_path / "proj")
    # One training thread: fastText's multi-threaded SGD is not repeatable run to run.
    steps = [["train-classifier", "--set", "classifiers.domain.threads=1"], ["annotate"], ["stats"]]
    steps += [["params-template"], ["select", "--set", "select.allow_unused_domains=true"]]
    out = ""
    for step in steps:
        code = main(step)
        captured = capsys.readouterr()
        assert code == 0, (step, captured.err[-3000:])
        out += captured.out
    assert "400 input rows = 400 annotated" in out
    assert (tmp_path / "proj" / "models" / "domain.bin").is_file()
    assert (tmp_path / "proj" / "params.yaml").is_file()
    (selection,) = (tmp_path / "proj" / "selections").iterdir()
    manifest = json.loads((selection / "manifest.json").read_text())
    assert manifest["selected_docs"] > 0 and manifest["tokens_achieved"] > 0
    annotated = spark.read.format("delta").load(str(tmp_path / "proj" / "warehouse" / "annotated"))
    assert annotated.count() == 400


@pytest.mark.parametrize("fmt", ["csv"])
def test_an_unknown_format_is_refused(tmp_path, fmt, capsys):
    with pytest.raises(SystemExit):
        main(["init", str(tmp_path), "--format", fmt])
    assert not (tmp_path / "quadmix.yaml").exists()
