#!/usr/bin/env bash
# The Airflow environment the DAG test loads dags/ with: a separate virtualenv (.venv-airflow, or
# $QUADMIX_AIRFLOW_VENV) holding apache-airflow and its Spark provider, pinned by
# scripts/airflow-constraints.txt. Airflow is not a dependency of quadmix-spark: the scheduler
# only runs spark-submit. Does nothing when the venv already imports both packages.
# Needs: Python 3.11, network access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

AIRFLOW_VERSION=3.1.8
SPARK_PROVIDER_VERSION=6.3.4
VENV="${QUADMIX_AIRFLOW_VENV:-.venv-airflow}"
PYTHON="${PYTHON:-python3.11}"
CHECK="import airflow, airflow.providers.apache.spark; assert airflow.__version__ == '$AIRFLOW_VERSION'"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
  echo "setup-airflow: $VENV already has apache-airflow $AIRFLOW_VERSION"
  exit 0
fi
command -v "$PYTHON" >/dev/null || { echo "setup-airflow: $PYTHON not found (set PYTHON=...)" >&2; exit 1; }
started=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c scripts/airflow-constraints.txt \
  "apache-airflow==$AIRFLOW_VERSION" "apache-airflow-providers-apache-spark==$SPARK_PROVIDER_VERSION"
"$VENV/bin/python" -c "$CHECK" > /dev/null 2>&1 || { echo "setup-airflow: $VENV does not import airflow" >&2; exit 1; }
echo "setup-airflow: $VENV ready (apache-airflow $AIRFLOW_VERSION) in $(( $(date +%s) - started ))s"
