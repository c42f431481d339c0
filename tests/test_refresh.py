"""The refresh job on real Spark, Delta and fastText: a date's run, its reruns, a killed run resumed."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from pathlib import Path

import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from test_annotate import FINANCE, SPORTS, train_topic_model

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, load_config
from quadmix_spark.pipeline import clustering
from quadmix_spark.pipeline.annotate import QuarantineShareExceeded, run_annotate
from quadmix_spark.pipeline.refresh import ensure_runs_table, format_summary, run_refresh
from quadmix_spark.pipeline.select import plan_select, run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.spark import tables
from quadmix_spark.spark.stats_table import load_stats

DAY1, DAY2 = dt.date(2026, 11, 27), dt.date(2026, 11, 28)
SCORERS = {"word_count": "higher_is_better", "dup_line_frac": "lower_is_better"}
# Records a refresh must quarantine: not JSON, no text, blank text.
BAD_DAY1 = ["this line is not json", '{"id": "x-notext"}', '{"id": "x-blank", "text": "  "}']
BAD_DAY2 = ['{"id": "y-notext", "text": null}', "{broken"]


def _docs(prefix: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words = SPORTS if i % 2 else FINANCE
        n_lines = rng.randint(1, 5)
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(n_lines)]
        if rng.random() < 0.3:  # repeated lines: dup_line_frac varies
            lines += lines[:1] * rng.randint(1, 3)
        docs.append({"id": f"{prefix}{i:04d}", "text": "\n".join(lines) + "."})
    return docs


def _write_jsonl(path: Path, docs: list[dict], bad: list[str]) -> None:
    lines = [json.dumps(d) for d in docs] + bad
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Models, θ, and the day-1 / day-2 input files (day 2 repeats 20 day-1 documents)."""
    root = tmp_path_factory.mktemp("refresh")
    model = train_topic_model(root / "topic.bin")
    params = root / "theta.yaml"
    core.save_params(core.uniform(["finance", "sports"], list(SCORERS), omega=0.6), params)
    day1, day2 = _docs("a", 200, 1), _docs("b", 100, 2)
    files = root / "files"
    files.mkdir()
    _write_jsonl(files / "day1.jsonl", day1, BAD_DAY1)
    _write_jsonl(files / "day2.jsonl", day2 + day1[:20], BAD_DAY2)
    texts = {d["id"]: d["text"] for d in day1 + day2}
    return {"root": root, "model": model, "params": str(params), "files": files, "texts": texts}


def _config_file(world, name: str, **select) -> tuple[Path, Path]:
    """A config for a fresh warehouse reading <name>/in; returns (config file, input folder)."""
    base = world["root"] / name
    (base / "in").mkdir(parents=True)
    data = {
        "warehouse": str(base / "warehouse"),
        "spark": {"master": "local[2]", "shuffle_partitions": 4},
        "annotate": {
            "input": {"path": str(base / "in"), "format": "jsonl"},
            "max_quarantine_fraction": 0.5,
            "annotators": [
                {"kind": "fasttext_domain", "name": "domain", "column": "domain", "model": world["model"]},
                {"kind": "heuristics", "signals": ["word_count", "dup_line_frac"]},
                {"kind": "tokens", "column": "n_tokens", "tokenizer": "whitespace"},
            ],
        },
        "scorers": SCORERS,
        "stats": {"n_quantiles": 100},
        "select": {
            "params": world["params"],
            "output_dir": str(base / "selections"),
            "shard_formats": ["parquet"],
            "report": False,
            **select,
        },
    }
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, base / "in"


def _arrive(world, folder: Path, day: int) -> None:
    """The nightly drop: the day's file lands in the input folder."""
    name = f"day{day}.jsonl"
    (folder / name).write_bytes((world["files"] / name).read_bytes())


def _versions(spark, config) -> dict[str, int | None]:
    names = {
        "annotated": config.annotate.output_table,
        "quarantine": config.annotate.quarantine_table,
        "stats": config.stats.output_table,
        "selected": config.select.output_table,
        "refresh_runs": config.refresh.runs_table,
    }
    return {k: tables.version(spark, config.table_path(v)) for k, v in names.items()}


