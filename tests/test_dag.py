"""The Airflow DAG, loaded by a real Airflow (its own virtualenv, scripts/setup_airflow.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quadmix_spark.cli import build_parser
from quadmix_spark.spark.session import DELTA_PACKAGE

ROOT = Path(__file__).resolve().parents[1]
SPARK_CONNECTION = {"conn_type": "spark", "host": "spark://127.0.0.1", "port": 7077}
VENV = ROOT / os.environ.get("QUADMIX_AIRFLOW_VENV", ".venv-airflow")

# Runs inside the Airflow venv: DagBag parses dags/ as the scheduler would; the templates are
# rendered by the operators' own Jinja environment for one logical date.
LOAD = """
import json, sys
import pendulum
from airflow.models.dagbag import DagBag

logical = pendulum.parse(sys.argv[2]).in_tz("UTC")
context = {"ds": logical.to_date_string(), "ds_nodash": logical.format("YYYYMMDD"), "ts": logical.isoformat(),
           "logical_date": logical}

bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids)}
dag = bag.dags.get("quadmix_nightly")  # get_dag would read the metadata DB
if dag is not None:
    out["dag"] = {"max_active_runs": dag.max_active_runs, "catchup": dag.catchup}
    out["tasks"] = {}
    for task in dag.tasks:
        task.render_template_fields(context)
        out["tasks"][task.task_id] = {
            "kind": type(task).__name__,
            "upstream": sorted(task.upstream_task_ids),
            "retries": task.retries,
            "templated": "application_args" in task.template_fields,
            "application": task.application,
            "args": task.application_args,
            "name": task.name,
            "packages": task.packages,
            "conf": task.conf,
            # The command line the operator runs (its hook's builder: a private, pinned API).
            "command": task._get_hook()._build_spark_submit_command(task.application),
        }
print("DAGBAG " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def airflow_python() -> Path:
    """The Airflow venv's Python; the setup script returns at once when the venv is there."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup_airflow.sh")], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return VENV / "bin" / "python"


def load_dag(python: Path, tmp_path: Path, run_date: str, dag_folder: Path = ROOT / "dags") -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "QUADMIX_HOME": str(ROOT),
        "QUADMIX_CONFIG": "/srv/quadmix/prod.yaml",
        "QUADMIX_PYTHON": sys.executable,
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(SPARK_CONNECTION),
    }
    done = subprocess.run(
        [str(python), "-c", LOAD, str(dag_folder), run_date], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("DAGBAG ")]
    return json.loads(line[len("DAGBAG ") :])


def test_the_dag_loads_in_airflow_with_its_steps_in_order_and_the_date_templated(airflow_python, tmp_path):
    bag = load_dag(airflow_python, tmp_path, "2026-11-27")
    assert bag["import_errors"] == {}
    assert bag["dag_ids"] == ["quadmix_nightly"]
    assert bag["dag"] == {"max_active_runs": 1, "catchup": False}
    tasks = bag["tasks"]
    assert {t: v["upstream"] for t, v in tasks.items()} == {
        "annotate": [],
        "assign": ["annotate"],
        "stats": ["assign"],
        "select": ["stats"],
    }
    parser = build_parser()
    for step, task in tasks.items():
        assert task["kind"] == "SparkSubmitOperator" and task["templated"]
        assert task["retries"] >= 1
        assert task["application"] == str(ROOT / "jobs" / "refresh.py")
        assert Path(task["application"]).is_file()
        assert task["packages"] == DELTA_PACKAGE  # the Delta build this pyspark is pinned to
        assert task["conf"]["spark.pyspark.python"] == sys.executable
        assert task["name"] == f"quadmix-{step}-2026-11-27"
        # The rendered arguments are a valid `quadmix refresh` command line for that date and step.
        args = parser.parse_args(["refresh", *task["args"]])
        assert (args.run_date, args.step, args.config) == ("2026-11-27", step, "/srv/quadmix/prod.yaml")
        command = task["command"]
        assert command[:3] == ["spark-submit", "--master", "spark://127.0.0.1:7077"]
        assert command[-len(task["args"]) - 1 :] == [task["application"], *task["args"]]
        assert command[command.index("--packages") + 1] == DELTA_PACKAGE


def test_a_broken_dag_is_reported_as_an_import_error(airflow_python, tmp_path):
    folder = tmp_path / "dags"
    folder.mkdir()
    text = (ROOT / "dags" / "quadmix_nightly.py").read_text()
    (folder / "quadmix_nightly.py").write_text(text.replace("SparkSubmitOperator(", "SparkSubmitOperatr("))
    bag = load_dag(airflow_python, tmp_path, "2026-11-27", folder)
    assert bag["dag_ids"] == []
    (error,) = bag["import_errors"].values()
    assert "SparkSubmitOperatr" in error


def test_airflow_tasks_test_runs_the_annotate_task_on_a_standalone_cluster(airflow_python, tmp_path):
    """`airflow tasks test` of the first task, for real: the operator's spark-submit of
    jobs/refresh.py to a master and worker on 127.0.0.1 annotates a small corpus and records it."""
    env = {**os.environ, "QUADMIX_PYTHON": sys.executable, "QUADMIX_WORK": str(tmp_path / "work")}
    env["QUADMIX_AIRFLOW_VENV"] = str(VENV)
    script = ROOT / "scripts" / "airflow_task_test.sh"
    done = subprocess.run(
        ["bash", str(script), "annotate", "2026-11-27"], env=env, capture_output=True, text=True, timeout=1200
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert (
        "annotate: 304 input rows = 300 annotated + 0 already annotated + 4 quarantined (reconciled)" in out
    )
    assert "300 new documents (annotated none → v1)" in out
    assert "airflow-task-test: annotate done" in out
    assert "Cannot execute: spark-submit" not in out
