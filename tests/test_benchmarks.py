"""Every benchmark script still imports and parses its arguments (they are run by hand, not here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_help_runs(script: Path):
    command = [sys.executable, str(script), "--help"]
    # this checkout's package first: an editable install may point at another checkout
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_surrogates_benchmark_one_cell():
    """One small cell end to end: every family scored, and the log-linear law ranks its own truth."""
    script = ROOT / "benchmarks" / "surrogates.py"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, str(script), "--cells", "loglinear/dense/M8/n64"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("cell "))
    row = next(line for line in lines if line.startswith("loglinear/dense/M8/n64 "))
    families = header.split()[2:6]
    assert families == ["gp", "lightgbm", "linear", "loglinear"]
    # per family: "cv±sd test"; the law fitted on 64 noisy runs of itself ranks fresh mixtures
    tests = dict(zip(families, map(float, row.split()[3:10:2]), strict=True))
    assert tests["loglinear"] > 0.95, row
    assert all(-1.0 <= t <= 1.0 for t in tests.values()), row
    assert "cells meeting the regret goal: " in result.stdout
    assert "goal: auto within 0.02 Spearman of the best family in every cell: " in result.stdout
