"""Proxy trainers by name: the ``proxy.trainer`` config key → a trainer built on a Spark worker.

A trainer is built from its config and trains one proxy run::

    trainer = make_trainer(config.proxy)
    records = trainer.train(stream, eval_sets, checkpoints)
    # [{"step_tokens": 1000, "eval_set": "heldout:news", "loss": 5.81}, ...]

(the interface: :mod:`quadmix_spark.proxy.estimator`). The registry names each trainer's module
and class, so a trainer's module is imported only when it is used: ``tinylm`` needs PyTorch, an
optional extra. Runs trained elsewhere come in through ``quadmix import-runs`` (``external``).
"""

from __future__ import annotations

import importlib
from typing import Any

from .estimator import ProxyTrainer

__all__ = ["TRAINERS", "checkpoints_for", "make_trainer"]

#: trainer name → (module, class); the class has ``from_config(proxy_config)``.
TRAINERS = {
    "ngram": ("quadmix_spark.proxy.ngram", "NgramTrainer"),
    "tinylm": ("quadmix_spark.proxy.tinylm", "TinyLMTrainer"),
}


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
    if cfg.trainer not in TRAINERS:
        raise ValueError(f"proxy.trainer: unknown trainer {cfg.trainer!r} ({', '.join(TRAINERS)})")
    module, cls = TRAINERS[cfg.trainer]
    return getattr(importlib.import_module(module), cls).from_config(cfg, **extra)
