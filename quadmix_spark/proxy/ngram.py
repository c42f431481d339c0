"""A smoothed n-gram language model over token ids: the cheap stand-in for the 1M-param proxy.

The proxy's job (quadmix.md §4) is to turn a selected token stream into "the loss on every
configured evaluation set at several training steps". A count-based model does that in seconds
instead of a GPU-hour, and it still ranks data mixtures by how well their token statistics cover
the evaluation text.

Counting is pure numpy: an n-gram ``(t_1, …, t_k)`` is packed into one int64 key
``Σ t_i · V^(k−i)``, so every table is a sorted key array plus a count array, merges are
``np.unique`` on concatenations and look-ups are ``np.searchsorted``. No Python object per token.

Smoothing
---------
``"kneser_ney"`` (default): interpolated Kneser-Ney (Chen & Goodman 1998) with one absolute
discount per order, ``D = n1 / (n1 + 2·n2)`` from that order's count-of-counts, clipped to
[0.05, 0.95]. The highest order uses raw counts, lower orders continuation counts (the number of
distinct left extensions), and the unigram level is interpolated with the uniform 1/V, so every
token id below ``vocab_size`` has non-zero probability::

    p_k(w | h) = (max(c_k(h w) − D_k, 0) + D_k · N1+(h ·) · p_{k−1}(w | h')) / Σ_v c_k(h v)
    p_k(w | h) = p_{k−1}(w | h')                     if h was never seen at level k
    p_0(w)     = 1 / V

``"additive"``: add-``add_k`` smoothing of the highest order alone,
``(c(h w) + add_k) / (c(h) + add_k · V)``: a transparent baseline, much worse than Kneser-Ney at
V ≈ 100k.

Both are exactly normalised over the V token ids for every context (tested).

Evaluation
----------
Every token of an evaluation array is scored; the first ``order − 1`` tokens, which lack a full
context, are scored with the shorter context they have (the level-k distribution). The loss is the
mean negative log-probability in nats per token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .estimator import EstimatorTrainer
from .inputs import fit_inputs, token_array

__all__ = ["CL100K_N_VOCAB", "NgramProxy", "NgramTrainer"]

#: ``n_vocab`` of the cl100k_base encoding (bpe_openai), the default tokenizer of the pipeline.
CL100K_N_VOCAB = 100_277
_SMOOTHINGS = ("kneser_ney", "additive")
_D_MIN, _D_MAX, _D_FALLBACK = 0.05, 0.95, 0.75
_KEY_LIMIT = 2**62  # V**order must stay below this so packed keys fit in int64


@dataclass(frozen=True)
class _Table:
    """One order's conditional-distribution table; all arrays sorted by key."""

    keys: NDArray[np.int64]  # packed k-grams
    counts: NDArray[np.int64]  # raw or continuation counts, all >= 1
    ctx_keys: NDArray[np.int64]  # packed (k-1)-gram contexts present in ``keys``
    ctx_total: NDArray[np.int64]  # Σ_w counts[h w]
    ctx_types: NDArray[np.int64]  # N1+(h ·): number of distinct w after h
    discount: float


def _lookup(
    keys: NDArray[np.int64], values: NDArray[np.int64], query: NDArray[np.int64]
) -> NDArray[np.int64]:
    """``values`` at ``query`` in the sorted ``keys``, 0 where absent."""
    if keys.size == 0:
        return np.zeros(query.shape, dtype=np.int64)
    idx = np.searchsorted(keys, query)
    idx_c = np.minimum(idx, keys.size - 1)
    return np.where(keys[idx_c] == query, values[idx_c], 0)


def _table(keys: NDArray[np.int64], counts: NDArray[np.int64], vocab: int, discount: float | None) -> _Table:
    ctx = keys // vocab  # keys sorted => contexts sorted, so groups are contiguous
    if keys.size:
        ctx_keys, start, ctx_types = np.unique(ctx, return_index=True, return_counts=True)
        ctx_total = np.add.reduceat(counts, start)
    else:
        ctx_keys = ctx_types = ctx_total = np.zeros(0, dtype=np.int64)
    if discount is None:
        n1 = int(np.count_nonzero(counts == 1))
        n2 = int(np.count_nonzero(counts == 2))
        d = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else _D_FALLBACK
        discount = float(np.clip(d, _D_MIN, _D_MAX))
    return _Table(keys, counts, ctx_keys, ctx_total.astype(np.int64), ctx_types.astype(np.int64), discount)


