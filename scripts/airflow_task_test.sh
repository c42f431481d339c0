#!/usr/bin/env bash
# One task of dags/quadmix_nightly.py run for real with `airflow tasks test`: the task's
# SparkSubmitOperator submits jobs/refresh.py to a standalone cluster on 127.0.0.1
# (scripts/standalone_cluster.py), for a small generated corpus whose annotators need no trained
# model. Airflow runs without a scheduler, in a throwaway AIRFLOW_HOME (SQLite); the Spark
# connection comes from AIRFLOW_CONN_SPARK_DEFAULT. Prints the task's log and the refresh_runs rows.
#
#   scripts/airflow_task_test.sh [TASK (annotate)] [RUN_DATE (2026-11-27)]
#
# Needs .venv (scripts/setup.sh) and .venv-airflow (scripts/setup_airflow.sh); QUADMIX_PYTHON,
# QUADMIX_AIRFLOW_VENV and QUADMIX_WORK (an empty folder) override where they are. About 2 minutes;
# tests/test_dag.py runs it. Exits non-zero unless refresh_runs records the step as done.
set -euo pipefail
cd "$(dirname "$0")/.."
HERE="$PWD"
TASK="${1:-annotate}"
RUN_DATE="${2:-2026-11-27}"
PY="${QUADMIX_PYTHON:-$HERE/.venv/bin/python}"  # the project's Python (pyspark's spark-submit beside it)
AIRFLOW_VENV="${QUADMIX_AIRFLOW_VENV:-.venv-airflow}"
[[ "$AIRFLOW_VENV" = /* ]] || AIRFLOW_VENV="$HERE/$AIRFLOW_VENV"
AIRFLOW="$AIRFLOW_VENV/bin/airflow"
WORK="${QUADMIX_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/quadmix-airflow-XXXXXX")}"
mkdir -p "$WORK"
echo "airflow-task-test: $TASK of $RUN_DATE in $WORK"

# Inputs: 300 documents of the demo generator, a uniform θ, a refresh config (as tests/test_cluster.py).
"$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import yaml

from quadmix_spark import core
from quadmix_spark.demo.corpus import write_corpus

work = Path(sys.argv[1])
scorers = {"frac_lines_end_punct": "higher_is_better", "dup_5gram_char_frac": "lower_is_better"}
summary = write_corpus(work / "corpus", n_docs=300, seed=0, malformed_rate=0.01)
core.save_params(core.uniform(sorted(summary["per_domain"]), list(scorers), omega=0.3), work / "theta.yaml")
config = {
    "warehouse": str(work / "warehouse"),
    "spark": {"app_name": "quadmix-airflow-task-test", "shuffle_partitions": 4},
    "annotate": {
        "input": {"path": str(work / "corpus"), "format": "jsonl", "keep_columns": ["true_domain"],
                  "skip_hidden_files": True},
        "annotators": [
            {"kind": "language_id", "name": "language", "column": "language"},
            {"kind": "heuristics", "name": "heuristics"},
            {"kind": "tokens", "name": "tokens", "column": "n_tokens", "tokenizer": "cl100k_base"},
        ],
    },
    "domain_column": "true_domain",
    "scorers": scorers,
    "select": {"params": str(work / "theta.yaml"), "output_dir": str(work / "selections")},
}
(work / "config.yaml").write_text(yaml.safe_dump(config))
EOF

"$PY" scripts/standalone_cluster.py start --work-dir "$WORK/cluster" | tee "$WORK/cluster.txt"
trap '"$PY" scripts/standalone_cluster.py stop --work-dir "$WORK/cluster"' EXIT
MASTER="$(awk '{print $2; exit}' "$WORK/cluster.txt")"  # spark://127.0.0.1:PORT

export AIRFLOW_HOME="$WORK/airflow" AIRFLOW__CORE__DAGS_FOLDER="$HERE/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
export QUADMIX_HOME="$HERE" QUADMIX_CONFIG="$WORK/config.yaml" QUADMIX_PYTHON="$PY"
HOST="${MASTER%:*}" PORT="${MASTER##*:}"
export AIRFLOW_CONN_SPARK_DEFAULT="{\"conn_type\": \"spark\", \"host\": \"$HOST\", \"port\": $PORT, \"extra\": {\"deploy-mode\": \"client\"}}"
export PATH="$(dirname "$PY"):$PATH"  # the spark-submit the operator runs: pyspark's
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"  # the driver imports this checkout
"$AIRFLOW" db migrate > "$WORK/db-migrate.log" 2>&1
(cd "$WORK" && "$AIRFLOW" tasks test quadmix_nightly "$TASK" "$RUN_DATE")

"$PY" - "$WORK" "$TASK" <<'EOF'
import sys

from quadmix_spark.config import load_config
from quadmix_spark.spark.session import build_session

config = load_config(f"{sys.argv[1]}/config.yaml")
spark = build_session(master="local[1]", warehouse=config.warehouse)
spark.sparkContext.setLogLevel("ERROR")
runs = spark.read.format("delta").load(config.table_path("refresh_runs"))
columns = ["run_date", "attempt", "step", "status", "annotated_version", "quarantine_version", "details"]
rows = runs.orderBy("recorded_at").select(*columns)
rows.show(truncate=70)
step = rows.where(f"step = '{sys.argv[2]}'").collect()
if not step or step[-1]["status"] != "done":  # airflow tasks test exits 0 on a failed task
    sys.exit(f"airflow-task-test: the {sys.argv[2]} step is not recorded as done")
print(f"airflow-task-test: {sys.argv[2]} done")
EOF
