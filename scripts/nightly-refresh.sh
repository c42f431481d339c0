#!/usr/bin/env bash
# The nightly refresh for machines without Airflow: `quadmix refresh` of today's UTC date (or the
# date given), retried, never two at once. A crontab line (crontab -e), 02:00 UTC every night:
#
#   0 2 * * *  cd /srv/quadmix && /opt/quadmix/scripts/nightly-refresh.sh >> /var/log/quadmix-refresh.log 2>&1
#
# It runs in the current directory (relative paths of the config resolve there; cron starts in $HOME).
# Each try resumes where the last one stopped (refresh_runs records every step), and a date already
# done prints "nothing to do". On a cluster, set QUADMIX_RUN to the spark-submit line, e.g.
#   QUADMIX_RUN="spark-submit --master spark://host:7077 --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/refresh.py"
# Settings: QUADMIX_CONFIG [conf/demo.yaml], QUADMIX_TRIES [3], QUADMIX_RETRY_DELAY seconds [600].
set -uo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"

RUN_DATE="${1:-$(date -u +%F)}"
CONFIG="${QUADMIX_CONFIG:-conf/demo.yaml}"
RUN="${QUADMIX_RUN:-$HERE/.venv/bin/quadmix refresh}"
TRIES="${QUADMIX_TRIES:-3}"
DELAY="${QUADMIX_RETRY_DELAY:-600}"

exec 9> "${TMPDIR:-/tmp}/quadmix-refresh.lock"
flock -n 9 || { echo "nightly-refresh: another refresh is running; not starting $RUN_DATE" >&2; exit 1; }
for try in $(seq 1 "$TRIES"); do
  echo "nightly-refresh: $RUN_DATE, try $try of $TRIES ($(date -u +%FT%TZ))"
  # shellcheck disable=SC2086  # QUADMIX_RUN is a command line
  $RUN --config "$CONFIG" --run-date "$RUN_DATE" && exit 0
  code=$?
  [ "$code" -eq 2 ] && exit 2  # a configuration error: retrying will not help
  [ "$try" -lt "$TRIES" ] && sleep "$DELAY"
done
echo "nightly-refresh: $RUN_DATE failed $TRIES times" >&2
exit 1