class NgramProxy:
    """Smoothed n-gram LM trained on growing prefixes of a token stream.

    Parameters
    ----------
    order : int
        n of the n-gram (1 = unigram, 2 = bigram, 3 = trigram, …); ``vocab_size**order`` must be
        below 2**62 (order ≤ 3 at V ≈ 100k).
    smoothing : ``"kneser_ney"`` | ``"additive"``
        See the module docstring.
    vocab_size : int
        V: token ids must lie in [0, V). Losses depend on V (the uniform floor), so compare runs
        only at the same V. Default: cl100k_base's ``n_vocab``.
    discount : float in (0, 1], optional
        Fixed Kneser-Ney discount for every order instead of the count-of-counts estimate.
    add_k : float > 0
        Pseudo-count of ``"additive"`` smoothing.

    Attributes (after :meth:`fit`)
    ------------------------------
    losses_ : list of dict
        One record ``{"step_tokens": int, "eval_set": str, "loss": float}`` per checkpoint and
        evaluation set, in checkpoint order then ``eval_sets`` order; loss in nats/token.
    n_train_tokens_ : int
        Tokens seen by the final model (the last checkpoint).
    """

    def __init__(
        self,
        order: int = 2,
        smoothing: Literal["kneser_ney", "additive"] = "kneser_ney",
        vocab_size: int = CL100K_N_VOCAB,
        *,
        discount: float | None = None,
        add_k: float = 1.0,
    ) -> None:
        if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}")
        if smoothing not in _SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {_SMOOTHINGS}, got {smoothing!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int | np.integer) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        if int(vocab_size) ** int(order) >= _KEY_LIMIT:
            raise ValueError(
                f"vocab_size**order = {vocab_size}**{order} does not fit an int64 key; lower the order"
            )
        if discount is not None and not (0.0 < discount <= 1.0):
            raise ValueError(f"discount must be in (0, 1] or None, got {discount!r}")
        if not (add_k > 0.0 and np.isfinite(add_k)):
            raise ValueError(f"add_k must be a finite number > 0, got {add_k!r}")
        self.order = int(order)
        self.smoothing = smoothing
        self.vocab_size = int(vocab_size)
        self.discount = discount
        self.add_k = float(add_k)

    # -- input checks --------------------------------------------------------------------
    def _tokens(self, tokens: ArrayLike, what: str) -> NDArray[np.int64]:
        return token_array(tokens, self.vocab_size, what)

    # -- counting ------------------------------------------------------------------------
    def _pack(self, tokens: NDArray[np.int64], k: int, first: int, stop: int) -> NDArray[np.int64]:
        """Keys of the k-grams ending at positions [max(first, k−1), stop)."""
        begin = max(first, k - 1)
        if begin >= stop:
            return np.zeros(0, dtype=np.int64)
        keys = tokens[begin - k + 1 : stop - k + 1].copy()
        for j in range(1, k):
            keys *= self.vocab_size
            keys += tokens[begin - k + 1 + j : stop - k + 1 + j]
        return keys

    def _add_counts(self, tokens: NDArray[np.int64], first: int, stop: int) -> None:
        for k in range(1, self.order + 1):
            new_keys, new_counts = np.unique(self._pack(tokens, k, first, stop), return_counts=True)
            old_keys, old_counts = self._raw[k - 1]
            keys, inverse = np.unique(np.concatenate([old_keys, new_keys]), return_inverse=True)
            # Float weights are exact for counts < 2**53; bincount is much faster than np.add.at.
            weights = np.concatenate([old_counts, new_counts]).astype(np.float64)
            counts = np.bincount(inverse, weights=weights, minlength=keys.size).astype(np.int64)
            self._raw[k - 1] = (keys, counts)

    def _build_tables(self) -> None:
        """Conditional tables of orders 1..n from the raw counts."""
        v, n = self.vocab_size, self.order
        tables: list[_Table] = []
        for k in range(1, n + 1):
            if self.smoothing == "additive" or k == n:
                keys, counts = self._raw[k - 1]
            else:
                # Continuation count of a k-gram = number of distinct (k+1)-grams it ends.
                keys, counts = np.unique(self._raw[k][0] % v**k, return_counts=True)
            tables.append(_table(keys, counts.astype(np.int64), v, self.discount))
        self._tables = tables

    # -- scoring ---------------------------------------------------------------------------
    def _cond_prob(self, windows: NDArray[np.int64]) -> NDArray[np.float64]:
        """p(w | h) for rows ``windows = (h_1, …, h_{k−1}, w)``, shape (L, k), k ≤ order."""
        v, width = self.vocab_size, windows.shape[1]
        w = windows[:, -1]
        if self.smoothing == "additive":
            t = self._tables[width - 1]
            key = np.zeros(len(windows), dtype=np.int64)
            for j in range(width):
                key = key * v + windows[:, j]
            c = _lookup(t.keys, t.counts, key)
            total = _lookup(t.ctx_keys, t.ctx_total, key // v)
            return (c + self.add_k) / (total + self.add_k * v)
        p = np.full(len(windows), 1.0 / v)
        key = w.copy()
        for k in range(1, width + 1):
            if k > 1:  # extend the key one token to the left
                key = key + windows[:, width - k] * v ** (k - 1)
            t = self._tables[k - 1]
            c = _lookup(t.keys, t.counts, key)
            ctx = key // v  # 0 for every unigram: one shared empty context
            total = _lookup(t.ctx_keys, t.ctx_total, ctx)
            types = _lookup(t.ctx_keys, t.ctx_types, ctx)
            seen = total > 0
            safe = np.where(seen, total, 1)
            interp = (np.maximum(c - t.discount, 0.0) + t.discount * types * p) / safe
            p = np.where(seen, interp, p)
        return p

    def _check_fitted(self) -> None:
        if not hasattr(self, "_tables"):
            raise RuntimeError("NgramProxy is not fitted; call fit() first")

    def token_log_probs(self, tokens: ArrayLike) -> NDArray[np.float64]:
        """Natural-log probability of every token, shape (L,), under the current model."""
        self._check_fitted()
        arr = self._tokens(tokens, "tokens")
        out = np.empty(arr.size, dtype=np.float64)
        for k in range(1, self.order + 1):
            # Positions k−1 .. end get width-k windows; only the full width is kept past the start.
            lo = k - 1
            hi = arr.size if k == self.order else min(k, arr.size)
            if lo >= hi:
                continue
            windows = np.stack([arr[lo - k + 1 + j : hi - k + 1 + j] for j in range(k)], axis=1)
            out[lo:hi] = np.log(self._cond_prob(windows))
        return out

    def score(self, tokens: ArrayLike) -> float:
        """Mean negative log-likelihood of ``tokens`` in nats/token (NaN for an empty array)."""
        lp = self.token_log_probs(tokens)
        return float(-lp.mean()) if lp.size else float("nan")

    def predict_proba(self, context: ArrayLike) -> NDArray[np.float64]:
        """p(w | context) for every w in [0, V), shape (V,); uses the last ``order − 1`` tokens."""
        self._check_fitted()
        ctx = self._tokens(context, "context")
        ctx = ctx[ctx.size - min(ctx.size, self.order - 1) :]
        words = np.arange(self.vocab_size, dtype=np.int64)
        windows = np.column_stack([np.broadcast_to(ctx, (self.vocab_size, ctx.size)), words])
        return self._cond_prob(windows)

    # -- training ----------------------------------------------------------------------------
    def fit(
        self,
        train_token_stream: ArrayLike,
        eval_sets: Mapping[str, ArrayLike] | None = None,
        checkpoints: Sequence[int] | None = None,
    ) -> NgramProxy:
        """Train on growing prefixes of the stream and record evaluation losses.

        Parameters
        ----------
        train_token_stream : 1-D int array (T,)
            The selected tokens, documents concatenated.
        eval_sets : mapping name -> 1-D int array, optional
            Evaluation token arrays; each is scored at every checkpoint.
        checkpoints : strictly increasing ints in [1, T], optional
            Training-token counts k at which the model (trained on the first k tokens) is
            evaluated. Counting is incremental: each checkpoint only counts the new tokens.
            Default: ``[T]``.

        Returns ``self``; the records are in :attr:`losses_`.
        """
        tokens, sets, steps = fit_inputs(train_token_stream, eval_sets, checkpoints, self.vocab_size)

        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._raw: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = [empty] * self.order
        records: list[dict[str, Any]] = []
        done = 0
        for step in steps:
            self._add_counts(tokens, done, step)
            done = step
            self._build_tables()
            for name, arr in sets.items():
                records.append({"step_tokens": step, "eval_set": name, "loss": self.score(arr)})
        self.losses_ = records
        self.n_train_tokens_ = done
        return self


class NgramTrainer(EstimatorTrainer):
    """The ``ngram`` trainer: :class:`NgramProxy` (interpolated Kneser-Ney), seconds per run."""

    name = "ngram"

    def __init__(self, order: int = 2, vocab_size: int | None = None) -> None:
        self.model = NgramProxy(order=order, vocab_size=vocab_size or CL100K_N_VOCAB)

    @classmethod
    def from_config(cls, cfg: Any) -> NgramTrainer:
        """From a :class:`quadmix_spark.config.ProxyConfig`."""
        return cls(order=cfg.ngram_order)
