"""Classes from outside the installed packages, shipped to Spark's Python workers by value.

A job sends configured objects (annotators, reweighting methods, proxy trainers) to the workers
inside its closures. cloudpickle pickles a class by reference when its module is importable, so
a worker imports it: fine for this project, the standard library and installed distributions,
which every worker has. A class defined elsewhere (a test module, a notebook, a module beside a
script) is not on the workers' path; :func:`ship` registers its module with Spark's cloudpickle
to be pickled by value, so that a class registered from such a module runs in Spark tasks like a
built-in one. ``__main__`` is pickled by value by cloudpickle itself.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib.metadata import packages_distributions

__all__ = ["ship"]


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
