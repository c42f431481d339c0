"""Writers side by side and bounded files: concurrent annotate and select runs, commits found by id.

Concurrent runs each get their own SparkSession (``newSession``: one SparkContext, separate SQL
settings), as two jobs submitted at once would.
"""

from __future__ import annotations

import json
import math
import threading

import pytest
from pyspark.sql import functions as F
from test_select import make_config as select_config
from test_select import synthetic_pool, write_pool

from quadmix_spark.config import PipelineConfig, from_dict
from quadmix_spark.pipeline.annotate import run_annotate
from quadmix_spark.pipeline.select import run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.spark import tables

WORDS = [{"kind": "tokens", "column": "n", "tokenizer": "whitespace"}]


def _jsonl(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"d{i}", "text": f"document number {i} " * 3}) for i in ids]
    path.write_text("\n".join(lines) + "\n")


def _config(tmp_path, input_path, **spark) -> PipelineConfig:
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "warehouse"),
            "spark": spark,
            "annotate": {"input": {"path": str(input_path), "format": "jsonl"}, "annotators": WORDS},
        },
    )


def _in_threads(*actions):
    """Run the actions at once, each in its own thread; their results, or the first error raised."""
    results, errors = [None] * len(actions), []
    start = threading.Barrier(len(actions))

    def run(i, action):
        start.wait()
        try:
            results[i] = action()
        except BaseException as err:  # re-raised in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_two_annotate_runs_at_once_on_overlapping_inputs_leave_each_id_once(spark, tmp_path):
    _jsonl(tmp_path / "a" / "part-0.jsonl", range(0, 60))
    _jsonl(tmp_path / "b" / "part-0.jsonl", range(30, 90))  # 30 ids in both
    config_a, config_b = _config(tmp_path, tmp_path / "a"), _config(tmp_path, tmp_path / "b")
    first, second = _in_threads(
        lambda: run_annotate(spark.newSession(), config_a),
        lambda: run_annotate(spark.newSession(), config_b),
    )
    table = spark.read.format("delta").load(config_a.table_path("annotated"))
    ids = [r["id"] for r in table.select("id").collect()]
    assert sorted(ids) == sorted(f"d{i}" for i in range(90))  # each id once, none lost
    for summary in (first, second):
        assert summary.reconciles and summary.input_rows == 60 and summary.quarantined == 0
    # Every id was inserted by exactly one run; the other counted it as already annotated.
    assert first.annotated + second.annotated == 90
    assert first.skipped_existing + second.skipped_existing == 30
    assert first.annotated_version != second.annotated_version


def test_two_selects_at_once_on_a_table_not_there_yet_both_complete(spark, tmp_path):
    pool = synthetic_pool(n=600, seed=3)
    config = select_config(tmp_path, rank_mode="scalable")
    write_pool(spark, config.table_path("annotated"), pool, partitions=2)
    run_stats(spark, config)
    other = select_config(tmp_path, rank_mode="scalable", seed=99)
    first, second = _in_threads(
        lambda: run_select(spark.newSession(), config), lambda: run_select(spark.newSession(), other)
    )
    assert first.selection_id != second.selection_id
    table = spark.read.format("delta").load(config.table_path("selected"))
    for summary in (first, second):
        rows = table.where(F.col("selection_id") == summary.selection_id)
        assert rows.count() == summary.selected_docs > 0
        assert rows.agg(F.sum("copies")).first()[0] == summary.selected_copies


def _rows_per_file(spark, path: str) -> list[int]:
    table = spark.read.format("delta").load(path)
    return [r["count"] for r in table.groupBy(F.col("_metadata.file_path")).count().collect()]


def test_a_larger_input_gives_proportionally_more_bounded_files(spark, tmp_path):
    counts = {}
    for n in (40, 400):
        _jsonl(tmp_path / f"in{n}" / "part-0.jsonl", range(n))
        config = _config(tmp_path / f"run{n}", tmp_path / f"in{n}", max_records_per_file=25)
        assert run_annotate(spark, config).annotated == n
        counts[n] = _rows_per_file(spark, config.table_path("annotated"))
        assert sum(counts[n]) == n and max(counts[n]) <= 25
    assert len(counts[400]) >= math.ceil(400 / 25) >= 4 * len(counts[40]) - 8
    # Unbounded, the same input is written as one file per write task.
    config = _config(tmp_path / "unbounded", tmp_path / "in400", max_records_per_file=0)
    run_annotate(spark, config)
    assert len(_rows_per_file(spark, config.table_path("annotated"))) < math.ceil(400 / 25)


def test_the_quarantine_is_committed_before_the_documents_it_balances(spark, tmp_path):
    path = tmp_path / "in" / "part-0.jsonl"
    _jsonl(path, range(10))
    with path.open("a") as fh:
        fh.write("not json\n" + json.dumps({"id": "e", "text": " "}) + "\n")
    config = _config(tmp_path, tmp_path / "in")

    def killed(df, specs):  # the run dies in the annotation pass, after the quarantine commit
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_annotate(spark, config, annotate_step=killed)
    quarantine = spark.read.format("delta").load(config.table_path("quarantine"))
    assert sorted(r["reason"] for r in quarantine.collect()) == ["empty_text", "malformed_json"]
    assert not tables.exists(spark, config.table_path("annotated"))


def test_a_write_finds_its_own_commit_among_concurrent_ones(spark, tmp_path):
    path = str(tmp_path / "t")
    frames = [spark.range(i * 10, i * 10 + 10 + i) for i in range(4)]  # 10, 11, 12, 13 rows
    commits = _in_threads(
        *[lambda df=df, i=i: tables.write_commit(df, path, "append", {"w": i}) for i, df in enumerate(frames)]
    )
    # Version 0 created the table (whichever writer got there first); each append is one commit.
    assert sorted(c.version for c in commits) == [1, 2, 3, 4]
    for i, commit in enumerate(commits):
        assert commit.metric("numOutputRows") == 10 + i
        assert tables.commit_info(spark, path, commit.version)["user_metadata"]["w"] == i
