"""Heuristic quality signals (Gopher / C4 / FineWeb style) for a whole Arrow batch.

``heuristic_signals(texts)`` returns one numpy array per signal, aligned with ``texts``.
Every value depends only on its own document, never on the rest of the batch.

Conventions (shared by all signals):

* **word** = whitespace token of ``str.split()`` (punctuation stays attached, case kept).
* **word chars** = sum of word lengths = non-whitespace characters of the document.
* **line** = ``str.splitlines()`` element, stripped; whitespace-only lines are dropped, so
  every ``frac_*_lines`` / ``*_line*`` signal is over **non-empty** lines.
* Lengths are in Unicode code points (``len(str)``), not bytes.
* Empty denominators give 0.0, never NaN: an empty or whitespace-only text scores 0 on
  everything except ``char_count``; a text with fewer than n words has 0 for n-gram signals.
* ``None`` (an Arrow null) is scored as the empty string.

Deviations from DataTrove's Gopher filters, on purpose:

* Repetition fractions divide by word chars, not ``len(text)``, so whitespace layout
  does not dilute them.
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
import re
from collections import Counter
from collections.abc import Sequence
from itertools import accumulate, compress, repeat
from operator import itemgetter, methodcaller, ne
from typing import Literal

import numpy as np
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
        "fraction of words containing at least one letter (Gopher)",
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
        "words that are Gopher stop words (the be to of and that have with), case-insensitive",
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
# Computed document by document; the remaining two are vectorised over the whole batch.
_PER_DOC_SIGNALS = SIGNALS[:-2]
assert SIGNALS[-2:] == ("frac_uppercase_chars", "frac_digit_chars")

# Gopher's stop-word list (Rae et al. 2021, A.1.1).
_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
# Stripped from both ends of a lowercased word before the stop-word lookup, so "The," and
# "(of" count; inner punctuation ("to-do", "that's") does not.
_EDGE_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»„‚‹›…–—¡¿"
# C4's END_PUNCTUATION (. ! ? " ') plus typographic quotes/ellipsis and CJK full stops.
_TERMINAL = (".", "!", "?", '"', "'", "”", "’", "»", "…", "。", "！", "？", "‼", "⁇", "⁈", "⁉")
# Gopher uses "•" and "-"; the rest are common list markers in extracted web text.
_BULLETS = (
    "•",
    "-",
    "*",
    "‣",
    "◦",
    "⁃",
    "∙",
    "·",
    "●",
    "○",
    "▪",
    "▫",
    "■",
    "□",
    "►",
    "▶",
    "➢",
    "➤",
)
_ELLIPSES = ("...", "…")
_SHORT_LINE_CHARS = 30
_TOP_NGRAM_NS = (2, 3, 4)
_DUP_NGRAM_NS = (5, 10)

# A letter is a word character that is neither a digit nor '_' (= str.isalpha, except that
# rare non-decimal numerics such as '²' also count). Anchoring at a token start keeps the
# scan linear in the token length.
_HAS_LETTER = re.compile(r"(?<!\S)\S*?[^\W\d_]")

_ends_terminal = methodcaller("endswith", _TERMINAL)
_starts_bullet = methodcaller("startswith", _BULLETS)
_ends_ellipsis = methodcaller("endswith", _ELLIPSES)

_N_CODEPOINTS = 0x110000
_UPPER_BIT = 1
_DIGIT_BIT = 2
# Texts are concatenated into chunks of about this many code points for the vectorised
# character-class count, bounding memory at ~5 bytes per code point per chunk.
_CHUNK_CODEPOINTS = 1 << 22


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
    """
    docs = [t if t is not None else "" for t in texts]
    # One row per document: the per-document signals, then word chars (the denominator of
    # the two character-class fractions, which are computed for the whole batch at once).
    rows = np.array([_doc_signals(t) for t in docs], dtype=np.float64)
    rows = rows.reshape(len(docs), len(_PER_DOC_SIGNALS) + 1)
    out: dict[str, NDArray[np.generic]] = {
        name: rows[:, i].astype(SIGNAL_DTYPES[name]) for i, name in enumerate(_PER_DOC_SIGNALS)
    }
    word_chars = rows[:, -1]
    upper, digit = _char_class_counts(docs)
    out["frac_uppercase_chars"] = _safe_div(upper, word_chars)
    out["frac_digit_chars"] = _safe_div(digit, word_chars)
    return out


