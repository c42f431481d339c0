"""Heuristic quality signals (Gopher / C4 / FineWeb style) for a whole Arrow batch.

``heuristic_signals(texts)`` returns one numpy array per signal, aligned with ``texts``.
Every value depends only on its own document, never on the rest of the batch.

Conventions (shared by all signals):

* **word** = whitespace token of ``str.split()`` (punctuation stays attached, case kept).
* **word chars** = sum of word lengths = non-whitespace characters of the document.
* **line** = ``str.splitlines()`` element, stripped; whitespace-only lines are dropped, so
  every ``frac_*_lines`` / ``*_line*`` signal is over **non-empty** lines.
* Lengths are in Unicode code points (``len(str)``), not bytes.
* Character classes are exactly ``str.isupper`` / ``isdigit`` / ``isalpha`` / ``isspace``,
  read from a 1.1 MB code-point table built on first use (~0.3 s once per process).
* Empty denominators give 0.0, never NaN: an empty or whitespace-only text scores 0 on
  everything except ``char_count``; a text with fewer than n words has 0 for n-gram signals.
* ``None`` (an Arrow null) is scored as the empty string.

Deviations from DataTrove's Gopher filters, on purpose:

* N-gram repetition fractions divide by word chars, not ``len(text)``, so whitespace
  layout does not dilute them (``dup_line_char_frac`` keeps Gopher's ``len(text)``).
* ``top_{n}gram_char_frac`` counts the characters *covered* by the occurrences of the most
  frequent n-gram (overlaps counted once, spaces excluded), so it is in [0, 1]; DataTrove
  multiplies count by n-gram length, which can exceed 1. Ties go to the n-gram that occurs
  first. As in Gopher, a text without any repeat still scores the first n-gram's chars.
* ``dup_{n}gram_char_frac`` marks every word inside a *repeat* occurrence (an n-gram seen
  earlier in the text) and counts marked chars once; DataTrove's greedy skip after each
  repeat can miss overlapping repeats. First occurrences are not counted, so a text repeated
  twice scores about 0.5.
* ``symbol_word_ratio`` sums Gopher's two ratios ('#' and ellipses) into one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from itertools import chain, compress, product
from operator import itemgetter, methodcaller
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = [
    "SIGNALS",
    "SIGNAL_DESCRIPTIONS",
    "SIGNAL_DIRECTIONS",
    "SIGNAL_DTYPES",
    "heuristic_signals",
]

Direction = Literal["higher_is_better", "lower_is_better"]

# name -> (dtype, direction, one-line definition). Order here is the table column order.
# Length signals are not monotone in quality (Gopher bounds them on both sides); the
# direction given is the one that holds over the bulk of web text, where too-short pages
# and menus of tiny tokens are the common failure.
_SPEC: dict[str, tuple[type[np.generic], Direction, str]] = {
    "word_count": (np.int64, "higher_is_better", "number of whitespace-separated words"),
    "char_count": (np.int64, "higher_is_better", "number of characters (code points)"),
    "mean_word_length": (np.float64, "higher_is_better", "word chars / word_count"),
    "symbol_word_ratio": (
        np.float64,
        "lower_is_better",
        "occurrences of '#', '...' and '…' per word (Gopher)",
    ),
    "frac_lines_end_punct": (
        np.float64,
        "higher_is_better",
        "fraction of non-empty lines ending in terminal punctuation or a closing quote (C4)",
    ),
    "frac_words_alpha": (
        np.float64,
        "higher_is_better",
        "fraction of words containing at least one letter, per str.isalpha (Gopher)",
    ),
    "frac_bullet_lines": (
        np.float64,
        "lower_is_better",
        "fraction of non-empty lines starting with a bullet character (Gopher)",
    ),
    "frac_ellipsis_lines": (
        np.float64,
        "lower_is_better",
        "fraction of non-empty lines ending with '...' or '…' (Gopher)",
    ),
    "dup_line_frac": (
        np.float64,
        "lower_is_better",
        "fraction of non-empty lines equal to an earlier line (Gopher)",
    ),
    "dup_line_char_frac": (
        np.float64,
        "lower_is_better",
        "chars of lines equal to an earlier line / char_count (Gopher)",
    ),
    "top_2gram_char_frac": (
        np.float64,
        "lower_is_better",
        "word chars covered by the most frequent word 2-gram / word chars (Gopher)",
    ),
    "top_3gram_char_frac": (
        np.float64,
        "lower_is_better",
        "word chars covered by the most frequent word 3-gram / word chars (Gopher)",
    ),
    "top_4gram_char_frac": (
        np.float64,
        "lower_is_better",
        "word chars covered by the most frequent word 4-gram / word chars (Gopher)",
    ),
    "dup_5gram_char_frac": (
        np.float64,
        "lower_is_better",
        "word chars inside repeated word 5-grams / word chars (Gopher)",
    ),
    "dup_10gram_char_frac": (
        np.float64,
        "lower_is_better",
        "word chars inside repeated word 10-grams / word chars (Gopher)",
    ),
    "stop_word_count": (
        np.int64,
        "higher_is_better",
        "words equal to a Gopher stop word (the be to of and that have with) once edge"
        " punctuation is stripped, case-insensitive",
    ),
    "short_line_frac": (
        np.float64,
        "lower_is_better",
        "fraction of non-empty lines with at most 30 characters (FineWeb)",
    ),
    "frac_uppercase_chars": (
        np.float64,
        "lower_is_better",
        "uppercase characters (str.isupper) / word chars",
    ),
    "frac_digit_chars": (
        np.float64,
        "lower_is_better",
        "digit characters (str.isdigit) / word chars",
    ),
}

SIGNALS: tuple[str, ...] = tuple(_SPEC)
SIGNAL_DESCRIPTIONS: dict[str, str] = {k: v[2] for k, v in _SPEC.items()}
SIGNAL_DIRECTIONS: dict[str, Direction] = {k: v[1] for k, v in _SPEC.items()}
SIGNAL_DTYPES: dict[str, np.dtype] = {k: np.dtype(v[0]) for k, v in _SPEC.items()}

# Gopher's stop-word list (Rae et al. 2021, A.1.1), matched case-insensitively. Holding
# every upper/lower-case spelling (76 strings) saves a str.lower call per word; it is exact
# because no non-ASCII character lowercases into these words' letters.
_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_STOP_SPELLINGS = frozenset(
    "".join(spelling) for word in _STOP_WORDS for spelling in product(*((c, c.upper()) for c in word))
)
# Stripped from both ends of a word before the stop-word lookup, so "The," and "(of" count;
# inner punctuation ("to-do", "that's") does not.
_EDGE_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»„‚‹›…–—¡¿"
# C4's END_PUNCTUATION (. ! ? " ') plus typographic quotes/ellipsis and CJK full stops.
_TERMINAL = frozenset(".!?\"'”’»…。！？‼⁇⁈⁉")
# Gopher uses "•" and "-"; the rest are common list markers in extracted web text.
_BULLETS = frozenset("•-*‣◦⁃∙·●○▪▫■□►▶➢➤")
_SHORT_LINE_CHARS = 30
_CHUNK_CHARS = 1 << 19
_TOP_NGRAM_NS = (2, 3, 4)
_DUP_NGRAM_NS = (5, 10)

_first_char = itemgetter(0)
_last_char = itemgetter(-1)

# Bits of the per-code-point class table; each is exactly the str predicate of that name.
_UPPER, _DIGIT, _ALPHA, _SPACE = 1, 2, 4, 8
_N_CODEPOINTS = 0x110000


def heuristic_signals(texts: Sequence[str | None]) -> dict[str, NDArray[np.generic]]:
    """Compute every heuristic signal for a batch of documents.

    Parameters
    ----------
    texts : sequence of str (``None`` is treated as ``""``)
        The documents of one batch, e.g. ``pyarrow.StringArray.to_pylist()``.

    Returns
    -------
    dict mapping each name in :data:`SIGNALS` (in that order) to an array of length
    ``len(texts)``: int64 for ``word_count``, ``char_count`` and ``stop_word_count``
    (counts of words / code points / words), float64 otherwise (ratios in [0, 1], except
    ``mean_word_length`` in code points per word and ``symbol_word_ratio`` in symbols per
    word). See the module docstring for the shared definitions and edge cases.

    The whole batch is scored at once: its words, lines and code points are each one flat
    array with the document of every element, and per-document values are sums over
    contiguous segments. No Python code runs per word occurrence, n-gram or character, and
    numpy is called a fixed number of times per chunk of documents (about 512k
    characters), not per document.
    """
    docs = [t if t is not None else "" for t in texts]
    n_chars = np.fromiter(map(len, docs), np.int64, len(docs))
    # Consecutive documents of about _CHUNK_CHARS characters at a time: the flat arrays take
    # ~40 bytes per character, so memory stays bounded whatever the batch size.
    ends = np.cumsum(n_chars)
    bounds = [0]
    while bounds[-1] < len(docs):
        limit = (ends[bounds[-1] - 1] if bounds[-1] else 0) + _CHUNK_CHARS
        bounds.append(max(int(np.searchsorted(ends, limit, side="right")), bounds[-1] + 1))
    parts = [_chunk_signals(docs[a:b], n_chars[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return {
        name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, SIGNAL_DTYPES[name])
        for name in SIGNALS
    }


def _chunk_signals(docs: list[str], n_chars: NDArray[np.int64]) -> dict[str, NDArray[np.generic]]:
    """:func:`heuristic_signals` of consecutive documents (``None`` already replaced)."""
    words = _Words(docs)
    lines = _line_signals(docs, n_chars)
    n_upper, n_digit, n_alpha_words = words.char_classes()
    symbols = np.fromiter((t.count("#") + t.count("...") + t.count("…") for t in docs), np.int64, len(docs))
    top, dup = _ngram_fracs(words)
    n_words, word_chars = words.per_doc, words.chars_per_doc
    values = {
        "word_count": n_words,
        "char_count": n_chars,
        "mean_word_length": _ratio(word_chars, n_words),
        "symbol_word_ratio": _ratio(symbols, n_words),
        "frac_lines_end_punct": lines["end_punct"],
        "frac_words_alpha": _ratio(n_alpha_words, n_words),
        "frac_bullet_lines": lines["bullets"],
        "frac_ellipsis_lines": lines["ellipses"],
        "dup_line_frac": lines["dup_lines"],
        "dup_line_char_frac": lines["dup_line_chars"],
        **{f"top_{n}gram_char_frac": v for n, v in zip(_TOP_NGRAM_NS, top, strict=True)},
        **{f"dup_{n}gram_char_frac": v for n, v in zip(_DUP_NGRAM_NS, dup, strict=True)},
        "stop_word_count": words.stop_words(),
        "short_line_frac": lines["short_lines"],
        "frac_uppercase_chars": _ratio(n_upper, word_chars),
        "frac_digit_chars": _ratio(n_digit, word_chars),
    }
    return {name: np.asarray(values[name], dtype=SIGNAL_DTYPES[name]) for name in SIGNALS}


def _ratio(numerator: NDArray[np.int64], denominator: NDArray[np.int64]) -> NDArray[np.float64]:
    """numerator / denominator per document, 0.0 where the denominator is 0.

    Both are exact integers below 2**53, so each quotient is the correctly rounded one that
    Python's ``int / int`` gives.
    """
    out = np.zeros(len(denominator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _segment_sums(values: NDArray[np.generic], counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sums of ``values`` over consecutive segments of ``counts`` elements (0 for an empty one)."""
    totals = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=totals[1:])
    ends = np.cumsum(counts)
    return totals[ends] - totals[ends - counts]


