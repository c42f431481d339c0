"""SparkSession factory: Spark local mode with Delta by default, spark-submit's settings when present."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import SparkSession

from quadmix_spark.config import ConfigError

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# Since Delta 4.1 the artifact carries the Spark minor version; keep in step with the pyspark pin.
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"

# Settings a local run needs that a cluster operator sets for themselves.
_LOCAL_DEFAULTS = {
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "4g",
}


_LOG4J = Path(__file__).with_name("log4j2.properties")


class DeltaJarsMissing(RuntimeError):
    """The Delta Lake jars are not on the JVM classpath."""


def under_spark_submit() -> bool:
    """True when spark-submit launched this Python process (it passes the gateway port)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def with_local_retries(master: str, max_failures: int) -> str:
    """``local`` / ``local[N]`` / ``local[*]`` as ``local[N,max_failures]``; other masters unchanged.

    Local mode ignores ``spark.task.maxFailures``: its attempts per task are the master string's
    second number, and one by default, so a single crashed Python worker would fail the job.
    """
    found = re.fullmatch(r"local(?:\[(\d+|\*)\])?", master.strip())
    if found is None:
        return master
    return f"local[{found.group(1) or 1},{max_failures}]"


def local_cores(master: str) -> int | None:
    """Threads of a ``local`` / ``local[N]`` / ``local[*]`` / ``local[N,F]`` master; None for a cluster."""
    found = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\d+)?\])?", master.strip())
    if found is None:
        return None
    threads = found.group(1) or "1"
    return os.cpu_count() or 1 if threads == "*" else int(threads)


def build_session(
    app_name: str = "quadmix",
    master: str = "local[2]",
    warehouse: str | Path = "warehouse",
    conf: Mapping[str, str] | None = None,
    local_max_failures: int = 4,
) -> SparkSession:
    """Return a SparkSession with Delta Lake enabled.

    In local mode (the default) the session runs ``master`` with the Delta jars resolved through
    Spark's Ivy cache (``scripts/setup.sh`` fills it) and a warehouse directory under ``warehouse``.
    A ``local[N]`` master gets ``local_max_failures`` attempts per task (:func:`with_local_retries`).
    Under spark-submit the master, deploy mode and jars given there win; only the Delta SQL
    extension and catalog are added, and a missing Delta jar is a clear error.
    """
    builder = SparkSession.builder.appName(app_name)
    settings: dict[str, str] = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
    }
    if not under_spark_submit():
        # Workers must run this interpreter: the system python3 has none of our packages.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings.update(_LOCAL_DEFAULTS)
        settings["spark.master"] = with_local_retries(master, local_max_failures)
        # Delta rebuilds a table's state in 50 tasks by default, after every commit: sized for
        # clusters and long logs, it costs seconds per write on a few local cores.
        settings["spark.databricks.delta.snapshotPartitions"] = str(local_cores(master) or 1)
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j.configurationFile={_LOG4J}"
        settings.update(_delta_jars_setting())
        settings["spark.sql.warehouse.dir"] = str(Path(warehouse).resolve())
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    _check_delta(spark)
    return spark


def _jar_list_file() -> Path:
    # Beside the interpreter: the list belongs to this environment's pyspark/delta-spark pair.
    return Path(sys.prefix) / f"quadmix-jars-{DELTA_PACKAGE.replace(':', '_')}.txt"


def _delta_jars_setting() -> dict[str, str]:
    """Local jar paths when setup recorded them (no Ivy resolution per job), else the package."""
    listing = _jar_list_file()
    if listing.is_file():
        jars = listing.read_text().split()
        if jars and all(Path(j.removeprefix("file:")).is_file() for j in jars):
            return {"spark.jars": ",".join(jars)}
    return {"spark.jars.packages": DELTA_PACKAGE}


def _check_delta(spark: SparkSession) -> None:
    from delta.tables import DeltaTable

    try:
        DeltaTable.isDeltaTable(spark, "file:///nonexistent-quadmix-probe")
    except Exception as err:
        # Only missing classes send the user to setup: any other error (a Spark setting Spark
        # refuses, INVALID_CONF_VALUE) is Spark's own, raised as Spark gave it.
        if _delta_classes_present(spark):
            _raise_refused_setting(err)
            raise
        raise DeltaJarsMissing(
            "Delta Lake classes are not on the classpath. Locally, run scripts/setup.sh to resolve "
            f"{DELTA_PACKAGE}; under spark-submit pass --packages {DELTA_PACKAGE} "
            "(or --jars with local paths on an offline cluster)."
        ) from err


def _raise_refused_setting(err: Exception) -> None:
    """A setting Spark refuses, as a config error saying which: the JVM buries it under a stack."""
    found = re.search(r"\[INVALID_CONF_VALUE[^\]]*\][^\n\t]*", str(err))
    if found is not None:
        raise ConfigError(
            f"spark.conf: Spark refuses a setting (from spark.conf or spark-submit's --conf): "
            f"{found.group(0).strip()}"
        ) from err


def _delta_classes_present(spark: SparkSession) -> bool:
    """Whether the JVM finds Delta's classes, looked up as delta's Python API looks them up."""
    from py4j.java_gateway import JavaClass

    jvm = spark.sparkContext._jvm
    # py4j answers a package (not a class) for a name it cannot load.
    return jvm is not None and isinstance(jvm.io.delta.tables.DeltaTable, JavaClass)


def resolve_jars() -> None:
    """Start and stop a session once so Ivy downloads the Delta jars (run during setup)."""
    _jar_list_file().unlink(missing_ok=True)
    spark = build_session(app_name="quadmix-resolve-jars", master="local[1]")
    version = spark.version
    # spark-submit's Ivy step put the resolved jars' local paths into spark.jars: keep them.
    jars = spark.sparkContext.getConf().get("spark.jars", "")
    spark.stop()
    _jar_list_file().write_text("\n".join(j for j in jars.split(",") if j) + "\n")
    print(f"Delta jars resolved ({DELTA_PACKAGE}) for Spark {version}: {len(jars.split(','))} jars")


if __name__ == "__main__":
    resolve_jars()
