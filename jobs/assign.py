"""spark-submit entry point: `spark-submit jobs/assign.py --config conf/demo.yaml`."""

import sys

from quadmix_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(command="assign"))