def _doc_signals(text: str) -> tuple[float, ...]:
    """One document's values for _PER_DOC_SIGNALS, in that order, then its word chars.

    Iteration goes through C-level map / zip / Counter / str methods over the word and line
    lists; a Python-level loop runs only over repeat occurrences.
    """
    words = text.split()
    n_words = len(words)
    n_chars = len(text)
    # prefix[i] = chars of words[:i], so any n-gram span costs O(1).
    prefix = list(accumulate(map(len, words), initial=0))
    word_chars = prefix[-1]

    lines = list(filter(None, map(str.strip, text.splitlines())))
    n_lines = len(lines)
    end_punct = bullets = ellipses = dup_lines = dup_line_chars = short_lines = 0.0
    if n_lines:
        end_punct = sum(map(_ends_terminal, lines)) / n_lines
        bullets = sum(map(_starts_bullet, lines)) / n_lines
        ellipses = sum(map(_ends_ellipsis, lines)) / n_lines
        repeats = _repeat_positions(lines)
        dup_lines = len(repeats) / n_lines
        dup_line_chars = sum(len(lines[i]) for i in repeats) / n_chars
        short_lines = sum(map((_SHORT_LINE_CHARS + 1).__gt__, map(len, lines))) / n_lines

    mean_len = symbols = alpha = 0.0
    stop_words = 0
    top: list[float] = [0.0] * len(_TOP_NGRAM_NS)
    dup: list[float] = [0.0] * len(_DUP_NGRAM_NS)
    if n_words:  # then word_chars > 0 too: split() never yields empty words
        mean_len = word_chars / n_words
        symbols = (text.count("#") + text.count("...") + text.count("…")) / n_words
        alpha = len(_HAS_LETTER.findall(text)) / n_words
        lowered = map(str.lower, words)
        stop_words = sum(
            map(_STOP_WORDS.__contains__, map(str.strip, lowered, repeat(_EDGE_PUNCT)))
        )
        top = _top_ngram_fracs(words, prefix)
        dup = _dup_ngram_fracs(words, prefix)

    return (
        n_words,
        n_chars,
        mean_len,
        symbols,
        end_punct,
        alpha,
        bullets,
        ellipses,
        dup_lines,
        dup_line_chars,
        *top,
        *dup,
        stop_words,
        short_lines,
        word_chars,
    )


def _repeat_positions(items: list) -> list[int]:
    """Indices i with items[i] == items[j] for some j < i (first occurrences excluded)."""
    m = len(items)
    # Inserting in reverse leaves each key mapped to its first index.
    first = dict(zip(reversed(items), range(m - 1, -1, -1), strict=True))
    if len(first) == m:
        return []
    return list(compress(range(m), map(ne, map(first.__getitem__, items), range(m))))


def _covered_chars(starts: list[int], n: int, prefix: list[int]) -> int:
    """Word chars in the union of n-word spans beginning at sorted ``starts``."""
    covered = 0
    for s, nxt in zip(starts, [*starts[1:], starts[-1] + n], strict=True):
        # Clip each span at the next start so overlaps are counted once.
        covered += prefix[min(s + n, nxt)] - prefix[s]
    return covered


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(words[i:] for i in range(n))))  # noqa: B905 - shorter slices end it


def _top_ngram_fracs(words: list[str], prefix: list[int]) -> list[float]:
    word_chars = prefix[-1]
    fracs = []
    for n in _TOP_NGRAM_NS:
        if len(words) < n:
            fracs.append(0.0)
            continue
        grams = _ngrams(words, n)
        # max() keeps the first maximum in insertion order: ties go to the earliest n-gram.
        top, count = max(Counter(grams).items(), key=itemgetter(1))
        if count == 1:
            covered = prefix[n]  # no repeats: the top n-gram is grams[0]
        else:
            starts = list(compress(range(len(grams)), map(top.__eq__, grams)))
            covered = _covered_chars(starts, n, prefix)
        fracs.append(covered / word_chars)
    return fracs


def _dup_ngram_fracs(words: list[str], prefix: list[int]) -> list[float]:
    word_chars = prefix[-1]
    fracs = []
    no_repeats = False
    for n in _DUP_NGRAM_NS:
        # A repeated n-gram contains a repeated shorter n-gram, so once a smaller n has no
        # repeat, larger ones have none either.
        if no_repeats or len(words) < n:
            fracs.append(0.0)
            continue
        starts = _repeat_positions(_ngrams(words, n))
        if not starts:
            no_repeats = True
            fracs.append(0.0)
            continue
        fracs.append(_covered_chars(starts, n, prefix) / word_chars)
    return fracs


@functools.cache
def _char_classes() -> NDArray[np.uint8]:
    """Lookup table code point -> bit set of {upper, digit}, exact per str.isupper/isdigit.

    Built once per process (~0.1 s, 1.1 MB); reused by every batch a Python worker sees.
    """
    chars = "".join(map(chr, range(_N_CODEPOINTS)))
    upper = np.fromiter(map(str.isupper, chars), dtype=np.uint8, count=_N_CODEPOINTS)
    digit = np.fromiter(map(str.isdigit, chars), dtype=np.uint8, count=_N_CODEPOINTS)
    return upper * _UPPER_BIT | digit * _DIGIT_BIT


def _char_class_counts(docs: list[str]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per-document counts of uppercase and digit characters, vectorised over chunks."""
    table = _char_classes()
    upper = np.zeros(len(docs), dtype=np.int64)
    digit = np.zeros(len(docs), dtype=np.int64)
    begin = 0
    while begin < len(docs):
        end, size = begin, 0
        while end < len(docs) and (end == begin or size + len(docs[end]) <= _CHUNK_CODEPOINTS):
            size += len(docs[end])
            end += 1
        chunk = docs[begin:end]
        # UTF-32 is one unit per code point, so offsets are the cumulative str lengths.
        codepoints = np.frombuffer("".join(chunk).encode("utf-32-le", "surrogatepass"), dtype="<u4")
        classes = table[codepoints]
        bounds = np.fromiter(accumulate(map(len, chunk), initial=0), np.int64, len(chunk) + 1)
        for bit, dest in ((_UPPER_BIT, upper), (_DIGIT_BIT, digit)):
            cum = np.zeros(len(classes) + 1, dtype=np.int64)
            np.cumsum((classes & bit) != 0, out=cum[1:])
            dest[begin:end] = cum[bounds[1:]] - cum[bounds[:-1]]
        begin = end
    return upper, digit


def _safe_div(num: NDArray[np.generic], den: NDArray[np.generic]) -> NDArray[np.float64]:
    """num / den as float64, 0.0 where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out
