"""What a job ships to Spark's Python workers: classes from outside the installed packages, by
value (:func:`ship`), and model files under names unique to their contents (:func:`ship_file`).

A job sends configured objects (annotators, reweighting methods, proxy trainers) to the workers
inside its closures. cloudpickle pickles a class by reference when its module is importable, so
a worker imports it: fine for this project, the standard library and installed distributions,
which every worker has. A class defined elsewhere (a test module, a notebook, a module beside a
script) is not on the workers' path; :func:`ship` registers its module with Spark's cloudpickle
to be pickled by value, so that a class registered from such a module runs in Spark tasks like a
built-in one. ``__main__`` is pickled by value by cloudpickle itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from functools import lru_cache
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

__all__ = ["ship", "ship_file"]


@lru_cache(maxsize=1)
def _importable_everywhere() -> frozenset[str]:
    """Top-level names every worker imports: the standard library, installed distributions, ours."""
    ours = (__name__.partition(".")[0], "udfs")
    return frozenset([*sys.stdlib_module_names, *packages_distributions(), "__main__", *ours])


def ship(*classes: type) -> None:
    """Let ``classes`` reach the Python workers: by value when no worker could import them."""
    from pyspark import cloudpickle

    for cls in classes:
        module = sys.modules.get(cls.__module__)
        if module is not None and cls.__module__.partition(".")[0] not in _importable_everywhere():
            cloudpickle.register_pickle_by_value(module)


def ship_file(spark: Any, path: str) -> str:
    """Ship the local file ``path`` to the workers (``SparkContext.addFile``); the path to give them.

    Workers find a shipped file by its name alone, and an executor refuses, for every later task
    of the session, a name it already holds with other contents ("exists and does not match"):
    two models named ``domain.bin`` in one session, or one retrained in place, would break it.
    So the file is shipped as ``<digest>-<name>``, the digest taken over its resolved path, size
    and modification time (a retrained model gets a new name; hashing the contents of a model of
    gigabytes would cost seconds per job). The copy is a hard link where the file system allows.
    """
    source = Path(path).resolve()
    stat = source.stat()
    digest = hashlib.sha256(f"{source}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    shipped = Path(tempfile.gettempdir()) / "quadmix-shipped" / f"{digest}-{source.name}"
    if not shipped.exists():
        shipped.parent.mkdir(parents=True, exist_ok=True)
        partial = shipped.with_name(f".{shipped.name}.{os.getpid()}")
        try:
            os.link(source, partial)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, partial)
        os.replace(partial, shipped)
    spark.sparkContext.addFile(str(shipped))
    return str(shipped)
