"""Proxy trainers behind one interface: token stream + evaluation sets → losses per checkpoint.

A trainer is built from its config on a Spark worker and trains one proxy run::

    trainer = make_trainer(config.proxy)
    records = trainer.train(stream, eval_sets, checkpoints)
    # [{"step_tokens": 1000, "eval_set": "heldout:news", "loss": 5.81}, ...]

``stream`` is the run's training tokens (1-D int64, documents concatenated, already cut to the
token budget); ``eval_sets`` maps a name to a 1-D int64 token array; ``checkpoints`` are strictly
increasing token counts in [1, len(stream)]. Losses are mean negative log-likelihoods in
nats/token. Runs trained elsewhere come in through :mod:`quadmix_spark.proxy.runs` (``external``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .ngram import CL100K_N_VOCAB, NgramProxy

__all__ = ["EstimatorTrainer", "NgramTrainer", "ProxyTrainer", "checkpoints_for", "make_trainer"]


class ProxyTrainer(Protocol):
    name: str

    def train(
        self,
        stream: NDArray[np.int64],
        eval_sets: Mapping[str, NDArray[np.int64]],
        checkpoints: Sequence[int],
    ) -> list[dict[str, Any]]: ...


class EstimatorTrainer:
    """A trainer around an estimator whose ``fit(stream, eval_sets, checkpoints)`` sets ``losses_``."""

    name = ""
    model: Any

    def train(
        self,
        stream: NDArray[np.int64],
        eval_sets: Mapping[str, NDArray[np.int64]],
        checkpoints: Sequence[int],
    ) -> list[dict[str, Any]]:
        return list(self.model.fit(stream, eval_sets, checkpoints).losses_)


class NgramTrainer(EstimatorTrainer):
    """The ``ngram`` trainer: :class:`NgramProxy` (interpolated Kneser-Ney), seconds per run."""

    name = "ngram"

    def __init__(self, order: int = 2, vocab_size: int | None = None) -> None:
        self.model = NgramProxy(order=order, vocab_size=vocab_size or CL100K_N_VOCAB)


def checkpoints_for(n_tokens: int, n_checkpoints: int) -> list[int]:
    """``n_checkpoints`` token counts, geometric (halving) from the end: …, T/4, T/2, T."""
    if n_tokens < 1:
        raise ValueError("the training stream is empty")
    steps = sorted({max(1, n_tokens >> i) for i in range(n_checkpoints)})
    return steps


def make_trainer(cfg: Any) -> ProxyTrainer:
    """The trainer named by ``cfg.trainer`` (a :class:`quadmix_spark.config.ProxyConfig`)."""
    if cfg.trainer == "ngram":
        return NgramTrainer(order=cfg.ngram_order)
    if cfg.trainer == "tinylm":
        from .tinylm import TinyLMTrainer  # PyTorch is an optional extra

        return TinyLMTrainer(**vars(cfg.tinylm))
    raise ValueError(f"proxy.trainer: unknown trainer {cfg.trainer!r} (ngram, tinylm)")
