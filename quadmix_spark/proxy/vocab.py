"""Proxy vocabularies: the tokenizer's ids mapped onto the N most frequent ids of the pool + UNK.

A tinylm proxy spends ~95% of its compute in the tied output layer, whose cost is linear in the
vocabulary (cl100k: 100,277 ids). A *proxy vocabulary* ``top:N`` keeps the N ids the pool uses
most and sends every other id to one UNK id, so the output layer shrinks by ``V / (N + 1)``.

Mapping (:class:`ProxyVocab`): ``kept`` (N,) are tokenizer ids sorted by decreasing count, ties
by increasing id; tokenizer id ``kept[i]`` becomes proxy id ``i``, every other id becomes
``unk_id = N``. With fewer than N ids ever seen, only the seen ones are kept (an unseen id cannot
be learnt anyway). The mapping is identified by :meth:`ProxyVocab.key`, a hash of
``(source_size, kept)``.

Losses under a proxy vocabulary are the NLL of the *mapped* stream: UNK merges every rare id into
one cheap event, so they are lower than full-vocabulary losses and comparable only between runs
that share the mapping. Every run records the key (``"full:<V>"`` without a mapping), and
:func:`check_comparable` refuses to compare losses across keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quadmix_spark.core.identity import content_key

__all__ = ["ProxyVocab", "VocabMismatchError", "check_comparable", "full_vocab_key", "parse_vocab_spec"]

_SPEC = re.compile(r"^top:([1-9][0-9]*)$")


class VocabMismatchError(ValueError):
    """Losses from runs with different proxy vocabularies were about to be compared."""


def parse_vocab_spec(spec: str, name: str = "vocab") -> int | None:
    """``"full"`` → None, ``"top:N"`` (N ≥ 1) → N; anything else raises a ValueError naming ``name``."""
    if spec == "full":
        return None
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    if not match:
        raise ValueError(f"{name} must be 'full' or 'top:N' with N >= 1 (e.g. top:8192), got {spec!r}")
    return int(match.group(1))


def full_vocab_key(source_size: int) -> str:
    """The vocabulary key of a run without a mapping (the tokenizer's own ids)."""
    return f"full:{int(source_size)}"


@dataclass(frozen=True, eq=False)
class ProxyVocab:
    """A top-N mapping of tokenizer ids (in ``[0, source_size)``) to proxy ids (in ``[0, N]``).

    Build with :meth:`from_counts` or :meth:`from_streams`; store with :meth:`to_dict`.

    Attributes
    ----------
    kept : int64 array (N,)
        Tokenizer ids kept, most frequent first; ``kept[i]`` is proxy id ``i``.
    source_size : int
        The tokenizer's vocabulary size.
    """

    kept: NDArray[np.int64]
    source_size: int

    def __post_init__(self) -> None:
        kept = np.asarray(self.kept)
        if kept.ndim != 1 or kept.size == 0 or not np.issubdtype(kept.dtype, np.integer):
            raise ValueError("kept must be a non-empty 1-D array of integer token ids")
        kept = kept.astype(np.int64)
        if kept.min() < 0 or kept.max() >= self.source_size:
            raise ValueError(f"kept ids must lie in [0, {self.source_size})")
        if np.unique(kept).size != kept.size:
            raise ValueError("kept ids must be distinct")
        table = np.full(self.source_size, kept.size, dtype=np.int64)  # default: UNK
        table[kept] = np.arange(kept.size)
        kept.setflags(write=False)
        table.setflags(write=False)
        object.__setattr__(self, "kept", kept)
        object.__setattr__(self, "_table", table)

    @classmethod
    def from_counts(cls, counts: ArrayLike, n: int) -> ProxyVocab:
        """The ``n`` most frequent ids of ``counts`` (source_size,), a count per tokenizer id."""
        c = np.asarray(counts)
        if c.ndim != 1 or c.size < 1 or (c.size and c.min() < 0):
            raise ValueError("counts must be a 1-D array of counts >= 0, one per tokenizer id")
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        seen = np.flatnonzero(c > 0)
        if seen.size == 0:
            raise ValueError("counts are all zero: no token to keep")
        # Decreasing count, ties by increasing id (lexsort: last key is primary).
        order = seen[np.lexsort((seen, -c[seen]))]
        return cls(order[:n], int(c.size))

    @classmethod
    def from_streams(cls, streams: Iterable[ArrayLike], n: int, source_size: int) -> ProxyVocab:
        """The ``n`` most frequent ids over token ``streams`` (1-D int arrays of tokenizer ids)."""
        counts = np.zeros(source_size, dtype=np.int64)
        for s in streams:
            arr = np.asarray(s, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= source_size):
                raise ValueError(f"token ids must be in [0, {source_size}), got [{arr.min()}, {arr.max()}]")
            counts += np.bincount(arr, minlength=source_size)
        return cls.from_counts(counts, n)

    @property
    def n_kept(self) -> int:
        return int(self.kept.size)

    @property
    def unk_id(self) -> int:
        return self.n_kept

    @property
    def size(self) -> int:
        """Proxy vocabulary size: the kept ids plus UNK."""
        return self.n_kept + 1

    def encode(self, tokens: ArrayLike) -> NDArray[np.int64]:
        """Tokenizer ids → proxy ids (one vectorised lookup; rare ids → ``unk_id``)."""
        arr = np.asarray(tokens, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.source_size):
            raise ValueError(f"token ids must be in [0, {self.source_size}), got [{arr.min()}, {arr.max()}]")
        return self._table[arr]  # type: ignore[attr-defined]

    def decode(self, ids: ArrayLike) -> NDArray[np.int64]:
        """Proxy ids → tokenizer ids; UNK becomes -1 (it stands for many ids)."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > self.unk_id):
            raise ValueError(f"proxy ids must be in [0, {self.unk_id}]")
        return np.where(arr == self.unk_id, -1, self.kept[np.minimum(arr, self.n_kept - 1)])

    def coverage(self, tokens: ArrayLike) -> float:
        """Share of ``tokens`` (tokenizer ids) that keep their own proxy id (not UNK)."""
        arr = np.asarray(tokens, dtype=np.int64)
        return float(np.mean(self.encode(arr) != self.unk_id)) if arr.size else float("nan")

    def key(self) -> str:
        """Identity of the mapping: ``top<N>:<16 hex>`` over (source_size, kept)."""
        return f"top{self.n_kept}:" + content_key(
            {"source_size": self.source_size, "kept": self.kept.tolist()}
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored with a run): key, source_size, kept."""
        return {"key": self.key(), "source_size": self.source_size, "kept": self.kept.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProxyVocab:
        """Inverse of :meth:`to_dict`; a stored key that does not match the ids is an error."""
        vocab = cls(np.asarray(data["kept"], dtype=np.int64), int(data["source_size"]))
        if "key" in data and data["key"] != vocab.key():
            raise ValueError(
                f"stored vocabulary key {data['key']!r} does not match its ids ({vocab.key()!r})"
            )
        return vocab

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ProxyVocab)
            and self.source_size == other.source_size
            and np.array_equal(self.kept, other.kept)
        )

    def __hash__(self) -> int:
        return hash(self.key())


def check_comparable(vocab_keys: Mapping[str, str]) -> str:
    """The one vocabulary key shared by runs ``{run name: vocab key}``, or :class:`VocabMismatchError`.

    Losses under different proxy vocabularies measure different events (every id outside a
    mapping's top N is one UNK event), so comparing them would compare the mappings, not the data.
    """
    if not vocab_keys:
        raise ValueError("no runs to compare")
    groups: dict[str, list[str]] = {}
    for run, key in vocab_keys.items():
        groups.setdefault(str(key), []).append(str(run))
    if len(groups) > 1:
        detail = "; ".join(f"{key}: {', '.join(sorted(runs))}" for key, runs in sorted(groups.items()))
        raise VocabMismatchError(
            "losses are comparable only between runs sharing one proxy vocabulary; these runs use "
            f"{len(groups)} different ones ({detail}). Rerun them with one mapping "
            "(build it once and pass the same ProxyVocab / vocabulary file to every run)."
        )
    return next(iter(groups))
