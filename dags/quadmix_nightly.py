"""Nightly corpus refresh: annotate → assign → stats → select of the run's date, each a spark-submit task.

Each task runs one step of ``quadmix refresh --run-date {{ ds }}`` (``jobs/refresh.py --step``).
A step records itself in the ``refresh_runs`` Delta table, so a retried or cleared task redoes only
what is not recorded: annotate finds its documents already there, stats reuses the stats run it
committed, select rewrites its own slice. ``assign`` names the new documents' clusters when the
clusters are the domains (docs/nightly.md) and returns at once, without Spark work, when they are
not. ``max_active_runs=1``: two dates never append to the
annotated table at once.

Settings come from the environment of the Airflow scheduler and workers (defaults in brackets):
``QUADMIX_HOME`` the checkout or image folder holding ``jobs/`` and ``conf/`` [/opt/quadmix],
``QUADMIX_CONFIG`` the pipeline config [$QUADMIX_HOME/conf/demo.yaml], ``QUADMIX_SPARK_CONN``
the Airflow Spark connection (master, deploy mode) [spark_default], ``QUADMIX_PYTHON`` the Python
of the Spark driver and executors [$QUADMIX_HOME/.venv/bin/python], ``QUADMIX_SCHEDULE`` a cron
expression in UTC [0 2 * * *].
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

HOME = os.environ.get("QUADMIX_HOME", "/opt/quadmix")
CONFIG = os.environ.get("QUADMIX_CONFIG", f"{HOME}/conf/demo.yaml")
SPARK_CONN = os.environ.get("QUADMIX_SPARK_CONN", "spark_default")
PYTHON = os.environ.get("QUADMIX_PYTHON", f"{HOME}/.venv/bin/python")
SCHEDULE = os.environ.get("QUADMIX_SCHEDULE", "0 2 * * *")
# The Delta package of pyproject's delta-spark/pyspark pair (quadmix_spark.spark.session.DELTA_PACKAGE).
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
STEPS = ("annotate", "assign", "stats", "select")

with DAG(
    dag_id="quadmix_nightly",
    description="QuaDMix refresh of the night's date: annotate (incremental) → assign → stats → select",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
        "retry_exponential_backoff": True,
    },
    tags=["quadmix", "spark"],
    doc_md=__doc__,
) as dag:
    annotate, assign, stats, select = (
        SparkSubmitOperator(
            task_id=step,
            application=f"{HOME}/jobs/refresh.py",
            application_args=["--config", CONFIG, "--run-date", "{{ ds }}", "--step", step],
            conn_id=SPARK_CONN,
            packages=DELTA_PACKAGE,
            conf={
                "spark.pyspark.python": PYTHON,
                "spark.pyspark.driver.python": PYTHON,
                "spark.task.maxFailures": "4",  # a crashed Python worker is retried, not the task
            },
            name=f"quadmix-{step}-{{{{ ds }}}}",
        )
        for step in STEPS
    )
    annotate >> assign >> stats >> select
