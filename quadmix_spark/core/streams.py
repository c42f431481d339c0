"""Per-domain token streams and the streams a mixture draws from them: the numpy specification.

A domain's stream is its documents in a fixed hash order, each followed by the tokenizer's
end-of-text id, cut to a number of tokens (:func:`domain_stream`). The order key of a document is
``(hash_uniform(doc_key, seed, STREAMS_STREAM), doc_key)``, so the stream depends on the documents
and the seed only, never on partitioning; and the first documents of the order are the same
whatever the cut, so a stream cut short (a data-restricted domain) is a prefix of the longer one.

A mixture's training stream (:func:`mixture_stream`) takes ``round(n × share_d)`` tokens from
each domain's stream, cyclically: a domain whose stream is shorter than its take is repeated
(``take / len`` epochs), which is how data-restricted domains repeat. The taken tokens are cut
into pieces and the pieces interleaved in a hash order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .sampling import STREAMS_STREAM, hash_uniform

__all__ = ["domain_stream", "mixture_stream", "split_tokens", "stream_order"]


def stream_order(doc_keys: ArrayLike, seed: int) -> NDArray[np.int64]:
    """Indices of ``doc_keys`` (n,) in stream order: ``hash_uniform(key, seed, STREAMS_STREAM)``, then key."""
    keys = np.asarray(doc_keys, dtype=np.int64)
    return np.lexsort((keys, hash_uniform(keys, seed, STREAMS_STREAM))).astype(np.int64)


def domain_stream(
    token_lists: Sequence[ArrayLike], doc_keys: ArrayLike, seed: int, n_tokens: int, *, eot: int
) -> NDArray[np.int64]:
    """One domain's stream: documents in :func:`stream_order`, each + ``eot``, cut to ``n_tokens``.

    Returns int64 (min(n_tokens, Σ (len + 1)),).
    """
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    pieces, total = [], 0
    for i in stream_order(doc_keys, seed):
        if total >= n_tokens:
            break
        doc = np.asarray(token_lists[i], dtype=np.int64)
        pieces += [doc, np.array([eot], dtype=np.int64)]
        total += doc.size + 1
    stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    return stream[:n_tokens]


def split_tokens(stream: ArrayLike, chunk_tokens: int) -> list[NDArray[np.int64]]:
    """``stream`` cut into consecutive chunks of ``chunk_tokens`` (the last may be shorter)."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    arr = np.asarray(stream, dtype=np.int64)
    return [arr[i : i + chunk_tokens] for i in range(0, arr.size, chunk_tokens)]


def _allocate(shares: NDArray[np.float64], n: int) -> NDArray[np.int64]:
    """Integer tokens per domain summing to ``n``: floors, then the largest remainders (ties: index)."""
    exact = shares * n
    base = np.floor(exact).astype(np.int64)
    rest = n - int(base.sum())
    if rest > 0:
        order = np.lexsort((np.arange(len(shares)), -(exact - base)))
        base[order[:rest]] += 1
    return base


def mixture_stream(
    streams: Mapping[str, ArrayLike],
    shares: Mapping[str, float],
    n_tokens: int,
    seed: int,
    piece: int,
) -> tuple[NDArray[np.int64], dict[str, int]]:
    """The training stream of a mixture: ``n_tokens`` drawn from the domain streams by ``shares``.

    Parameters
    ----------
    streams : domain → 1-D int array, the domain's stream (unique tokens)
    shares : domain → share (≥ 0, summing to 1); every domain must have a stream
    n_tokens : tokens of the result
    seed : order of the pieces
    piece : tokens per piece (e.g. a training window, ``context + 1``): pieces keep their tokens
        in order, pieces of all domains are interleaved by ``hash_uniform(d · 2^32 + k, seed,
        STREAMS_STREAM + 1)``, d the domain's index in sorted order, k the piece's index

    Returns
    -------
    (stream int64 (n_tokens,), taken: domain → tokens drawn). ``taken[d] / len(streams[d])`` is the
    number of epochs of domain d.
    """
    if piece < 1:
        raise ValueError(f"piece must be >= 1, got {piece}")
    domains = sorted(shares)
    missing = [d for d in domains if d not in streams]
    if missing:
        raise ValueError(f"no stream for domain(s) {missing}")
    s = np.array([float(shares[d]) for d in domains], dtype=np.float64)
    if not np.isfinite(s).all() or (s < 0).any() or abs(s.sum() - 1.0) > 1e-6:
        raise ValueError(f"shares must be ≥ 0 and sum to 1, got {dict(zip(domains, s, strict=True))}")
    take = _allocate(s / s.sum(), int(n_tokens))
    parts, keys = [], []
    for i, (d, t) in enumerate(zip(domains, take, strict=True)):
        if t == 0:
            continue
        src = np.asarray(streams[d], dtype=np.int64)
        if src.size == 0:
            raise ValueError(f"domain {d!r} has share {s[i]:.4g} but an empty stream")
        drawn = np.resize(src, int(t))  # cyclic: a short stream repeats
        for k, start in enumerate(range(0, drawn.size, piece)):
            parts.append(drawn[start : start + piece])
            keys.append((i << 32) + k)
    if not parts:
        return np.zeros(0, np.int64), {d: 0 for d in domains}
    key_arr = np.array(keys, dtype=np.int64)
    order = np.lexsort((key_arr, hash_uniform(key_arr, seed, STREAMS_STREAM + 1)))
    stream = np.concatenate([parts[j] for j in order])
    return stream, {d: int(t) for d, t in zip(domains, take, strict=True)}
