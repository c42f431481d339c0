"""The spark-submit entry points in jobs/: each starts as spark-submit starts it (its folder first on
sys.path), from any working directory, and none shadows a standard-library module."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JOBS = sorted((ROOT / "jobs").glob("*.py"))


def env_with(*first: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}  # spark-submit does not set it
    # this checkout's package first: an editable install may point at another checkout
    paths = [*map(str, first), str(ROOT), os.environ.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


def run_script(script: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=cwd,
        env=env_with(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def import_a_job_beside(jobs: Path, cwd: Path) -> subprocess.CompletedProcess:
    """What a job imports once it runs (pyspark → socket → selectors → select), with ``jobs`` first
    on sys.path as spark-submit puts a script's folder: ``--help`` alone never reaches pyspark."""
    code = "import pyspark.sql, delta.tables, quadmix_spark.pipeline.select, quadmix_spark.pipeline.annotate"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env_with(jobs), capture_output=True, text=True, timeout=120
    )


def test_no_entry_point_shadows_a_standard_library_module():
    # The script's folder is sys.path[0]: jobs/select.py once broke socket → selectors → select.
    assert JOBS
    assert [p.name for p in JOBS if p.stem in sys.stdlib_module_names] == []


def test_a_job_imports_pyspark_with_the_jobs_folder_first(tmp_path: Path):
    result = import_a_job_beside(ROOT / "jobs", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("script", JOBS, ids=lambda p: p.stem)
def test_each_entry_point_starts_from_another_folder(script: Path, tmp_path: Path):
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    command = re.search(r'main\(command="([\w-]+)"\)', script.read_text()).group(1)
    assert result.stdout.startswith(f"usage: quadmix {command} ")


def test_a_shadowing_entry_point_is_caught(tmp_path: Path):
    """What the checks above guard against: a jobs/select.py breaks its neighbours at import."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    shutil.copy(ROOT / "jobs" / "stats.py", jobs / "stats.py")
    (jobs / "select.py").write_text("")
    result = import_a_job_beside(jobs, tmp_path)
    assert result.returncode != 0
    assert "module 'select' has no attribute" in result.stderr
