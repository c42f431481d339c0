"""Entropy mixtures' numpy core: SE/JE/CE against a direct computation, VNE's limits, the softmax."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from quadmix_spark.core import Mixture
from quadmix_spark.mixing.entropy import (
    count_histogram,
    entropies_from_histograms,
    entropy_from_counts,
    entropy_from_histogram,
    miller_madow_correction,
    ngram_counts,
    sequence_entropies,
    softmax_mixture,
    von_neumann_entropy,
)


def direct(documents: list[list[int]]) -> dict[str, float]:
    """The textbook definitions with Counters and plain probabilities, one document at a time."""
    uni = Counter(t for d in documents for t in d)
    pairs = Counter((a, b) for d in documents for a, b in zip(d[:-1], d[1:], strict=True))
    n_uni, n_pair = sum(uni.values()), sum(pairs.values())
    left = Counter()
    for (a, _), c in pairs.items():
        left[a] += c
    se = -sum(c / n_uni * math.log(c / n_uni) for c in uni.values())
    je = -sum(c / n_pair * math.log(c / n_pair) for c in pairs.values())
    # H(X'|X) = −Σ P(x, x') log P(x' | x), with P(x' | x) = c(x, x') / c(x as a left token)
    ce = -sum(c / n_pair * math.log(c / left[a]) for (a, _), c in pairs.items())
    return {"se": se, "je": je, "ce": ce}


def small_corpus(seed: int = 0, n_docs: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    # A Markov chain over 30 tokens: CE is well below JE and SE
    trans = rng.dirichlet(np.full(30, 0.3), size=30)
    docs = []
    for _ in range(n_docs):
        x = [int(rng.integers(30))]
        for _ in range(int(rng.integers(0, 60))):
            x.append(int(rng.choice(30, p=trans[x[-1]])))
        docs.append(x)
    return docs + [[], [7]]  # an empty document and one without a pair


def test_sequence_entropies_match_the_definitions():
    docs = small_corpus()
    got, want = sequence_entropies(docs), direct(docs)
    for m in ("se", "je", "ce"):
        assert got[m] == pytest.approx(want[m], rel=1e-13, abs=1e-13)
    assert got["ce"] < got["se"] < got["je"]  # a Markov source: the successor is predictable


def test_pairs_never_cross_documents():
    counts = ngram_counts([[1, 2], [3, 4]])
    pairs = {(int(c) >> 32, int(c) & 0xFFFFFFFF): int(n) for c, n in zip(*counts["pair"], strict=True)}
    assert pairs == {(1, 2): 1, (3, 4): 1}  # no (2, 3)
    np.testing.assert_array_equal(counts["left"][0], [1, 3])
    np.testing.assert_array_equal(counts["unigram"][1], [1, 1, 1, 1])


def test_known_values():
    assert entropy_from_counts([5, 5, 5, 5]) == pytest.approx(math.log(4), abs=1e-15)
    assert entropy_from_counts([9, 0, 0]) == 0.0
    # one deterministic chain 0 → 1 → 2 → 0 …: H(X'|X) = 0, H(X, X') = H(X)
    h = sequence_entropies([[0, 1, 2] * 20])
    assert h["ce"] == pytest.approx(0.0, abs=1e-12)
    assert h["je"] == pytest.approx(entropy_from_counts([20, 20, 19]), rel=1e-14)  # (0,1) (1,2) (2,0)
    with pytest.raises(ValueError, match="empty sample"):
        entropy_from_counts([0, 0])


def test_the_histogram_order_and_summation_do_not_change_the_bits():
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 50, size=5000)
    c, n = count_histogram(counts)
    perm = rng.permutation(len(c))
    assert entropy_from_histogram(c, n) == entropy_from_histogram(c[perm], n[perm])
    # the histograms of parts, added, give the same bits as the whole
    docs = small_corpus(seed=4)
    whole = sequence_entropies(docs)
    parts = [ngram_counts(docs[:15]), ngram_counts(docs[15:])]
    merged = {}
    for kind in ("unigram", "pair", "left"):
        total = Counter()
        for part in parts:
            total.update(dict(zip(part[kind][0].tolist(), part[kind][1].tolist(), strict=True)))
        merged[kind] = count_histogram(list(total.values()))
    assert entropies_from_histograms(merged) == whole


def test_von_neumann_entropy_limits():
    rng = np.random.default_rng(0)
    v = rng.normal(size=16)
    assert von_neumann_entropy(np.tile(v, (50, 1))) == pytest.approx(0.0, abs=1e-9)
    assert von_neumann_entropy(np.tile(v, (50, 1)) * rng.uniform(0.5, 3, (50, 1))) == pytest.approx(
        0.0, abs=1e-9
    )  # lengths do not matter: the kernel is the cosine
    for n in (1, 5, 16):
        q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
        assert von_neumann_entropy(q[:n] * 3.0) == pytest.approx(math.log(n), abs=1e-9)
    # two equal-sized clusters of identical vectors, orthogonal to each other: log 2
    e = np.eye(8)
    assert von_neumann_entropy(np.vstack([np.tile(e[0], (7, 1)), np.tile(e[1], (7, 1))])) == pytest.approx(
        math.log(2), abs=1e-9
    )
    with pytest.raises(ValueError, match="zero vectors"):
        von_neumann_entropy(np.vstack([v, np.zeros(16)]))


def test_von_neumann_entropy_through_the_small_side_equals_the_n_by_n_kernel():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(200, 12)) + 0.5  # N > d: decomposed through the d × d matrix
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    lam = np.linalg.eigvalsh(u @ u.T / len(u))
    lam = lam[lam > 1e-12]
    assert von_neumann_entropy(v) == pytest.approx(float(-(lam * np.log(lam)).sum()), rel=1e-10)
    assert 0 < von_neumann_entropy(v) < math.log(12)


def test_softmax_mixture():
    h = {"code": 3.0, "web": 5.0, "arxiv": 4.0}
    mix = softmax_mixture(h, method="entropy:se")
    z = sum(math.exp(x) for x in h.values())
    for d, x in h.items():
        assert mix.shares[d] == pytest.approx(math.exp(x) / z, rel=1e-14)
    assert mix.domains == ["arxiv", "code", "web"] and mix.provenance["method"] == "entropy:se"
    # large entropies (a 200k vocabulary) do not overflow; equal entropies are uniform
    big = softmax_mixture({"a": 800.0, "b": 800.0 + math.log(3)})
    assert big.shares["b"] == pytest.approx(0.75, rel=1e-12)
    assert softmax_mixture({"a": 1.0, "b": 1.0}).shares == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="finite"):
        softmax_mixture({"a": float("nan")})


def test_miller_madow_against_hand_computed_counts():
    # counts 3, 1, 1, 0: N = 5 items, K = 3 codes seen; H = −(.6 ln .6 + 2 · .2 ln .2)
    plugin = -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2))
    assert entropy_from_counts([3, 1, 1, 0]) == pytest.approx(plugin, rel=1e-15)
    assert miller_madow_correction([1, 3], [2, 1]) == (3 - 1) / (2 * 5)
    assert entropy_from_counts([3, 1, 1, 0], estimator="miller_madow") == pytest.approx(
        plugin + 0.2, rel=1e-15
    )
    # one code: H = 0 and K − 1 = 0, nothing to correct
    assert entropy_from_histogram([7], [1], estimator="miller_madow") == 0.0
    with pytest.raises(ValueError, match="estimator must be one of"):
        entropy_from_counts([1, 2], estimator="bayes")


def test_miller_madow_entropies_add_each_kinds_correction():
    docs = small_corpus(seed=3)
    counts = ngram_counts(docs)
    plugin, mm = sequence_entropies(docs), sequence_entropies(docs, "miller_madow")
    k = {kind: len(codes) for kind, (codes, _) in counts.items()}
    n = {kind: int(c.sum()) for kind, (_, c) in counts.items()}
    assert n["pair"] == n["left"]
    assert mm["se"] == pytest.approx(plugin["se"] + (k["unigram"] - 1) / (2 * n["unigram"]), rel=1e-14)
    assert mm["je"] == pytest.approx(plugin["je"] + (k["pair"] - 1) / (2 * n["pair"]), rel=1e-14)
    # CE = JE − H(left): the corrections' difference, = Σ_x (K_x − 1) / (2N) over left tokens x
    per_left = Counter(int(code) >> 32 for code in counts["pair"][0])
    by_context = sum(kx - 1 for kx in per_left.values()) / (2 * n["pair"])
    assert mm["ce"] == pytest.approx(plugin["ce"] + (k["pair"] - k["left"]) / (2 * n["pair"]), rel=1e-14)
    assert mm["ce"] == pytest.approx(plugin["ce"] + by_context, rel=1e-14)
    hist = {kind: count_histogram(c) for kind, (_, c) in counts.items()}
    assert entropies_from_histograms(hist, "miller_madow") == mm


def test_softmax_temperature():
    h = {"code": 3.0, "web": 5.0, "arxiv": 4.0}
    before = np.exp(np.array([4.0, 3.0, 5.0]) - 5.0)  # the shares as computed before T existed
    old = Mixture.from_shares(
        dict(zip(["arxiv", "code", "web"], (before / before.sum()).tolist(), strict=True))
    )
    assert softmax_mixture(h, 1.0).shares == old.shares  # bit for bit
    assert softmax_mixture(h, 1.0).shares == softmax_mixture(h).shares
    for t in (0.5, 2.0, math.log(2)):
        z = sum(math.exp(x / t) for x in h.values())
        for d, x in h.items():
            assert softmax_mixture(h, t).shares[d] == pytest.approx(math.exp(x / t) / z, rel=1e-13)
    # hotter is flatter, toward uniform
    spread = [max(softmax_mixture(h, t).shares.values()) - 1 / 3 for t in (1.0, 10.0, 1e3, 1e6)]
    assert spread == sorted(spread, reverse=True) and spread[-1] < 1e-6
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature must be"):
            softmax_mixture(h, bad)
