"""Shared fixtures: one real local SparkSession with Delta for the whole run."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quadmix_spark.spark.session import build_session


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("warehouse")
    session = build_session(
        app_name="quadmix-tests",
        master="local[2]",
        warehouse=warehouse,
        conf={
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "4",
            "spark.driver.memory": "2g",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def clustered(spark, tmp_path_factory):
    """tests/clustered_corpus.py's 500 documents in one partition, clustered (k by silhouette) and
    assigned once for every test of clusters as domains: (root, config, cluster result, assign summary).
    Tests read its annotated table and write their outputs elsewhere."""
    from clustered_corpus import N_DOCS, documents, make_config, write_annotated

    from quadmix_spark.pipeline import clustering

    root = tmp_path_factory.mktemp("clusters")
    config = make_config(root)
    write_annotated(spark, config.table_path("annotated"), documents(0, N_DOCS), partitions=1)
    result = clustering.run_cluster(spark, config)
    return root, config, result, clustering.run_assign(spark, config)


# -- packaging and a standalone cluster (tests/test_packaging.py, tests/test_cluster.py) ------------
ROOT = Path(__file__).resolve().parents[1]


def load_cluster_script():
    """scripts/standalone_cluster.py as a module (it is a script, not part of the package)."""
    path = ROOT / "scripts" / "standalone_cluster.py"
    spec = importlib.util.spec_from_file_location("standalone_cluster", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """This checkout built as a wheel (what ships to executors), from a clean copy of the sources."""
    src = tmp_path_factory.mktemp("wheel-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("quadmix_spark", "udfs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    command += ["-w", str(dist)]
    result = subprocess.run([*command, str(src)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = dist.glob("quadmix_spark-*.whl")
    return wheel


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """A Spark standalone master and one worker (2 cores) on 127.0.0.1, stopped at the end."""
    cluster = load_cluster_script().start(tmp_path_factory.mktemp("standalone-cluster"), cores=2, memory="2g")
    try:
        yield cluster
    finally:
        cluster.stop()
