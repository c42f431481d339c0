"""Local mode retries a failed task by default: one crashed Python worker does not fail the job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quadmix_spark.spark.session import with_local_retries

ROOT = Path(__file__).resolve().parents[1]

# A job whose Python worker dies (os._exit, as an out-of-memory kill would) on the first task
# attempt only: the marker file is created by exactly one attempt.
CRASH_ONCE = """
import os, sys
from quadmix_spark.spark.session import build_session
marker, failures = sys.argv[1], int(sys.argv[2])
spark = build_session(master="local[1]", warehouse=marker + "-wh", conf={"spark.ui.enabled": "false"},
                      local_max_failures=failures)
print("master", spark.sparkContext.master)

def crash_once(rows):
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        yield from rows
        return
    os._exit(1)

total = spark.sparkContext.parallelize(range(100), 1).mapPartitions(crash_once).sum()
print("sum", total)
"""


@pytest.mark.parametrize(
    ("master", "expected"),
    [
        ("local", "local[1,4]"),
        ("local[2]", "local[2,4]"),
        ("local[*]", "local[*,4]"),
        ("local[2,1]", "local[2,1]"),  # a count the user wrote is kept
        ("spark://127.0.0.1:7077", "spark://127.0.0.1:7077"),
        ("yarn", "yarn"),
    ],
)
def test_local_masters_get_retries(master: str, expected: str):
    assert with_local_retries(master, 4) == expected


def run_crash_once(tmp_path: Path, failures: int) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    marker = str(tmp_path / f"crashed-{failures}")
    return subprocess.run(
        [sys.executable, "-c", CRASH_ONCE, marker, str(failures)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_crashed_python_worker_is_retried_by_default(tmp_path: Path):
    result = run_crash_once(tmp_path, 4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "master local[1,4]" in result.stdout and f"sum {sum(range(100))}" in result.stdout
    # One attempt (Spark's local default) fails the whole job on the same crash.
    single = run_crash_once(tmp_path, 1)
    assert single.returncode != 0 and "master local[1,1]" in single.stdout
    assert "sum" not in single.stdout
