"""Hand-computed values for every heuristic signal, edge cases and batch independence."""

from __future__ import annotations

import numpy as np
import pytest

from udfs.heuristics import (
    SIGNAL_DESCRIPTIONS,
    SIGNAL_DIRECTIONS,
    SIGNAL_DTYPES,
    SIGNALS,
    heuristic_signals,
)

COUNT_SIGNALS = {"word_count", "char_count", "stop_word_count"}


def score(text: str | None) -> dict[str, float]:
    """Signals of a single text as plain Python numbers."""
    out = heuristic_signals([text])
    return {name: out[name][0].item() for name in SIGNALS}


def check(text: str, **expected: float) -> None:
    got = score(text)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


# --- schema -------------------------------------------------------------------------


def test_schema_covers_every_signal_in_order():
    assert len(SIGNALS) == 19 and len(set(SIGNALS)) == 19
    assert list(SIGNAL_DESCRIPTIONS) == list(SIGNALS)
    assert list(SIGNAL_DTYPES) == list(SIGNALS)
    assert set(SIGNAL_DIRECTIONS) == set(SIGNALS)
    assert set(SIGNAL_DIRECTIONS.values()) == {"higher_is_better", "lower_is_better"}
    assert all(SIGNAL_DESCRIPTIONS[s].strip() for s in SIGNALS)
    assert {s for s in SIGNALS if SIGNAL_DTYPES[s] == np.int64} == COUNT_SIGNALS

    out = heuristic_signals(["one two", "", "three"])
    assert list(out) == list(SIGNALS)
    for name, column in out.items():
        assert column.shape == (3,)
        assert column.dtype == SIGNAL_DTYPES[name]


def test_empty_batch():
    out = heuristic_signals([])
    assert list(out) == list(SIGNALS)
    assert all(col.shape == (0,) and col.dtype == SIGNAL_DTYPES[n] for n, col in out.items())


# --- edge cases ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", None])
def test_empty_text_is_all_zeros(text):
    assert score(text) == dict.fromkeys(SIGNALS, 0)


def test_whitespace_only_text_counts_chars_only():
    got = score(" \n\t \r\n")
    assert got.pop("char_count") == 6
    assert got == dict.fromkeys(got, 0)


def test_single_word_has_no_ngrams():
    check(
        "Hello",
        word_count=1,
        char_count=5,
        mean_word_length=5.0,
        frac_words_alpha=1.0,
        frac_uppercase_chars=1 / 5,
        short_line_frac=1.0,
        frac_lines_end_punct=0.0,
        top_2gram_char_frac=0.0,
        top_3gram_char_frac=0.0,
        top_4gram_char_frac=0.0,
        dup_5gram_char_frac=0.0,
        dup_10gram_char_frac=0.0,
    )


def test_no_nan_or_inf_on_degenerate_texts():
    texts = ["", " ", "\n\n\n", "#", "...", "1", "a", "-\n-\n-", "\u2028", "日本"]
    out = heuristic_signals(texts)
    for name in SIGNALS:
        assert np.isfinite(out[name].astype(np.float64)).all(), name


# --- word and character counts --------------------------------------------------------


def test_counts_are_in_code_points_and_whitespace_words():
    # 'ï' and 'é' are one code point each (two UTF-8 bytes).
    check("naïve  café\n", word_count=2, char_count=12, mean_word_length=4.5)


def test_uppercase_and_digit_fractions_are_over_non_whitespace_chars():
    # Non-whitespace chars: Hello(5) WORLD(5) 123(3) = 13.
    check("Hello WORLD 123", frac_uppercase_chars=6 / 13, frac_digit_chars=3 / 13)
    # Unicode: Ä and Ö are uppercase, Arabic-Indic ١٢ are digits; 5 non-whitespace chars.
    check("ÄÖü ١٢", frac_uppercase_chars=2 / 5, frac_digit_chars=2 / 5)