def _selection(spark, config, selection_id: str) -> dict[str, int]:
    rows = (
        spark.read.format("delta")
        .load(config.table_path(config.select.output_table))
        .where(F.col("selection_id") == selection_id)
        .select("id", "copies")
        .collect()
    )
    return {r["id"]: int(r["copies"]) for r in rows}


def _delete_done_row(spark, config, step: str) -> None:
    """What a kill between a step's commit and its refresh_runs row leaves behind."""
    runs = DeltaTable.forPath(spark, config.table_path(config.refresh.runs_table))
    runs.delete((F.col("step") == step) & (F.col("status") == "done"))


@pytest.fixture(scope="module")
def uninterrupted(spark, world):
    """Day 1 run once, uninterrupted, through the CLI; then the same date again."""
    config_path, folder = _config_file(world, "a")
    _arrive(world, folder, 1)
    args = ["refresh", "--config", str(config_path), "--run-date", str(DAY1)]
    config = load_config(config_path)
    return config_path, folder, config, args


def test_a_date_runs_annotate_stats_select_and_records_its_versions(spark, world, uninterrupted, capsys):
    _, _, config, args = uninterrupted
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = run_refresh(spark, config, DAY1)  # the recorded summary of the done date
    assert summary.status == "already done"
    assert (summary.input_rows, summary.new_documents) == (203, 200)
    assert (summary.quarantined, summary.new_quarantined) == (3, 3)
    assert summary.quarantined_by_reason == {"malformed_json": 1, "missing_text": 1, "empty_text": 1}
    # Version 0 creates the empty table, version 1 inserts the night's documents.
    assert (summary.base_annotated_version, summary.annotated_version) == (None, 1)
    assert summary.stats_reused is False

    # Tokens per domain from the corpus itself: whitespace words × copies of the selected ids.
    copies = _selection(spark, config, summary.selection_id)
    annotated = spark.read.format("delta").load(config.table_path("annotated"))
    domains = {r["id"]: r["domain"] for r in annotated.select("id", "domain").collect()}
    expected: dict[str, int] = {}
    for doc_id, n in copies.items():
        tokens = len(world["texts"][doc_id].split())
        expected[domains[doc_id]] = expected.get(domains[doc_id], 0) + tokens * n
    assert summary.tokens_selected == expected and sum(expected.values()) > 0
    assert summary.selected_copies == sum(copies.values())
    assert f"refresh {DAY1} (attempt 1): completed; ran annotate, stats, select" in out
    assert "200 new documents (annotated none → v1), 3 quarantined, 3 of them new" in out
    for domain, tokens in expected.items():
        assert f"    {domain:<24} {tokens:>15}" in out

    manifest = json.loads((Path(summary.out_dir) / "manifest.json").read_text())
    assert manifest["stats_version"] == summary.stats_version
    assert manifest["annotated_version"] == summary.annotated_version

    # refresh_runs: the run's inputs and versions, one row per event.
    runs = spark.read.format("delta").load(config.table_path("refresh_runs"))
    events = [(r["step"], r["status"]) for r in runs.orderBy("recorded_at").collect()]
    steps = [("annotate", "done"), ("stats", "done"), ("select", "done")]
    assert events == [("run", "started"), *steps, ("run", "done")]
    done = runs.where("step = 'run' and status = 'done'").first()
    assert (done["annotated_version"], done["stats_version"], done["selection_id"]) == (
        1,
        summary.stats_version,
        summary.selection_id,
    )
    inputs = json.loads(runs.where("status = 'started'").first()["details"])
    assert inputs["input_path"] == config.annotate.input.path
    assert inputs["params_hash"] == core.params_hash(core.load_params(world["params"]))


def test_rerunning_a_done_date_changes_no_table_and_says_so(spark, uninterrupted, capsys):
    _, _, config, args = uninterrupted
    before = _versions(spark, config)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert _versions(spark, config) == before  # not even a refresh_runs row
    assert f"refresh {DAY1}: already done (attempt 1" in out and "nothing to do" in out
    assert "200 new documents" in out  # the recorded summary, not this call's (which did nothing)


