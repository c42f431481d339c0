"""The online reweighting methods by name: ``reweight.methods``, ``quadmix reweight --method``.

Every method is an :class:`~quadmix_spark.mixing.reweighting.OnlineReweighter`: built from its
keyword arguments (the tinylm shape, ``seed``, ``vocab`` and its own hyperparameters, the sets of
``reweight.params.<name>``), fitted with ``fit(train_streams, val_streams=None)`` and read with
``result()``. The config, the command line and the reweight job ask this registry; no other file
spells the names.

Adding a method: one class beside the others and one line here, or, from anywhere::

    from quadmix_spark.mixing.reweighters import REWEIGHTERS

    @REWEIGHTERS.register("mine")
    class Mine(OnlineReweighter): ...

The built-in entries name their module, imported on first use: TANDEM and DoReMi need PyTorch.
A class defined outside an installed package (a script, a notebook, a test module) reaches the
Spark workers by value (:func:`quadmix_spark.spark.runs_table.ship`).
"""

from __future__ import annotations

from quadmix_spark.core.registry import Registry

__all__ = ["BUILT_IN", "REWEIGHTERS"]

REWEIGHTERS = Registry("reweighting method")
REWEIGHTERS.register("tandem", "quadmix_spark.mixing.tandem:Tandem")
REWEIGHTERS.register("doremi", "quadmix_spark.mixing.doremi:DoReMi")
REWEIGHTERS.register("uniform", "quadmix_spark.mixing.reweighting:Uniform")

#: the methods that come with the package: ``reweight.methods``'s default.
BUILT_IN = REWEIGHTERS.names()
