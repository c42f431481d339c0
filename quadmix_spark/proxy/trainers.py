"""Proxy trainers by name: the ``proxy.trainer`` config key → a trainer built on a Spark worker.

A trainer is built from its config and trains one proxy run::

    trainer = make_trainer(config.proxy)
    records = trainer.train(stream, eval_sets, checkpoints)
    # [{"step_tokens": 1000, "eval_set": "heldout:news", "loss": 5.81}, ...]

(the interface: :mod:`quadmix_spark.proxy.estimator`). :data:`TRAINERS` is the one registry of
trainers; config validation and the proxy runs ask it. The built-in entries name their module
and class, so a trainer's module is imported only when it is used: ``tinylm`` needs PyTorch, an
optional extra. Runs trained elsewhere come in through ``quadmix import-runs`` (``external``).

Adding a trainer: a class with ``name``, ``train`` and ``from_config(proxy_config)`` (an
:class:`~quadmix_spark.proxy.estimator.EstimatorTrainer` is the short way), and one registration:
``TRAINERS.register("mine", "my.module:MyTrainer")`` here, or ``TRAINERS.register("mine", MyTrainer)``
from anywhere.
"""

from __future__ import annotations

from typing import Any

from quadmix_spark.core.registry import Registry

from .estimator import ProxyTrainer

__all__ = ["TRAINERS", "checkpoints_for", "make_trainer"]

#: trainer name → class (``from_config(proxy_config, **extra)``), imported on first use.
TRAINERS = Registry("trainer")
TRAINERS.register("ngram", "quadmix_spark.proxy.ngram:NgramTrainer")
TRAINERS.register("tinylm", "quadmix_spark.proxy.tinylm:TinyLMTrainer")


def checkpoints_for(n_tokens: int, n_checkpoints: int) -> list[int]:
    """``n_checkpoints`` token counts, geometric (halving) from the end: …, T/4, T/2, T."""
    if n_tokens < 1:
        raise ValueError("the training stream is empty")
    steps = sorted({max(1, n_tokens >> i) for i in range(n_checkpoints)})
    return steps


def make_trainer(cfg: Any, **extra: Any) -> ProxyTrainer:
    """The trainer named by ``cfg.trainer`` (a :class:`quadmix_spark.config.ProxyConfig`).

    ``extra`` goes to the trainer's ``from_config`` (tinylm: ``vocab``, a proxy vocabulary).
    """
    return TRAINERS.get(cfg.trainer, "proxy.trainer").from_config(cfg, **extra)