def test_the_steps_equal_the_jobs_run_by_hand(spark, world, uninterrupted):
    _, _, config, _ = uninterrupted
    refreshed = run_refresh(spark, config, DAY1)
    hand_path, folder = _config_file(world, "by-hand")
    _arrive(world, folder, 1)
    hand = load_config(hand_path)
    annotated = run_annotate(spark, hand, mode="incremental")
    stats = run_stats(spark, hand)
    selected = run_select(spark, hand)
    assert annotated.annotated == refreshed.new_documents
    assert stats.stats_version == refreshed.stats_version
    # The refresh's select step is the select job: the same id for the same tables; the hand-run
    # warehouse holds other tables, so its id differs while its selection is the same.
    assert plan_select(spark, config).selection_id == refreshed.selection_id != selected.selection_id
    assert _selection(spark, hand, selected.selection_id) == _selection(spark, config, refreshed.selection_id)


def test_a_killed_run_resumes_to_the_same_result(spark, world, uninterrupted, capsys):
    _, _, done_config, _ = uninterrupted
    reference = run_refresh(spark, done_config, DAY1)
    config_path, folder = _config_file(world, "killed")
    _arrive(world, folder, 1)
    config = load_config(config_path)
    base = ["refresh", "--config", str(config_path), "--run-date", str(DAY1)]

    # Stopped after annotate (an Airflow task that ran, the next one never started).
    assert main([*base, "--step", "annotate"]) == 0
    partial = run_refresh(spark, config, DAY1, step="annotate")
    assert partial.status == "partial" and partial.new_documents == 200 and partial.selection_id is None
    # Killed between annotate's commit and its row: the rerun finds every id already there, and
    # still counts the run's 200 new documents from the table's history.
    _delete_done_row(spark, config, "annotate")
    assert run_refresh(spark, config, DAY1, step="annotate").new_documents == 200
    # Selecting before the stats step ran for this date is refused, naming the step.
    with pytest.raises(ConfigError, match="the stats step has not run"):
        run_refresh(spark, config, DAY1, step="select")
    # Killed between the stats commit and its row: the rerun reuses that stats version.
    run_refresh(spark, config, DAY1, step="stats")
    stats_versions = tables.version(spark, config.table_path("stats"))
    _delete_done_row(spark, config, "stats")
    capsys.readouterr()

    assert main(base) == 0
    out = capsys.readouterr().out
    assert "stats: reusing version 1" in out and "done before: annotate" in out
    assert tables.version(spark, config.table_path("stats")) == stats_versions  # no second stats run
    resumed = run_refresh(spark, config, DAY1)
    same = ("new_documents", "quarantined", "new_quarantined", "annotated_version", "stats_version")
    assert {k: getattr(resumed, k) for k in same} == {k: getattr(reference, k) for k in same}
    assert resumed.selection_id == plan_select(spark, config).selection_id != reference.selection_id
    assert resumed.tokens_selected == reference.tokens_selected
    assert _selection(spark, config, resumed.selection_id) == _selection(
        spark, done_config, reference.selection_id
    )


def test_the_next_night_annotates_only_the_new_documents(spark, world, uninterrupted):
    _, folder, config, _ = uninterrupted
    day1 = run_refresh(spark, config, DAY1)
    _arrive(world, folder, 2)
    day2 = run_refresh(spark, config, DAY2)
    assert day2.status == "completed"
    # 100 new ids. The 20 day-1 documents repeated in the day-2 file are ids seen twice in the
    # input: one record of each stays (already annotated), the other is a duplicate_id.
    assert (day2.input_rows, day2.new_documents) == (203 + 122, 100)
    assert (day2.quarantined, day2.new_quarantined) == (3 + 2 + 20, 2 + 20)
    assert day2.quarantined_by_reason == {
        "malformed_json": 2,
        "missing_text": 2,
        "empty_text": 1,
        "duplicate_id": 20,
    }
    assert (day2.base_annotated_version, day2.annotated_version) == (day1.annotated_version, 2)
    assert day2.stats_version == day1.stats_version + 1 and day2.selection_id != day1.selection_id
    assert set(_selection(spark, config, day2.selection_id)) - set(world["texts"]) == set()
    assert any(i.startswith("b") for i in _selection(spark, config, day2.selection_id))
    assert "(annotated v1 → v2)" in format_summary(day2)