def test_frac_words_alpha():
    # abc and x1 contain a letter; 123, !!! and ... do not.
    check("abc 123 !!! x1 ...", frac_words_alpha=2 / 5)
    # A word counts once however many letters it has, wherever they are.
    check("don't a-b-c 2x2 -- ...", frac_words_alpha=3 / 5)
    # CJK letters count as letters, Arabic-Indic digits do not.
    check("日本語 ١٢٣ Ünï", frac_words_alpha=2 / 3)


def test_symbol_word_ratio_counts_hashes_and_ellipses():
    # '#' x3 over 3 words.
    check("#tag ## x", symbol_word_ratio=1.0)
    # '...' twice ('....' holds one non-overlapping '...') and '…' once, over 4 words.
    check("wait.... really… no ...", symbol_word_ratio=3 / 4)


def test_stop_words_case_insensitive_edge_punctuation_stripped():
    # Counted: The, and, THE, (of), with.  Not: to-do, that's (inner punctuation).
    check("The cat, and THE dog (of) to-do that's with.", stop_word_count=5)
    # Every occurrence counts, not every distinct word.
    check("the the the of", stop_word_count=4)
    check("nothing here matters", stop_word_count=0)


# --- lines ------------------------------------------------------------------------------


def test_duplicate_lines():
    text = "Hello world.\nHello world.\nsomething else"
    assert len(text) == 40
    check(
        text,
        dup_line_frac=1 / 3,
        dup_line_char_frac=12 / 40,
        frac_lines_end_punct=2 / 3,
        short_line_frac=1.0,
    )


def test_duplicate_lines_ignore_blank_lines_and_surrounding_whitespace():
    # Non-empty lines: "x", "x", "x"  (blank and whitespace-only lines are dropped).
    text = "x\n\n   \n  x  \nx"
    check(text, dup_line_frac=2 / 3, dup_line_char_frac=2 / len(text), short_line_frac=1.0)


def test_line_terminal_punctuation_and_line_endings():
    # Stripped lines: "a." "b?" "c\"" "d" "e”" with \r\n and \u2028 as line breaks.
    check('a.  \r\nb?\r\nc"\u2028d\ne”', frac_lines_end_punct=4 / 5)


def test_bullet_lines():
    text = "• one\n- two\n   * three\nplain\n1. numbered"
    check(text, frac_bullet_lines=3 / 5)


def test_ellipsis_lines():
    check("wait...\nreally…\nno.\n...\nok", frac_ellipsis_lines=3 / 5)


def test_short_line_boundary_is_inclusive_at_30_chars():
    text = "x" * 30 + "\n" + "y" * 31 + "\n" + "z" * 29 + "\n" + "w" * 80
    check(text, short_line_frac=2 / 4)


# --- n-gram repetition ------------------------------------------------------------------


def test_ngram_fractions_alternating_words():
    # Words a b a b a b (6 word chars).
    # 2-grams: "a b" x3 at 0,2,4 covers all 6 words -> 1.
    # 3-grams: "a b a" x2 and "b a b" x2 tie; "a b a" occurs first, at 0 and 2 -> words
    #   0-4 -> 5/6.
    # 4-grams: "a b a b" x2 at 0 and 2 -> words 0-5 -> 1.
    # 5-grams: "a b a b a" and "b a b a b" are both unique -> 0.
    check(
        "a b a b a b",
        word_count=6,
        char_count=11,
        mean_word_length=1.0,
        top_2gram_char_frac=1.0,
        top_3gram_char_frac=5 / 6,
        top_4gram_char_frac=1.0,
        dup_5gram_char_frac=0.0,
        dup_10gram_char_frac=0.0,
    )


