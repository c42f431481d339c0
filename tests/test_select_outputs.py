"""Where a selection's files go: URIs and paths with spaces through spark.files; the manifest last."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fasttext
import pytest
from pyspark.sql import functions as F
from test_select import make_config, synthetic_pool, write_pool

from quadmix_spark import core
from quadmix_spark.config import ClassifierConfig, InputConfig
from quadmix_spark.demo.corpus import write_corpus
from quadmix_spark.pipeline import select as select_job
from quadmix_spark.pipeline.classifier import train_classifier
from quadmix_spark.pipeline.params_template import write_params_template
from quadmix_spark.pipeline.select import run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.spark import files

OUTPUT_FILES = ("manifest.json", "report/report.md", "report/report.html", "report/tokens_by_domain.png")


@pytest.fixture(scope="module")
def small_pool(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("small pool")  # a space in every path below it
    config = make_config(root)
    write_pool(spark, config.table_path("annotated"), synthetic_pool(n=600, seed=3), partitions=2)
    run_stats(spark, config)
    return root


def outputs_config(root: Path, output_dir: str):
    return make_config(
        root, output_dir=output_dir, shard_formats=["parquet", "jsonl"], report=True, shard_target_mb=0.01
    )


def selected_copies(spark, config, selection_id: str) -> dict[str, int]:
    table = spark.read.format("delta").load(config.table_path("selected"))
    rows = table.where(F.col("selection_id") == selection_id).select("id", "copies").collect()
    return {r["id"]: r["copies"] for r in rows}


def test_files_round_trip_on_paths_and_uris(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for uri in ("rel dir/a.json", str(tmp_path / "abs dir" / "a.json"), f"file://{tmp_path}/uri dir/a.json"):
        assert not files.exists(uri)
        files.write_text(uri, "first")
        files.write_text(uri, "second ü")
        assert files.read_text(uri) == "second ü" and files.is_file(uri)
        with files.open(uri + ".bin", "wb") as fh:
            fh.write(b"\x00\xff")
        assert files.read_bytes(uri + ".bin") == b"\x00\xff"
        assert [Path(p.removeprefix("file:")).name for p in files.glob(uri.rsplit("/", 1)[0] + "/a.*")] == [
            "a.json",
            "a.json.bin",
        ]
        assert files.delete(uri) and not files.exists(uri) and not files.delete(uri)
    # Relative paths stay relative to the working directory; the URI wrote plain files, no .crc.
    assert (tmp_path / "rel dir" / "a.json.bin").is_file()
    assert sorted(os.listdir(tmp_path / "uri dir")) == ["a.json.bin"]
    assert files.join("file:///x/y/", "z", "m.json") == "file:///x/y/z/m.json"
    assert files.join("out dir", "z") == os.path.join("out dir", "z")
    assert files.qualify("s3a://bucket/x") == "s3a://bucket/x" and files.qualify("x") == str(tmp_path / "x")


def test_a_selection_writes_to_a_file_uri_and_a_path_with_spaces(spark, small_pool, tmp_path):
    results = {}
    for name, output_dir in {
        "uri": f"file://{tmp_path}/uri out",
        "spaces": str(tmp_path / "path with spaces" / "selections"),
    }.items():
        config = outputs_config(small_pool, output_dir)
        summary = run_select(spark, config)
        assert summary.out_dir == files.join(output_dir, summary.selection_id)
        local = Path(str(tmp_path)) / ("uri out" if name == "uri" else "path with spaces/selections")
        folder = local / summary.selection_id
        for rel in OUTPUT_FILES:
            assert (folder / rel).stat().st_size > 300, rel
        manifest = json.loads(files.read_text(files.join(summary.out_dir, "manifest.json")))
        assert manifest == json.loads((folder / "manifest.json").read_text())
        for fmt, path in manifest["shards"]["paths"].items():
            assert path == files.join(files.qualify(output_dir), summary.selection_id, "shards", fmt)
            rows = (spark.read.parquet(path) if fmt == "parquet" else spark.read.json(path)).collect()
            assert len(rows) == summary.selected_copies > 0
            copies: dict[str, int] = {}
            for r in rows:
                copies[r["id"]] = copies.get(r["id"], 0) + 1
            assert copies == selected_copies(spark, config, summary.selection_id)
        assert not [p for p in folder.rglob("*") if p.name.endswith(".crc") and "shards" not in p.parts]
        results[name] = (summary.selection_id, manifest["selected_copies"])
    assert results["uri"] == results["spaces"]


def test_the_manifest_is_written_last_and_names_the_table_version(spark, small_pool, tmp_path, monkeypatch):
    config = outputs_config(small_pool, str(tmp_path / "sel"))
    first = run_select(spark, config)
    manifest_path = Path(first.out_dir) / "manifest.json"
    assert manifest_path.is_file()

    # A rerun killed while it writes shards: the old manifest must not outlive the shards it named.
    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during shard writing")

    monkeypatch.setattr(select_job, "write_shards", killed)
    with pytest.raises(KeyboardInterrupt):
        run_select(spark, config)
    assert not manifest_path.exists()
    monkeypatch.undo()

    second = run_select(spark, config)
    manifest = json.loads(manifest_path.read_text())
    history = spark.sql(f"DESCRIBE HISTORY delta.`{config.table_path('selected')}`").first()
    assert manifest["selected_version"] == history["version"]
    assert manifest["selected_copies"] == second.selected_copies == first.selected_copies
    written = [p for p in Path(second.out_dir).rglob("*") if p.is_file() and p != manifest_path]
    assert written and max(p.stat().st_mtime_ns for p in written) <= manifest_path.stat().st_mtime_ns


def test_params_template_and_a_classifier_write_to_a_file_uri(spark, small_pool, tmp_path):
    theta_uri = f"file://{tmp_path}/templates dir/theta.yaml"
    params = write_params_template(spark, outputs_config(small_pool, str(tmp_path)), theta_uri)
    assert core.load_params(tmp_path / "templates dir" / "theta.yaml") == params

    corpus = tmp_path / "corpus"
    write_corpus(corpus, n_docs=200, seed=1)
    model_uri = f"file://{tmp_path}/models dir/domain.bin"
    cfg = ClassifierConfig(
        input=InputConfig(path=str(corpus), skip_hidden_files=True), output_model=model_uri, epoch=2, dim=8
    )
    report = train_classifier(spark, cfg, "domain")
    models = tmp_path / "models dir"
    # The model and its metadata; the training file Spark staged beside them is gone.
    assert sorted(p.name for p in models.iterdir()) == ["domain.bin", "domain.bin.json"]
    meta = json.loads(files.read_text(model_uri + ".json"))
    assert meta["train_docs"] == report.train_docs > 150 and meta["model_path"] == model_uri
    assert len(fasttext.load_model(str(models / "domain.bin")).get_labels()) == len(report.labels) > 5
