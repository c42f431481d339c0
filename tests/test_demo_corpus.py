"""Tests for the deterministic demo corpus (a few thousand small docs, a few seconds)."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter

import pyarrow.parquet as pq
import pytest

from quadmix_spark.demo import corpus as demo_corpus
from quadmix_spark.demo import sources as demo_sources
from quadmix_spark.demo.corpus import (
    BOILERPLATE_MARKERS,
    DEFECTS,
    DOMAINS,
    FIELDS,
    MALFORMED_KINDS,
    VERY_LONG_MIN_CHARS,
    generate_documents,
    write_corpus,
)
from quadmix_spark.demo.sources import clean_paragraphs, load_pools


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return list(generate_documents(2000, seed=7))


@pytest.fixture(scope="module")
def defective() -> list[dict]:
    return list(generate_documents(600, seed=11, defect_rate=1.0))


def _non_ascii_share(text: str) -> float:
    visible = [c for c in text if not c.isspace()]
    return sum(ord(c) > 127 for c in visible) / max(len(visible), 1)


def _looks_stuffed(text: str) -> bool:
    """A few content words repeated often and making up much of the text."""
    words = [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 5]
    top = Counter(words).most_common(6)
    return bool(top) and top[0][1] >= 10 and sum(n for _, n in top) / len(words) >= 0.45


def _bigrams(text: str) -> set[tuple[str, str]]:
    words = text.split()
    return set(zip(words, words[1:], strict=False))


def test_generation_is_deterministic_and_range_splittable() -> None:
    full = list(generate_documents(60, seed=3))
    assert full == list(generate_documents(60, seed=3))
    assert list(generate_documents(20, seed=3, start=25)) == full[25:45]
    assert [d["id"] for d in full[:3]] == ["demo-00000000", "demo-00000001", "demo-00000002"]
    other = list(generate_documents(60, seed=4))
    assert sum(a["text"] != b["text"] for a, b in zip(full, other, strict=True)) >= 55


def test_records_have_schema_and_consistent_labels(docs: list[dict]) -> None:
    for d in docs:
        assert tuple(d) == FIELDS
        assert re.fullmatch(r"demo-\d{8}", d["id"])
        assert re.fullmatch(r"https://www\.[a-z]+\.[a-z]+/20\d\d/\d\d/[a-z0-9-]+", d["url"])
        assert d["url"].endswith(f"-{int(d['id'][5:]):x}")
        assert (d["quality"] == "high") == (d["defect"] == "none")
        assert (d["lang"] == "en") == (d["defect"] != "non_english")
    assert len({d["url"] for d in docs}) == len(docs)
    low = sum(d["quality"] == "low" for d in docs) / len(docs)
    assert 0.30 < low < 0.40


def test_at_least_eight_domains_with_distinct_vocabularies(docs: list[dict]) -> None:
    counts = Counter(d["true_domain"] for d in docs)
    assert set(counts) <= set(DOMAINS) and len(counts) >= 8
    assert min(counts.values()) >= 50
    # A plain multinomial naive Bayes on half the clean docs must label the other
    # half well; that only works if the domains really differ in vocabulary.
    clean = [d for d in docs if d["defect"] == "none"]
    train, held_out = clean[::2], clean[1::2]
    freq: dict[str, Counter] = {}
    for d in train:
        freq.setdefault(d["true_domain"], Counter()).update(re.findall(r"[a-z]+", d["text"].lower()))
    totals = {dom: sum(c.values()) for dom, c in freq.items()}

    def predict(text: str) -> str:
        words = re.findall(r"[a-z]+", text.lower())
        return max(
            freq,
            key=lambda dom: sum(math.log((freq[dom][w] + 1) / (totals[dom] + 50_000)) for w in words),
        )

    accuracy = statistics.mean(predict(d["text"]) == d["true_domain"] for d in held_out)
    assert accuracy > 0.85


def test_clean_length_distribution_is_heavy_tailed(docs: list[dict]) -> None:
    sizes = [len(d["text"].encode()) for d in docs if d["defect"] == "none"]
    assert 1000 < statistics.median(sizes) < 2200
    assert any(s > 10_000 for s in sizes)
    assert min(sizes) >= 250 and max(sizes) < VERY_LONG_MIN_CHARS


def test_every_defect_kind_appears_with_its_signature(defective: list[dict]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for d in defective:
        by_kind.setdefault(d["defect"], []).append(d)
    expected = set(DEFECTS) if load_pools().foreign else set(DEFECTS) - {"non_english"}
    assert set(by_kind) == expected
    assert all(len(d["text"].split()) < 10 for d in by_kind["very_short"])
    assert all(len(d["text"].encode()) >= 100 * 1024 for d in by_kind["very_long"])
    assert all(d["text"][-1].isalnum() for d in by_kind["truncated"])
    assert all("Home | About | Contact" in d["text"] for d in by_kind["boilerplate"])
    for d in by_kind["repeated_lines"]:
        lines = [ln for ln in d["text"].splitlines() if ln.strip()]
        assert Counter(lines).most_common(1)[0][1] >= 3
    assert all(_looks_stuffed(d["text"]) for d in by_kind["keyword_spam"])


def test_keyword_stuffing_signature_is_rare_in_clean_docs(docs: list[dict]) -> None:
    clean = [d for d in docs if d["defect"] == "none"]
    assert sum(map(_looks_stuffed, (d["text"] for d in clean))) / len(clean) < 0.01


def test_shuffled_words_break_word_order(defective: list[dict], docs: list[dict]) -> None:
    pools = load_pools()

    def in_pool_share(d: dict) -> float:
        pool = set().union(*(_bigrams(" ".join(p)) for p in pools.domains[d["true_domain"]]))
        grams = _bigrams(d["text"])
        return len(grams & pool) / max(len(grams), 1)

    shuffled = [d for d in defective if d["defect"] == "shuffled_words"][:10]
    clean = [d for d in docs if d["defect"] == "none"][:10]
    assert max(map(in_pool_share, shuffled)) < 0.5
    assert min(map(in_pool_share, clean)) > 0.8


def test_non_english_docs_are_non_ascii_heavy(docs: list[dict], defective: list[dict]) -> None:
    foreign = [d for d in docs + defective if d["defect"] == "non_english"]
    if not load_pools().foreign:
        pytest.skip("stdlib test package with non-English samples is not installed")
    assert len(foreign) >= 20 and {d["lang"] for d in foreign} <= {"zh", "ja", "ko"}
    assert min(_non_ascii_share(d["text"]) for d in foreign) > 0.5
    english = [d for d in docs if d["defect"] == "none"]
    assert statistics.mean(_non_ascii_share(d["text"]) for d in english) < 0.01


def test_clean_docs_have_no_boilerplate_markers(docs: list[dict]) -> None:
    clean = [d for d in docs if d["defect"] == "none"]
    assert len(clean) > 1000
    assert not [d["id"] for d in clean if any(m in d["text"] for m in BOILERPLATE_MARKERS)]


def test_clean_paragraphs_drop_code_and_markup() -> None:
    doc = (
        "Return the sum of the values along the given axis, ignoring :func:`nan`\n"
        "entries in ``a``.\n\n"
        ">>> np.nansum([1, 2])\n3\n\nParameters\n----------\n"
        "axis : int, optional\n"
        "    Axis along which the sum is computed over the flattened input array."
    )
    assert clean_paragraphs(doc) == [
        "Return the sum of the values along the given axis, ignoring nan entries in a.",
        "Axis along which the sum is computed over the flattened input array.",
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_write_jsonl_round_trip(tmp_path, workers: int) -> None:
    summary = write_corpus(tmp_path, n_docs=300, seed=5, fmt="jsonl", docs_per_file=128, workers=workers)
    files = sorted(tmp_path.glob("part-*.jsonl"))
    assert (
        [f.name for f in files]
        == summary["files"]
        == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    )
    records = [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    assert records == list(generate_documents(300, seed=5))
    assert summary["docs"] == 300 and sum(summary["per_defect"].values()) == 300
    assert summary["per_domain"] == dict(sorted(Counter(r["true_domain"] for r in records).items()))
    assert summary["bytes"] == sum(f.stat().st_size for f in files)
    assert json.loads((tmp_path / "_summary.json").read_text())["docs"] == 300


def test_write_parquet_round_trip(tmp_path) -> None:
    summary = write_corpus(tmp_path, n_docs=250, seed=5, fmt="parquet", docs_per_file=100)
    table = pq.read_table(sorted(tmp_path.glob("part-*.parquet")))
    assert table.column_names == list(FIELDS) and table.num_rows == 250 == summary["docs"]
    assert table.column("id").to_pylist() == [f"demo-{i:08d}" for i in range(250)]
    assert table.to_pylist()[:50] == list(generate_documents(50, seed=5))


def test_malformed_injection_is_counted_and_really_malformed(tmp_path) -> None:
    summary = write_corpus(tmp_path, n_docs=400, seed=2, malformed_rate=0.1, docs_per_file=150)
    found: Counter = Counter()
    ids: set[str] = set()
    good = 0
    for f in sorted(tmp_path.glob("part-*.jsonl")):
        for raw in f.read_bytes().splitlines():
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                found["invalid_utf8"] += 1
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                found["invalid_json"] += 1
                continue
            if rec["id"] in ids:
                found["duplicate_id"] += 1
            elif rec["text"] is None:
                found["null_text"] += 1
            elif rec["text"] == "":
                found["empty_text"] += 1
            elif not isinstance(rec["text"], str):
                found["numeric_text"] += 1
            else:
                good += 1
            ids.add(rec["id"])
    assert good == 400
    assert set(found) == set(MALFORMED_KINDS)
    assert dict(sorted(found.items())) == summary["malformed"]
    assert 20 <= summary["malformed_total"] <= 60
    with pytest.raises(ValueError):
        write_corpus(tmp_path, n_docs=10, fmt="parquet", malformed_rate=0.1)


def _clear_caches() -> None:
    for fn in (demo_sources.load_pools, demo_corpus._plan, demo_corpus._keywords):
        fn.cache_clear()


def test_missing_sources_degrade_gracefully(monkeypatch) -> None:
    real = demo_sources._source_texts

    def without_dataframe_libs(source: str) -> list[str]:
        if source.startswith(("pandas", "pyspark")):
            raise ImportError(source)
        return real(source)

    monkeypatch.setattr(demo_sources, "_source_texts", without_dataframe_libs)
    monkeypatch.setattr(demo_sources, "_TEST_PACKAGE", "no_such_test_package")
    _clear_caches()
    try:
        pools = load_pools()
        assert "dataframes" not in pools.domains and not pools.foreign
        assert any("pandas" in m for m in pools.missing)
        assert any("test package" in m for m in pools.missing)
        docs = list(generate_documents(300, seed=1, defect_rate=1.0))
        assert {d["defect"] for d in docs} == set(DEFECTS) - {"non_english"}
        assert len({d["true_domain"] for d in docs}) == len(DOMAINS) - 1
    finally:
        _clear_caches()  # later tests must see the real pools again
