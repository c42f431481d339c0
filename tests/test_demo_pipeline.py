"""The README's demo end to end on a small corpus: corpus → classifiers → annotate → stats → select."""

from __future__ import annotations

import json
from pathlib import Path

from quadmix_spark.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_pipeline_end_to_end(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "demo",
            "--config",
            str(ROOT / "conf" / "demo.yaml"),
            "--docs",
            "2000",
            "--set",
            f"select.params={ROOT / 'conf' / 'params' / 'demo.yaml'}",
            "--set",
            "demo.malformed_rate=0.01",
            "--set",
            "select.allow_unused_domains=true",  # 2,000 documents may leave a domain unpredicted
            # One training thread: fastText's multi-threaded SGD is not repeatable run to run.
            "--set",
            "classifiers.domain.threads=1",
            "--set",
            "classifiers.domain.epoch=20",
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err[-2000:]
    assert "(reconciled)" in out
    corpus = json.loads((tmp_path / "data/demo/corpus/_summary.json").read_text())
    annotated = spark.read.format("delta").load(str(tmp_path / "warehouse/annotated"))
    quarantine = spark.read.format("delta").load(str(tmp_path / "warehouse/quarantine"))
    # Every generated record is either annotated or quarantined.
    assert annotated.count() + quarantine.count() == corpus["docs"] + corpus["malformed_total"]
    assert quarantine.count() >= corpus["malformed_total"] - corpus["malformed"].get("duplicate_id", 0)

    # The trained domain classifier is useful on its own corpus (11 domains: chance is ~0.09).
    agree = (
        annotated.where("quality = 'high'").selectExpr("avg(cast(domain = true_domain as int))").first()[0]
    )
    assert agree > 0.6

    (selection,) = list((tmp_path / "data/selections").iterdir())
    manifest = json.loads((selection / "manifest.json").read_text())
    assert manifest["selected_docs"] > 0 and manifest["tokens_achieved"] > 0
    assert (selection / "report" / "report.html").is_file()
    assert list((selection / "shards" / "parquet").glob("shard=*/*.parquet"))
    meta = json.loads((tmp_path / "models/domain.bin.json").read_text())
    assert meta["macro_f1"] > 0.5 and len(meta["labels"]) >= 8
