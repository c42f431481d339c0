"""spark-submit entry point: `spark-submit jobs/refresh.py --config conf/demo.yaml --run-date 2026-11-27`."""

import sys

from quadmix_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(command="refresh"))
