"""Blank lines, repeated lines and JSON that is not an object, read by the real reader and annotate job."""

from __future__ import annotations

import json

from quadmix_spark.config import PipelineConfig, from_dict
from quadmix_spark.pipeline.annotate import run_annotate

LINES = [
    json.dumps({"id": "a", "text": "A first document about rivers."}),
    "",
    json.dumps({"id": "b", "text": "A second document about mountains."}),
    "   ",
    "\t",
    '["an", "array"]',
    '"a bare string"',
    "42",
    "not json",
    "not json",
    "not json",
    json.dumps({"text": "no id here"}),
]


def _config(tmp_path) -> PipelineConfig:
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "warehouse"),
            "annotate": {
                "input": {"path": str(tmp_path / "in"), "format": "jsonl"},
                "max_quarantine_fraction": 0.95,
                "annotators": [{"kind": "tokens", "column": "n", "tokenizer": "whitespace"}],
            },
        },
    )


def test_blank_lines_and_non_objects_have_their_own_reasons_and_every_record_its_own_key(spark, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-0.jsonl").write_text("\n".join(LINES) + "\n")
    config = _config(tmp_path)
    summary = run_annotate(spark, config)

    assert summary.quarantined_by_reason == {
        "blank_line": 3,
        "malformed_json": 3,
        "malformed_record": 3,
        "missing_id": 1,
    }
    assert summary.input_rows == len(LINES) == summary.annotated + summary.quarantined
    assert summary.annotated == 2 and summary.reconciles

    rows = spark.read.format("delta").load(config.table_path("quarantine")).collect()
    assert len(rows) == 10
    assert len({r["record_key"] for r in rows}) == 10  # three blank lines, three "not json": six keys
    by_raw = sorted((r["reason"], r["raw"]) for r in rows if r["reason"] == "malformed_record")
    assert by_raw == [
        ("malformed_record", '"a bare string"'),
        ("malformed_record", "42"),
        ("malformed_record", '["an", "array"]'),
    ]

    # A rerun MERGEs on the keys: the same ten records, none added, all still counted.
    again = run_annotate(spark, config)
    assert again.quarantined_by_reason == summary.quarantined_by_reason
    after = spark.read.format("delta").load(config.table_path("quarantine")).collect()
    assert sorted(r["record_key"] for r in after) == sorted(r["record_key"] for r in rows)

    # One more blank line appended: one more record, with a key of its own.
    with open(tmp_path / "in" / "part-0.jsonl", "a") as fh:
        fh.write("\n")
    third = run_annotate(spark, config)
    assert third.quarantined_by_reason["blank_line"] == 4
    keys = [
        r["record_key"] for r in spark.read.format("delta").load(config.table_path("quarantine")).collect()
    ]
    assert len(keys) == len(set(keys)) == 11
