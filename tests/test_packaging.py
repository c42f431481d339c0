"""The built wheel holds the whole package: installed elsewhere, it imports from an empty folder.

This is what executors on other nodes get (spark-submit --py-files, or a non-editable install
into a packed environment); an editable install would hold only a finder pointing at this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, quadmix_spark, quadmix_spark.cli, quadmix_spark.pipeline.select, quadmix_spark.spark.session as s
import udfs.annotate
print(json.dumps({"package": quadmix_spark.__file__, "udfs": udfs.annotate.__file__, "log4j": str(s._LOG4J),
                  "log4j_exists": s._LOG4J.is_file()}))
"""


def package_sources() -> set[str]:
    found = {*ROOT.glob("quadmix_spark/**/*.py"), *ROOT.glob("udfs/**/*.py")}
    return {str(p.relative_to(ROOT)) for p in found} | {"quadmix_spark/spark/log4j2.properties"}


def test_the_wheel_holds_every_module_and_data_file(built_wheel: Path):
    names = set(zipfile.ZipFile(built_wheel).namelist())
    assert package_sources() - names == set()
    assert not [n for n in names if n.endswith((".pth", "_finder.py"))]  # not an editable stub


def test_the_installed_wheel_imports_from_an_empty_folder(built_wheel: Path, tmp_path: Path):
    target, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q"]
    install += ["--target", str(target)]
    result = subprocess.run([*install, str(built_wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Only the installed copy on the path (the dependencies come from this interpreter's site-packages).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=empty, env=env, capture_output=True, text=True, timeout=300
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    where = json.loads(probe.stdout.strip().splitlines()[-1])
    for key in ("package", "udfs", "log4j"):
        assert Path(where[key]).is_relative_to(target), where
    assert where["log4j_exists"]
    command = [str(target / "bin" / "quadmix"), "select", "--help"]
    cli = subprocess.run(command, cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and cli.stdout.startswith("usage: quadmix select"), cli.stderr[-2000:]
