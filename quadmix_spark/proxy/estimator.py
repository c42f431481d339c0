"""The proxy trainer interface: token stream + evaluation sets → losses per checkpoint.

``stream`` is a run's training tokens (1-D int64, documents concatenated, already cut to the
token budget); ``eval_sets`` maps a name to a 1-D int64 token array; ``checkpoints`` are strictly
increasing token counts in [1, len(stream)]. ``train`` returns one record per (checkpoint, eval
set): ``{"step_tokens": 1000, "eval_set": "heldout:news", "loss": 5.81}``, losses being mean
negative log-likelihoods in nats/token. Trainer modules (ngram, tinylm) build on this one;
:mod:`quadmix_spark.proxy.trainers` finds them by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["EstimatorTrainer", "ProxyTrainer"]


class ProxyTrainer(Protocol):
    name: str
    #: the ProxyConfig key of the trainer's proxy vocabulary (``full`` | ``top:N``), e.g.
    #: ``"tinylm.vocab"``; None: it reads the tokenizer's ids. Runs check it before any training.
    vocab_setting: str | None

    def train(
        self,
        stream: NDArray[np.int64],
        eval_sets: Mapping[str, NDArray[np.int64]],
        checkpoints: Sequence[int],
    ) -> list[dict[str, Any]]: ...


class EstimatorTrainer:
    """A trainer around an estimator whose ``fit(stream, eval_sets, checkpoints)`` sets ``losses_``."""

    name = ""
    vocab_setting: str | None = None
    model: Any

    def train(
        self,
        stream: NDArray[np.int64],
        eval_sets: Mapping[str, NDArray[np.int64]],
        checkpoints: Sequence[int],
    ) -> list[dict[str, Any]]:
        return list(self.model.fit(stream, eval_sets, checkpoints).losses_)
