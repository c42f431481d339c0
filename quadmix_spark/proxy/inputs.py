"""Input checks shared by the proxy models: token arrays and checkpoint lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray


def token_array(tokens: ArrayLike, vocab_size: int, what: str) -> NDArray[np.int64]:
    """``tokens`` as a 1-D int64 array of ids in [0, vocab_size), or a ValueError naming ``what``."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of token ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integer token ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(
            f"{what}: token ids must be in [0, {vocab_size}), got range [{arr.min()}, {arr.max()}]"
        )
    return arr


def fit_inputs(
    train_token_stream: ArrayLike,
    eval_sets: Mapping[str, ArrayLike] | None,
    checkpoints: Sequence[int] | None,
    vocab_size: int,
) -> tuple[NDArray[np.int64], dict[str, NDArray[np.int64]], list[int]]:
    """The checked arguments of a proxy's ``fit``: stream (T,), eval sets, checkpoints in [1, T]."""
    tokens = token_array(train_token_stream, vocab_size, "train_token_stream")
    if tokens.size == 0:
        raise ValueError("train_token_stream is empty")
    sets = {
        str(name): token_array(arr, vocab_size, f"eval_sets[{name!r}]")
        for name, arr in (eval_sets or {}).items()
    }
    steps = [tokens.size] if checkpoints is None else [int(c) for c in checkpoints]
    if not steps:
        raise ValueError("checkpoints must not be empty")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"checkpoints must be strictly increasing, got {steps}")
    if steps[0] < 1 or steps[-1] > tokens.size:
        raise ValueError(f"checkpoints must lie in [1, {tokens.size}] (stream length), got {steps}")
    return tokens, sets, steps
