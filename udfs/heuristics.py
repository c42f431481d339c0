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
from collections.abc import Callable, Sequence
from itertools import product
from operator import itemgetter
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
_TOP_NGRAM_NS = (2, 3, 4)
_DUP_NGRAM_NS = (5, 10)
_MAX_N = max(*_TOP_NGRAM_NS, *_DUP_NGRAM_NS)
# Spans of at most this many occurrences are summed in Python: cheaper than numpy calls.
_SMALL_SPAN_COUNT = 16

_first_char = itemgetter(0)
_last_char = itemgetter(-1)
_last_3_chars = itemgetter(slice(-3, None))

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
    """
    rows = [_doc_signals(t if t is not None else "") for t in texts]
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(SIGNALS))
    # Counts are < 2**53, so the round trip through float64 is exact.
    return {name: table[:, i].astype(SIGNAL_DTYPES[name]) for i, name in enumerate(SIGNALS)}


def _doc_signals(text: str) -> tuple[float, ...]:
    """All signals of one document, in SIGNALS order.

    Per-word and per-line work goes through C-level iteration (map, itemgetter, set
    lookups); per-character and n-gram work through numpy, so no Python loop runs over
    characters, words or n-grams.
    """
    n_chars = len(text)
    words = text.split()
    n_words = len(words)

    lines = list(filter(None, map(str.strip, text.splitlines())))
    n_lines = len(lines)
    end_punct = bullets = ellipses = dup_lines = dup_line_chars = short_lines = 0.0
    if n_lines:
        last = list(map(_last_char, lines))
        end_punct = sum(map(_TERMINAL.__contains__, last)) / n_lines
        bullets = sum(map(_BULLETS.__contains__, map(_first_char, lines))) / n_lines
        n_ellipses = last.count("…")
        if "." in last:
            n_ellipses += sum(map("...".__eq__, map(_last_3_chars, lines)))
        ellipses = n_ellipses / n_lines
        short_lines = sum(map((_SHORT_LINE_CHARS + 1).__gt__, map(len, lines))) / n_lines
        if len(set(lines)) < n_lines:
            seen: set[str] = set()
            # set.add returns None, so this keeps exactly the lines seen before.
            repeats = [line for line in lines if line in seen or seen.add(line)]
            dup_lines = len(repeats) / n_lines
            dup_line_chars = sum(map(len, repeats)) / n_chars

    if not n_words:
        # Whitespace only: every word- and character-class signal is 0 (no NaN); lines
        # can only be empty too, but keep their values rather than assume it.
        values: dict[str, float] = dict.fromkeys(SIGNALS, 0.0)
        values.update(
            char_count=n_chars,
            frac_lines_end_punct=end_punct,
            frac_bullet_lines=bullets,
            frac_ellipsis_lines=ellipses,
            dup_line_frac=dup_lines,
            dup_line_char_frac=dup_line_chars,
            short_line_frac=short_lines,
        )
        return tuple(values.values())

    lengths = np.fromiter(map(len, words), dtype=np.int64, count=n_words)
    # prefix[i] = chars of words[:i], so any span of words costs O(1).
    prefix = np.zeros(n_words + 1, dtype=np.int64)
    np.cumsum(lengths, out=prefix[1:])
    word_chars = int(prefix[-1])  # > 0: split() never yields empty words
    # Word id = index of the word's first occurrence (setdefault keeps the first value).
    vocab: dict[str, int] = {}
    ids = np.fromiter(map(vocab.setdefault, words, range(n_words)), np.int64, n_words)

    n_upper, n_digit, n_alpha_words = _char_classes_counts(text)
    symbols = text.count("#") + text.count("...") + text.count("…")
    # Looked up once per distinct word, then weighted by how often each occurs.
    stop_ids = [i for w, i in vocab.items() if w.strip(_EDGE_PUNCT) in _STOP_SPELLINGS]
    stop_words = int(np.bincount(ids)[stop_ids].sum()) if stop_ids else 0
    top, dup = _ngram_fracs(ids, prefix)

    return (
        n_words,
        n_chars,
        word_chars / n_words,
        symbols / n_words,
        end_punct,
        n_alpha_words / n_words,
        bullets,
        ellipses,
        dup_lines,
        dup_line_chars,
        *top,
        *dup,
        stop_words,
        short_lines,
        n_upper / word_chars,
        n_digit / word_chars,
    )


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


def _char_classes_counts(text: str) -> tuple[int, int, int]:
    """(uppercase chars, digit chars, words containing a letter) of one document."""
    # surrogatepass: a lone surrogate (impossible in Arrow UTF-8) must not crash a batch.
    codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    classes = _class_table()[codepoints]
    n_upper = np.count_nonzero(classes & _UPPER)
    n_digit = np.count_nonzero(classes & _DIGIT)
    # Drop everything but letters and whitespace: each word with a letter collapses to a
    # run of letters, words without one vanish, and whitespace still separates words.
    kept = classes[(classes & (_ALPHA | _SPACE)) != 0]
    is_letter = (kept & _ALPHA) != 0
    n_alpha_words = np.count_nonzero(is_letter[1:] > is_letter[:-1]) + bool(is_letter[:1].any())
    return int(n_upper), int(n_digit), int(n_alpha_words)


def _ngram_fracs(ids: NDArray[np.int64], prefix: NDArray[np.int64]) -> tuple[list[float], list[float]]:
    """(top_{2,3,4}gram_char_frac, dup_{5,10}gram_char_frac) of one document.

    One sort serves every n: positions are sorted by the words starting there, so the
    occurrences of any n-gram (n <= _MAX_N) form one contiguous run of that order.
    """
    n_words = len(ids)
    top = [0.0] * len(_TOP_NGRAM_NS)
    dup = [0.0] * len(_DUP_NGRAM_NS)
    if n_words < 2:
        return top, dup
    word_chars = int(prefix[-1])
    order, same_as_prev = _sort_by_following_words(ids, _MAX_N)

    for k, n in enumerate(_TOP_NGRAM_NS):
        if n_words < n:
            break
        # Run j occupies sorted slots edges[j] + 1 ... edges[j + 1].
        edges = np.concatenate(([-1], (~same_as_prev(n)).nonzero()[0], [n_words - 1]))
        lengths = edges[1:] - edges[:-1]
        count = int(lengths.max())
        if count == 1:
            # Every n-gram is unique; ties go to the first one, at position 0.
            top[k] = int(prefix[n]) / word_chars
            continue
        best = np.flatnonzero(lengths == count)
        if len(best) > 1:
            # Tie: the n-gram whose first occurrence comes first wins, as Counter would.
            first_positions = np.minimum.reduceat(order, edges[:-1] + 1)[best]
            best = best[np.argmin(first_positions)]
        else:
            best = best[0]
        start = int(edges[best]) + 1
        starts = np.sort(order[start : start + count])
        top[k] = _covered_chars(starts, n, prefix) / word_chars

    for k, n in enumerate(_DUP_NGRAM_NS):
        if n_words < n:
            break
        same = same_as_prev(n)
        if not same.any():
            break  # no repeated n-gram, hence none for any larger n either
        if n == _MAX_N:
            # The sort key is exactly these n words and the sort is stable, so each run is
            # in text order: everything but a run's head is a repeat.
            repeats = order[1:][same]
        else:
            edges = np.concatenate(([-1], (~same).nonzero()[0], [n_words - 1]))
            first = np.minimum.reduceat(order, edges[:-1] + 1)
            first_per_slot = np.repeat(first, edges[1:] - edges[:-1])
            repeats = order[order != first_per_slot]
        dup[k] = _covered_chars(np.sort(repeats), n, prefix) / word_chars
    return top, dup


def _sort_by_following_words(
    ids: NDArray[np.int64], max_n: int
) -> tuple[NDArray[np.intp], Callable[[int], NDArray[np.bool_]]]:
    """Stable-sort positions by the ``max_n`` words starting at each one.

    Returns ``order`` (positions in sorted order) and ``same_as_prev(n)``, a bool array
    whose element i says whether the n words at ``order[i + 1]`` equal those at
    ``order[i]``. Past the end of the text every position reads a sentinel id, so an n-gram
    that would run off the end equals no other and stays a run of length 1.
    """
    n_words = len(ids)
    # Several word ids are packed big-endian into each uint64 key so that comparing keys
    # compares words in text order. Ids are < n_words and the sentinel is n_words.
    word_dtype = np.dtype(">u2") if n_words <= 0xFFFF else np.dtype(">u4")
    width = word_dtype.itemsize
    bits = 8 * width
    per_key = 8 // width
    n_keys = -(-max_n // per_key)
    padded = np.full(n_words + n_keys * per_key, n_words, dtype=word_dtype)
    padded[:n_words] = ids
    # Overlapping strided view: keys[k, i] = the 8 bytes of words i + k*per_key onwards.
    keys = np.ndarray((n_keys, n_words), dtype=">u8", buffer=padded, strides=(per_key * width, width)).astype(
        np.uint64
    )
    surplus = n_keys * per_key - max_n
    if surplus:
        # Clear words beyond max_n so the sort key is exactly max_n words long.
        keys[-1] &= ~np.uint64((1 << (surplus * bits)) - 1)
    order = np.lexsort(keys[::-1])  # lexsort's primary key is the last one
    sorted_keys = keys[:, order]
    # XOR of neighbours: a word agrees iff its bits are zero; words sit high to low.
    diffs = sorted_keys[:, 1:] ^ sorted_keys[:, :-1]
    full_equal = [diffs[0] == 0]
    for d in diffs[1:]:
        full_equal.append(full_equal[-1] & (d == 0))

    def same_as_prev(n: int) -> NDArray[np.bool_]:
        full, rest = divmod(n, per_key)
        if not rest:
            return full_equal[full - 1]
        same = (diffs[full] >> np.uint64(64 - rest * bits)) == 0
        return same & full_equal[full - 1] if full else same

    return order, same_as_prev


def _covered_chars(starts: NDArray[np.intp], n: int, prefix: NDArray[np.int64]) -> int:
    """Word chars in the union of the n-word spans beginning at sorted ``starts``."""
    # Each span is clipped at the next start so overlapping spans are counted once.
    if len(starts) <= _SMALL_SPAN_COUNT:
        s = starts.tolist()
        ends = [min(a + n, b) for a, b in zip(s, [*s[1:], s[-1] + n], strict=True)]
        bounds = prefix[s + ends]
        return int(bounds[len(s) :].sum() - bounds[: len(s)].sum())
    ends = np.minimum(starts + n, np.append(starts[1:], starts[-1] + n))
    return int((prefix[ends] - prefix[starts]).sum())
