"""Spark settings: ours are checked before Spark starts, and Spark's refusals are not sent to setup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]

# A fresh JVM per case: the classpath and the session's settings are fixed when it starts.
START = """
import json, sys
from quadmix_spark.spark.session import build_session
conf = {"spark.ui.enabled": "false", **json.loads(sys.argv[2])}
try:
    build_session(master="local[1]", warehouse=sys.argv[1], conf=conf)
    print("RESULT", json.dumps(["started", ""]))
except Exception as err:
    print("RESULT", json.dumps([type(err).__name__, str(err)]))
"""


def start_session(tmp_path: Path, conf: dict[str, str]) -> tuple[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", START, str(tmp_path / "wh"), json.dumps(conf)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    kind, message = json.loads(line.removeprefix("RESULT "))
    return kind, message


@pytest.fixture()
def config_file(tmp_path) -> Path:
    path = tmp_path / "quadmix.yaml"
    path.write_text(yaml.safe_dump({"warehouse": str(tmp_path / "warehouse")}))
    return path


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("spark.shuffle_partitions=-4", "spark.shuffle_partitions must be positive, got -4"),
        ("spark.shuffle_partitions=0", "spark.shuffle_partitions must be positive, got 0"),
        (
            "spark.master=local[two]",
            "spark.master must be local, local[N], local[*], local[N,F], spark://HOST",
        ),
    ],
)
def test_our_spark_settings_are_checked_before_spark_starts(config_file, capsys, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("*", r"\*")):
        load_config(config_file, [override])
    assert main(["stats", "--config", str(config_file), "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "setup.sh" not in err


def test_a_setting_spark_refuses_is_named_and_not_sent_to_setup(tmp_path):
    kind, message = start_session(tmp_path, {"spark.sql.shuffle.partitions": "-4"})
    assert kind == "ConfigError"
    assert message.startswith("spark.conf: Spark refuses a setting")
    assert (
        "[INVALID_CONF_VALUE.REQUIREMENT] The value '-4' in the config \"spark.sql.shuffle.partitions\""
        in message
    )
    assert "setup.sh" not in message


def test_missing_delta_classes_still_send_the_user_to_setup(tmp_path):
    kind, message = start_session(tmp_path, {"spark.jars": "", "spark.jars.packages": ""})
    assert kind == "DeltaJarsMissing"
    assert "run scripts/setup.sh" in message
