"""scripts/submit.sh: what it hands spark-submit, seen by a stand-in for spark-submit that prints
its environment and arguments (the script execs ``spark-submit`` beside ``QUADMIX_PYTHON``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def submit(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    python = bin_dir / "python"
    if not python.exists():
        python.write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" "$@"\n')  # keeps its venv
        python.chmod(0o755)
        stand_in = bin_dir / "spark-submit"
        stand_in.write_text('#!/usr/bin/env bash\necho "SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-}"\necho "$@"\n')
        stand_in.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k != "SPARK_LOCAL_IP"}
    environ.update(QUADMIX_PYTHON=str(python), PYTHONPATH=str(ROOT), **(env or {}))
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "submit.sh"), *args], capture_output=True, text=True, env=environ
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("master", "local_ip"),
    [
        (["--master", "spark://127.0.0.1:7077"], "127.0.0.1"),
        (["--master=spark://localhost:7077"], "127.0.0.1"),
        (["--master", "spark://10.0.0.5:7077"], ""),
        (["--master", "yarn"], ""),
    ],
)
def test_a_loopback_master_binds_the_driver_to_the_loopback_address(tmp_path, master, local_ip):
    out = submit(tmp_path, *master, "jobs/annotate.py", "--config", "c.yaml")
    assert out[0] == f"SPARK_LOCAL_IP={local_ip}"
    assert out[1].endswith(" ".join([*master, "jobs/annotate.py", "--config", "c.yaml"]))


def test_a_given_spark_local_ip_is_kept(tmp_path):
    out = submit(tmp_path, "--master", "spark://127.0.0.1:7077", "j.py", env={"SPARK_LOCAL_IP": "127.0.0.2"})
    assert out[0] == "SPARK_LOCAL_IP=127.0.0.2"