def test_a_changed_theta_is_refused_for_a_started_date_unless_restarted(spark, uninterrupted, tmp_path):
    _, _, config, _ = uninterrupted
    other = tmp_path / "theta.yaml"
    core.save_params(core.uniform(["finance", "sports"], list(SCORERS), omega=0.3), other)
    changed = load_config(uninterrupted[0], [f"select.params={other}"])
    before = _versions(spark, config)
    with pytest.raises(ConfigError, match="--restart"):
        run_refresh(spark, changed, DAY1)
    assert _versions(spark, config) == before
    again = run_refresh(spark, changed, DAY1, restart=True)
    assert again.attempt == 2 and again.status == "completed"
    assert again.new_documents == 0  # the new attempt's base already holds every document
    assert again.selection_id != run_refresh(spark, config, DAY2).selection_id


def test_a_failed_step_is_recorded_and_fails_the_run(spark, world):
    config_path, folder = _config_file(world, "failing")
    (folder / "bad.jsonl").write_text("\n".join(["not json"] * 8 + [json.dumps(_docs("c", 1, 3)[0])]) + "\n")
    config = load_config(config_path)
    with pytest.raises(QuarantineShareExceeded):
        run_refresh(spark, config, DAY1)
    runs = spark.read.format("delta").load(config.table_path("refresh_runs"))
    failed = runs.where("status = 'failed'").collect()
    assert [(r["step"], r["attempt"]) for r in failed] == [("annotate", 1)]
    assert "max_quarantine_fraction" in json.loads(failed[0]["details"])["error"]
    assert main(["refresh", "--config", str(config_path), "--run-date", "2026-13-01"]) == 2


def test_the_assign_step_of_a_config_without_clusters_does_nothing(world, capsys):
    """The DAG runs an assign task for every config; without clusters it returns before Spark."""
    config_path, _ = _config_file(world, "no-clusters")
    config = load_config(config_path)
    assert main(["refresh", "--config", str(config_path), "--run-date", str(DAY1), "--step", "assign"]) == 0
    assert "assign: nothing to do (domain_column 'domain' is not cluster.column" in capsys.readouterr().out
    assert not Path(config.table_path("refresh_runs")).exists()


