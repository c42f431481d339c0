"""Surrogates over proxy runs and the candidate search, on the driver (numpy, SciPy, LightGBM,
scikit-learn; no Spark).

Importing the package registers the built-in regressor families: ``lightgbm``, ``loglinear``,
``gp`` and ``linear`` (:mod:`quadmix_spark.search.regressors`).
"""

from quadmix_spark.search import gaussian_process, linear, loglinear, regression  # noqa: F401
from quadmix_spark.search.regressors import REGRESSORS, Regressor, make_regressor, register

__all__ = ["REGRESSORS", "Regressor", "make_regressor", "register"]