def test_ngram_fractions_repeated_phrase():
    # "one two three four five" twice: 38 word chars.
    # top 2-gram "one two" at 0 and 5: 2 * (3+3) = 12 chars.
    # top 3-gram "one two three": 2 * 11; top 4-gram "one two three four": 2 * 15.
    # The second copy (19 chars) is the only repeated 5-gram; 10 words hold one 10-gram.
    check(
        "one two three four five one two three four five",
        top_2gram_char_frac=12 / 38,
        top_3gram_char_frac=22 / 38,
        top_4gram_char_frac=30 / 38,
        dup_5gram_char_frac=19 / 38,
        dup_10gram_char_frac=0.0,
    )


def test_top_ngram_tie_goes_to_first_occurring_ngram():
    # "p qq", "qq rrr" and "rrr ssss" all occur twice; "p qq" comes first and covers
    # 2 * 3 of the 20 word chars (picking "rrr ssss" would give 14/20).
    check("p qq rrr ssss p qq rrr ssss", top_2gram_char_frac=6 / 20)


def test_no_repeat_still_scores_the_first_ngram():
    # All 2-grams unique: Gopher semantics score the first one, "aa b" = 3 of 9 chars.
    check("aa b ccc dd e", top_2gram_char_frac=3 / 9, top_3gram_char_frac=6 / 9)


def test_dup_ngrams_count_overlapping_repeats_once():
    # 7 x "a": 5-grams at 0, 1, 2 are equal; repeats at 1 and 2 cover words 1-6 once.
    check("a a a a a a a", dup_5gram_char_frac=6 / 7, top_2gram_char_frac=1.0)


def test_dup_10gram():
    # Ten distinct words twice: the repeated 10-gram (and all its 5-grams) is the second copy.
    words = [f"w{i}" for i in range(10)]
    check(" ".join(words * 2), dup_10gram_char_frac=0.5, dup_5gram_char_frac=0.5)
    # One word changed in the copy: no 10-gram repeats, some 5-grams still do.
    changed = words + words[:7] + ["zz"] + words[8:]
    got = score(" ".join(changed))
    assert got["dup_10gram_char_frac"] == 0.0
    # Repeated 5-grams start at 10, 11, 12 (w0-w4, w1-w5, w2-w6): words 10-16, 14 chars.
    assert got["dup_5gram_char_frac"] == pytest.approx(14 / 40)


def test_dup_10gram_overlapping_repeats_in_periodic_text():
    # 20 words, b at 5 and 12. The 10-grams at 7, 8, 9 repeat those at 0, 1, 2 (period 7);
    # the one at 10 does not (it lacks the b at offset 9). Repeats cover words 7-18 once.
    check("a a a a a b a a a a a a b a a a a a a a", dup_10gram_char_frac=12 / 20)


@pytest.mark.parametrize("n_unique", [65_525, 65_526, 70_000])
def test_ngrams_on_long_documents(n_unique):
    # Past 65 535 words (n_unique + 10) the packed sort key widens from 16 to 32 bits a word.
    head = [str(i) for i in range(n_unique)]
    text = " ".join(head + head[:10])
    word_chars = sum(map(len, head)) + 10
    got = score(text)
    assert got["word_count"] == n_unique + 10
    # The tail "0 1 ... 9" (10 chars) repeats the first ten words.
    assert got["dup_10gram_char_frac"] == pytest.approx(10 / word_chars)
    assert got["dup_5gram_char_frac"] == pytest.approx(10 / word_chars)
    # Nine 2-grams tie at two occurrences; "0 1" comes first: 2 * 2 chars.
    assert got["top_2gram_char_frac"] == pytest.approx(4 / word_chars)
    assert got["frac_digit_chars"] == 1.0 and got["frac_words_alpha"] == 0.0


# --- batch behaviour ----------------------------------------------------------------


def test_results_do_not_depend_on_batch_composition():
    texts = [
        "The quick brown fox.\nThe quick brown fox.\n",
        "",
        "a b a b a b",
        "• Ünïcödé ١٢٣ … #tag\n- second line...",
        " ".join(["lorem ipsum dolor sit amet"] * 40),
        None,
        "日本語のテキスト。\n二行目！",
    ]
    batch = heuristic_signals(texts)
    reversed_batch = heuristic_signals(texts[::-1])
    for i, text in enumerate(texts):
        alone = heuristic_signals([text])
        for name in SIGNALS:
            assert alone[name][0] == batch[name][i], (name, i)
            assert reversed_batch[name][len(texts) - 1 - i] == batch[name][i], (name, i)


