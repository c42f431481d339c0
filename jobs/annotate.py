"""spark-submit entry point: `spark-submit jobs/annotate.py --config conf/<file>.yaml [--set key=value]`."""

import sys

from quadmix_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(command="annotate"))