def _doc_sums(doc: NDArray[np.intp], values: NDArray[np.generic] | None, n_docs: int) -> NDArray[np.int64]:
    """Sums of ``values`` (1 each when None) per document index ``doc``, exact for integers."""
    if values is None:
        return np.bincount(doc, minlength=n_docs).astype(np.int64)
    # float64 weights hold integer sums exactly below 2**53.
    return np.bincount(doc, weights=values, minlength=n_docs).astype(np.int64)


class _Words:
    """Every word of the batch in text order, with its document and the id of its text.

    Ids number the batch's distinct words (0, 1, ... in order of first appearance), so
    anything that depends only on a word's text is computed once per distinct word and
    read back for every occurrence.
    """

    def __init__(self, docs: list[str]) -> None:
        split = list(map(str.split, docs))
        self.n_docs = len(docs)
        self.per_doc = np.fromiter(map(len, split), np.int64, len(docs))
        words = np.array(list(chain.from_iterable(split)), dtype=object)
        # A hash table over the words' own str hashes: exact, and each text is hashed once.
        codes, self.distinct = pd.factorize(words, sort=False)
        self.ids = codes.astype(np.int64, copy=False)
        self.doc = np.repeat(np.arange(len(docs)), self.per_doc)
        self.lengths = np.fromiter(map(len, self.distinct), np.int64, len(self.distinct))[self.ids]
        # prefix[i] = chars of words[:i] across the batch, so any span of words costs O(1).
        self.prefix = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.prefix[1:])
        self.chars_per_doc = _segment_sums(self.lengths, self.per_doc)
        # end[i] = one past the last word of word i's document.
        self.end = np.repeat(np.cumsum(self.per_doc), self.per_doc)

    def per_doc_sum(self, per_distinct: NDArray[np.generic]) -> NDArray[np.int64]:
        """Per document: the sum over its words of a value given per distinct word."""
        return _segment_sums(per_distinct[self.ids], self.per_doc)

    def stop_words(self) -> NDArray[np.int64]:
        """Words equal to a stop word once edge punctuation is stripped, per document."""
        stop = (w.strip(_EDGE_PUNCT) in _STOP_SPELLINGS for w in self.distinct)
        return self.per_doc_sum(np.fromiter(stop, bool, len(self.distinct)))

    def char_classes(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """(uppercase chars, digit chars, words containing a letter) per document.

        Whitespace is never upper case, a digit or a letter, so a document's counts are the
        sums of its words' counts; each distinct word is classified once.
        """
        n = len(self.distinct)
        lengths = np.fromiter(map(len, self.distinct), np.int64, n)
        # surrogatepass: a lone surrogate (impossible in Arrow UTF-8) must not crash a batch.
        joined = "".join(self.distinct).encode("utf-32-le", "surrogatepass")
        classes = _class_table()[np.frombuffer(joined, dtype="<u4")]
        upper = _segment_sums((classes & _UPPER) != 0, lengths)
        digit = _segment_sums((classes & _DIGIT) != 0, lengths)
        alpha = _segment_sums((classes & _ALPHA) != 0, lengths) > 0
        return self.per_doc_sum(upper), self.per_doc_sum(digit), self.per_doc_sum(alpha)


class _Grams(NamedTuple):
    """The n-grams starting at each word position of the batch."""

    ids: NDArray[np.int64]  # equal ids: equal n-grams of one document; they rise with it
    first: NDArray[np.bool_]  # the n-gram's first occurrence in its document
    count: NDArray[np.int64]  # occurrences of the n-gram in its document
    order: NDArray[np.intp]  # positions sorted by id, each id's positions in text order


def _group(keys: NDArray[np.int64], near: NDArray[np.intp] | None = None) -> _Grams:
    """Ids, first occurrences and counts of equal keys, by one stable sort.

    ``near``: positions in an order that already sorts the keys' high bits (the shorter
    n-gram's order), so the sort only has to reorder inside runs of equal high bits.
    """
    order = np.argsort(keys, kind="stable") if near is None else near[np.argsort(keys[near], kind="stable")]
    ordered = keys[order]
    new = np.ones(len(keys), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    ids = np.empty(len(keys), dtype=np.int64)
    ids[order] = np.cumsum(new) - 1
    # Stable, and ``near`` lists equal keys in text order: the head of each run of equal
    # keys is the earliest position holding the key.
    first = np.zeros(len(keys), dtype=bool)
    first[order[new]] = True
    sizes = np.diff(np.append(np.flatnonzero(new), len(keys)))
    return _Grams(ids, first, sizes[ids], order)


def _ngrams(words: _Words) -> dict[int, _Grams]:
    """Per n in the signals: the n words starting at each position, grouped.

    A position whose n words run past its document's end equals no other position, so it
    is never a repeat. Longer n-grams are pairs of shorter ones (n = a + b: the a-gram at
    i and the b-gram at i + a), so each n costs one sort of one int64 key per word.
    """
    n_words = len(words.ids)
    positions = np.arange(n_words, dtype=np.int64)
    # (document, word): the same word in two documents gets two ids.
    grams = {1: _group((words.doc.astype(np.int64) << 32) | words.ids)}
    for n, a in ((2, 1), (3, 2), (4, 2), (5, 4), (10, 5)):
        tail = np.zeros(n_words, dtype=np.int64)
        tail[: max(n_words - a, 0)] = grams[n - a].ids[a:]
        # Ids are below 2**31, so (head, tail) packs into one int64 that rises with the
        # document; a run past the end gets a tail of its own above every id.
        tail = np.where(positions + n <= words.end, tail, (1 << 31) + words.end - positions)
        grams[n] = _group((grams[a].ids << 32) | tail, grams[a].order)
    return grams


def _covered_per_doc(starts: NDArray[np.int64], n: int, words: _Words) -> NDArray[np.int64]:
    """Word chars in the union of the n-word spans beginning at sorted ``starts``, per document.

    Each span is clipped at the next start of its document, so overlaps count once.
    """
    doc = words.doc[starts]
    ends = starts + n
    same_doc = doc[1:] == doc[:-1]
    ends[:-1] = np.where(same_doc, np.minimum(ends[:-1], starts[1:]), ends[:-1])
    return _doc_sums(doc, words.prefix[ends] - words.prefix[starts], words.n_docs)


def _ngram_fracs(words: _Words) -> tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]:
    """(top_{2,3,4}gram_char_frac, dup_{5,10}gram_char_frac) of every document.

    Top: the n-gram with the most occurrences in its document, ties to the one that occurs
    first (so a document without any repeat scores its first n-gram). Dup: every position
    that repeats an n-gram seen earlier in its document.
    """
    n_docs, n_words = words.n_docs, len(words.ids)
    if n_words == 0:
        zeros = np.zeros(n_docs)
        return [zeros] * len(_TOP_NGRAM_NS), [zeros] * len(_DUP_NGRAM_NS)
    grams = _ngrams(words)
    has_words = words.per_doc > 0
    offsets = np.cumsum(words.per_doc) - words.per_doc
    top, dup = [], []
    for n in _TOP_NGRAM_NS:
        ids, counts = grams[n].ids, grams[n].count
        best_count = np.zeros(n_docs, dtype=np.int64)
        best_count[has_words] = np.maximum.reduceat(counts, offsets[has_words])
        # The earliest position holding a top count is the first occurrence of the winner;
        # a document shorter than n has no n-gram and scores 0.
        eligible = (counts == best_count[words.doc]) & (words.per_doc[words.doc] >= n)
        at_best = np.flatnonzero(eligible)
        first = at_best[np.diff(words.doc[at_best], prepend=-1) != 0]
        winner = np.full(n_docs, -1, dtype=np.int64)
        winner[words.doc[first]] = ids[first]
        starts = np.flatnonzero(ids == winner[words.doc])
        covered = _covered_per_doc(starts, n, words)
        top.append(np.where(words.per_doc >= n, _ratio(covered, words.chars_per_doc), 0.0))
    for n in _DUP_NGRAM_NS:
        covered = _covered_per_doc(np.flatnonzero(~grams[n].first), n, words)
        dup.append(_ratio(covered, words.chars_per_doc))
    return top, dup


def _line_signals(docs: list[str], n_chars: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
    """The per-line signals of every document, over its non-empty stripped lines."""
    split = list(map(str.splitlines, docs))
    per_doc = np.fromiter(map(len, split), np.int64, len(docs))
    stripped = list(map(str.strip, chain.from_iterable(split)))
    lengths = np.fromiter(map(len, stripped), np.int64, len(stripped))
    keep = lengths > 0
    lines = list(compress(stripped, keep.tolist()))
    doc = np.repeat(np.arange(len(docs)), per_doc)[keep]
    lengths = lengths[keep]
    n_lines = _doc_sums(doc, None, len(docs))

    def share(flags: Iterable[bool]) -> NDArray[np.float64]:
        hits = np.fromiter(flags, bool, len(lines))
        return _ratio(_doc_sums(doc[hits], None, len(docs)), n_lines)

    # A line is a repeat when its (document, text) was seen on an earlier line.
    texts = pd.factorize(np.array(lines, dtype=object), sort=False)[0].astype(np.int64)
    repeat = ~_group((doc.astype(np.int64) << 32) | texts).first
    return {
        "end_punct": share(map(_TERMINAL.__contains__, map(_last_char, lines))),
        "bullets": share(map(_BULLETS.__contains__, map(_first_char, lines))),
        "ellipses": share(map(methodcaller("endswith", ("...", "…")), lines)),
        "short_lines": share(lengths <= _SHORT_LINE_CHARS),
        "dup_lines": _ratio(_doc_sums(doc[repeat], None, len(docs)), n_lines),
        "dup_line_chars": _ratio(_doc_sums(doc[repeat], lengths[repeat], len(docs)), n_chars),
    }


@functools.cache
def _class_table() -> NDArray[np.uint8]:
    """Code point -> bit set of {isupper, isdigit, isalpha, isspace}, exact per str.

    Built once per process (~0.3 s, 1.1 MB) and reused by every batch a worker sees.
    """
    chars = "".join(map(chr, range(_N_CODEPOINTS)))
    table = np.zeros(_N_CODEPOINTS, dtype=np.uint8)
    for bit, predicate in (
        (_UPPER, str.isupper),
        (_DIGIT, str.isdigit),
        (_ALPHA, str.isalpha),
        (_SPACE, str.isspace),
    ):
        table |= np.fromiter(map(predicate, chars), dtype=bool, count=_N_CODEPOINTS) * np.uint8(bit)
    return table