def test_repetitive_text_scores_worse_than_prose_in_declared_direction():
    prose = (
        "The committee met on Tuesday to review the proposal.\n"
        "Members raised concerns about the budget and the timeline.\n"
        "A revised plan will be presented with the final report next month."
    )
    spam = "\n".join(["BUY NOW!!! #deal #deal #sale ..."] * 12)
    out = heuristic_signals([prose, spam])
    clearly_separating = [
        "dup_line_frac",
        "dup_5gram_char_frac",
        "top_2gram_char_frac",
        "symbol_word_ratio",
        "frac_uppercase_chars",
        "stop_word_count",
        "frac_ellipsis_lines",
    ]
    for name in clearly_separating:
        p, s = out[name]
        better_prose = p > s if SIGNAL_DIRECTIONS[name] == "higher_is_better" else p < s
        assert better_prose, (name, p, s)


# --- the batch computation against a per-document reference -------------------------------


def reference_signals(text: str | None) -> dict[str, float]:
    """Every signal of one document, written out as the definitions read (the specification)."""
    from collections import Counter

    from udfs.heuristics import _BULLETS, _EDGE_PUNCT, _STOP_WORDS, _TERMINAL

    text = text or ""
    words = text.split()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    n_words, n_chars, n_lines = len(words), len(text), len(lines)
    word_chars = sum(len(w) for w in words)

    def frac(a: float, b: float) -> float:
        return a / b if b else 0.0

    def chars_of(positions: set[int]) -> float:
        return frac(sum(len(words[i]) for i in positions), word_chars)

    seen_lines: set[str] = set()
    repeated_lines = []
    for line in lines:
        if line in seen_lines:
            repeated_lines.append(line)
        seen_lines.add(line)
    out = {
        "word_count": n_words,
        "char_count": n_chars,
        "mean_word_length": frac(word_chars, n_words),
        "symbol_word_ratio": frac(text.count("#") + text.count("...") + text.count("…"), n_words),
        "frac_lines_end_punct": frac(sum(line[-1] in _TERMINAL for line in lines), n_lines),
        "frac_words_alpha": frac(sum(any(c.isalpha() for c in w) for w in words), n_words),
        "frac_bullet_lines": frac(sum(line[0] in _BULLETS for line in lines), n_lines),
        "frac_ellipsis_lines": frac(sum(line.endswith(("...", "…")) for line in lines), n_lines),
        "dup_line_frac": frac(len(repeated_lines), n_lines),
        "dup_line_char_frac": frac(sum(len(line) for line in repeated_lines), n_chars),
    }
    for n in (2, 3, 4):
        grams = [tuple(words[i : i + n]) for i in range(n_words - n + 1)]
        counts = Counter(grams)
        top = 0.0
        if grams:
            best = max(counts.values())
            winner = next(g for g in grams if counts[g] == best)
            top = chars_of({i + k for i, g in enumerate(grams) if g == winner for k in range(n)})
        out[f"top_{n}gram_char_frac"] = top
    for n in (5, 10):
        seen: set[tuple[str, ...]] = set()
        inside: set[int] = set()
        for i in range(n_words - n + 1):
            gram = tuple(words[i : i + n])
            if gram in seen:
                inside.update(range(i, i + n))
            seen.add(gram)
        out[f"dup_{n}gram_char_frac"] = chars_of(inside)
    out["stop_word_count"] = sum(w.strip(_EDGE_PUNCT).lower() in _STOP_WORDS for w in words)
    out["short_line_frac"] = frac(sum(len(line) <= 30 for line in lines), n_lines)
    out["frac_uppercase_chars"] = frac(sum(c.isupper() for c in text), word_chars)
    out["frac_digit_chars"] = frac(sum(c.isdigit() for c in text), word_chars)
    return out