def test_runs_tables_created_at_once_by_many_runs_all_succeed(spark, tmp_path):
    for trial in range(3):
        path = str(tmp_path / f"runs-{trial}")
        barrier, errors = threading.Barrier(4), []

        def create(path=path, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                ensure_runs_table(spark, path)
            except Exception as err:  # noqa: BLE001 - collected and asserted below
                errors.append(err)

        threads = [threading.Thread(target=create) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert tables.version(spark, path) == 0


def test_the_summary_counts_changed_texts_kept_and_replaced(spark, world):
    config_path, folder = _config_file(world, "changed")
    _arrive(world, folder, 1)
    config = load_config(config_path, ["annotate.on_changed_text=replace"])
    first = run_refresh(spark, config, DAY1)
    assert (first.changed_text_kept, first.changed_text_replaced) == (0, 0)
    # The next night the day-1 file is rewritten: three of its documents with new texts.
    day1 = _docs("a", 200, 1)
    rewritten = [{**d, "text": d["text"] + " Updated."} for d in day1[:3]] + day1[3:]
    _write_jsonl(folder / "day1.jsonl", rewritten, BAD_DAY1)
    second = run_refresh(spark, config, DAY2)
    assert (second.changed_text_kept, second.changed_text_replaced) == (0, 3)
    assert second.new_documents == 0 and second.quarantined_by_reason == first.quarantined_by_reason
    assert "changed texts: 0 kept, 3 replaced (annotate.on_changed_text=replace)" in format_summary(second)
    texts = spark.read.format("delta").load(config.table_path("annotated")).where(F.col("id") == "a0000")
    assert texts.first()["text"].endswith(" Updated.")


CLUSTERS = {"k": 3, "sample_size": 1000, "partitions": 2, "dim": 16, "max_iter": 10}


def test_with_clusters_as_domains_each_night_assigns_its_new_ids_a_cluster(spark, world, capsys):
    config_path, folder = _config_file(world, "clusters")
    data = yaml.safe_load(config_path.read_text())
    data.update(domain_column="cluster", cluster=CLUSTERS)
    data["select"]["params"] = str(config_path.parent / "theta.yaml")
    config_path.write_text(yaml.safe_dump(data))
    config = load_config(config_path)
    _arrive(world, folder, 1)
    # No clusters fitted yet: refused before any Spark work, naming both keys.
    no_model = r"domain_column: 'cluster' is cluster\.column.*cluster\.model_dir: no fitted clusters"
    with pytest.raises(ConfigError, match=no_model):
        run_refresh(spark, config, DAY1)
    assert main(["refresh", "--config", str(config_path), "--run-date", str(DAY1)]) == 2
    assert tables.version(spark, config.table_path(config.refresh.runs_table)) is None
    # The first night's documents annotated by hand, clustered, θ one entry per cluster.
    run_annotate(spark, config, mode="incremental")
    fit = clustering.run_cluster(spark, config)
    names = [c["name"] for c in fit.clusters]
    core.save_params(core.uniform(names, list(SCORERS), omega=0.6), config.select.params)

    night1 = run_refresh(spark, config, DAY1)
    assert night1.steps_run == ["annotate", "assign", "stats", "select"]
    assert (night1.new_documents, night1.assigned, night1.cluster_model) == (0, 200, fit.model_id)
    path = config.table_path(config.annotate.output_table)
    before = {r["id"]: r["cluster"] for r in spark.read.format("delta").load(path).collect()}
    assert len(before) == 200 and set(before.values()) <= set(names)

    _arrive(world, folder, 2)
    night2 = run_refresh(spark, config, DAY2)
    assert (night2.new_documents, night2.assigned) == (100, 100)  # day 2's 20 repeats are not new
    after = spark.read.format("delta").load(path)
    rows = {r["id"]: r["cluster"] for r in after.collect()}
    assert len(rows) == 300 and None not in rows.values() and set(rows.values()) <= set(names)
    assert {i: rows[i] for i in before} == before
    assert {r[0] for r in after.select("cluster_model").distinct().collect()} == {fit.model_id}
    stats = load_stats(spark, config.table_path(config.stats.output_table), night2.stats_version)
    assert set(stats.domains) == set(rows.values())  # the night's stats are per cluster name
    assert set(night2.tokens_selected) <= set(names) and sum(night2.tokens_selected.values()) > 0
    selected = spark.read.format("delta").load(config.table_path(config.select.output_table))
    picked = selected.where(F.col("selection_id") == night2.selection_id).select("cluster").distinct()
    assert {r[0] for r in picked.collect()} == set(night2.tokens_selected)

    runs = spark.read.format("delta").load(config.table_path(config.refresh.runs_table))
    night2_rows = runs.where(F.col("run_date") == F.lit(DAY2)).orderBy("recorded_at").collect()
    assert [(r["step"], r["status"]) for r in night2_rows] == [
        ("run", "started"), ("annotate", "done"), ("assign", "done"), ("stats", "done"),
        ("select", "done"), ("run", "done"),
    ]  # fmt: skip
    annotate_row, assign_row, stats_row = night2_rows[1:4]
    assert (
        annotate_row["annotated_version"] < assign_row["annotated_version"] == stats_row["annotated_version"]
    )
    details = json.loads(assign_row["details"])
    assert (details["assigned"], details["kept"], details["model_id"]) == (100, 200, fit.model_id)
    new_tokens = after.where(F.col("id").startswith("b")).agg(F.sum("n_tokens")).first()[0]
    assert assign_row["tokens"] == new_tokens and assign_row["wall_s"] > 0
    assert night2_rows[-1]["wall_s"] == pytest.approx(sum(r["wall_s"] for r in night2_rows[1:5]), abs=0.01)
    assert "assign     100 documents named a cluster by model " + fit.model_id in format_summary(night2)
    capsys.readouterr()
