#!/usr/bin/env bash
# spark-submit a quadmix job with this environment's Python and the Delta jars that setup recorded
# (or, when none were recorded, the Delta package to resolve). Options for spark-submit come first,
# then the job script and its arguments:
#
#   scripts/submit.sh --master spark://127.0.0.1:7077 jobs/annotate.py --config conf/demo.yaml
#
# QUADMIX_PYTHON: the interpreter for the driver and executors (default: .venv/bin/python here);
# it must exist at the same path on every node (a shared install, an image, or a packed env).
# A master on 127.0.0.1 or localhost sets SPARK_LOCAL_IP=127.0.0.1 for the driver (unless set).
# QUADMIX_PY_FILES: a built package (the wheel copied to a .zip) shipped to executors with
# --py-files, so they import the code from it instead of from their own install.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${QUADMIX_PYTHON:-$ROOT/.venv/bin/python}"
DELTA="$("$PYTHON" - <<'PY'
from quadmix_spark.spark.session import DELTA_PACKAGE, _jar_list_file
listing = _jar_list_file()
jars = listing.read_text().split() if listing.is_file() else []
print(f"--jars {','.join(jars)}" if jars else f"--packages {DELTA_PACKAGE}")
PY
)"
# A driver submitting to a master on the loopback address must bind there too: otherwise Spark
# binds the machine's first interface, which a master and worker on 127.0.0.1 cannot reach back.
MASTER=""
for ((i = 1; i <= $#; i++)); do
  case "${!i}" in
    --master) j=$((i + 1)); MASTER="${!j:-}" ;;
    --master=*) MASTER="${!i#--master=}" ;;
  esac
done
case "$MASTER" in
  spark://127.0.0.1:* | spark://localhost:*) export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}" ;;
esac
# pyspark's spark-submit finds its Spark home by running this interpreter.
export PYSPARK_PYTHON="$PYTHON" PYSPARK_DRIVER_PYTHON="$PYTHON"
# shellcheck disable=SC2086  # DELTA is two words: the option and its value
exec "$(dirname "$PYTHON")/spark-submit" $DELTA \
  --conf "spark.pyspark.python=$PYTHON" --conf "spark.pyspark.driver.python=$PYTHON" \
  ${QUADMIX_PY_FILES:+--py-files "$QUADMIX_PY_FILES"} "$@"