def varied_texts() -> list[str | None]:
    """Edge cases, then seeded random texts from a small vocabulary (repeats, ties, overlaps)."""
    edge = [
        "",
        None,
        "   ",
        " \n\t\r\n\x0b\x0c ",
        "a",
        "a b",
        "word " * 9 + "word",
        "x " * 40,
        "The the THE, of (of) To-do «that» with! HAVE? be… and-",
        "...\n…\n- item\n• bullet\n\n\n* star\nend.",
        "é É ß ǅ ǈ ½ ² ٣ ١٢ Ⅻ ⅻ 𝐀 𝟘 日本語 😀🎉 a\u0301 ﬁ",
        "dup\ndup\n dup \nx\ndup\n",
        "\u2028line\x1cword\x1d\x1e\x1fz\x85y\u2029w\u3000v\u00a0u",
        "word\r\nword\rword\nword",
        "lone \ud800 surrogate \udfff end",
        "a" * 20_000,
        "long line " * 3000,
        ("one two three four five six seven eight nine ten eleven\n") * 5,
        "1 2 3 1 2 3 1 2 3 1 2 3 1 2 3",
        "# ## ...... …… #...#",
        "a b a b a b c a b",
        "x y z x y z x y w x y z",
        "\t".join(["tab"] * 12),
        "\n".join(["short"] * 3 + ["a much longer line that has more than thirty characters in it."]),
    ]
    rng = np.random.default_rng(23)
    vocab = ["the", "The", "of", "cat", "sat", "on", "mat", "#", "...", "…", "Ünï", "日本", "42", "x1", "—"]
    vocab.append("-")
    spaces = [" ", " ", " ", "\n", "  ", "\t", "\n\n", " \n ", "\u2028", "\xa0"]
    random_texts = []
    for size in [3, 5, 9, 10, 11, 20, 60, 200, 1000]:
        for _ in range(6):
            picks = rng.integers(0, rng.integers(2, len(vocab) + 1), size)
            gaps = rng.integers(0, len(spaces), size)
            random_texts.append("".join(vocab[p] + spaces[g] for p, g in zip(picks, gaps, strict=True)))
    return edge + random_texts


def assert_equal_to_reference(texts: list[str | None]) -> None:
    got = heuristic_signals(texts)
    for i, text in enumerate(texts):
        expected = reference_signals(text)
        for name in SIGNALS:
            # Exact: the same integers divided once, so the same float to the last bit.
            assert got[name][i] == expected[name], (name, i, text if text is None else text[:80])


def test_batch_signals_equal_the_per_document_reference_exactly():
    texts = varied_texts()
    assert_equal_to_reference(texts)
    # The same documents in other batches: reversed, interleaved with blanks, one by one.
    assert_equal_to_reference(texts[::-1])
    assert_equal_to_reference([t for text in texts[:30] for t in (text, "", " ")])
    for text in texts[:25]:
        assert_equal_to_reference([text])


def test_batch_signals_equal_the_reference_on_demo_documents():
    from quadmix_spark.demo.corpus import generate_documents

    texts = [doc["text"] for doc in generate_documents(120, seed=5)]
    assert_equal_to_reference(texts)


def test_batches_split_into_chunks_score_as_one(monkeypatch):
    import udfs.heuristics

    texts = varied_texts()
    whole = heuristic_signals(texts)
    # Chunks of a few characters: most documents are larger than a chunk, many chunks are one.
    monkeypatch.setattr(udfs.heuristics, "_CHUNK_CHARS", 50)
    assert_equal_to_reference(texts)
    chunked = heuristic_signals(texts)
    for name in SIGNALS:
        assert np.array_equal(chunked[name], whole[name]) and chunked[name].dtype == whole[name].dtype
