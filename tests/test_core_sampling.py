import hashlib
import math
import warnings

import numpy as np
import pytest

from quadmix_spark.core.sampling import (
    ENTROPY_STREAM,
    HOLDOUT_STREAM,
    ORDER_STREAM,
    RUN_HOLDOUT_STREAM,
    SAMPLE_STREAM,
    STATS_DOMAIN_STREAM,
    STATS_GLOBAL_STREAM,
    domain_token_expectation,
    expected_copies_to_copies,
    hash_uniform,
    sampling_function,
    text_keys,
)

MASK = (1 << 64) - 1
G = 0x9E3779B97F4A7C15


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def reference_hash_uniform(key: int, seed: int, copy: int = 0) -> float:
    """The documented recipe with Python integers (the on-disk contract)."""
    h = _mix(((seed & MASK) + G) & MASK)
    h = _mix(((h ^ (key & MASK)) + G) & MASK)
    h = _mix(((h ^ (copy & MASK)) + G) & MASK)
    return (h >> 11) / 2.0**53


# -- Eq.3 ---------------------------------------------------------------------------------


def test_sampling_function_hand_values():
    lam, omega, eta, eps = 10.0, 0.5, 1.0, 1e-3
    r = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    got = sampling_function(r, lam, omega, eta, eps)
    expected = [2 / (1 + math.exp(-5.0)) + eps, 2 / (1 + math.exp(-2.5)) + eps, 1 + eps, eps, eps]
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert got[0] == pytest.approx(1.98761429815143, abs=1e-12)


def test_sampling_function_keeps_the_jump_at_omega():
    omega, eps = 0.1, 2e-4
    r = np.array([omega - 1e-12, omega, omega + 1e-12])
    got = sampling_function(r, 1000.0, omega, 0.7, eps)
    assert got[0] == pytest.approx(1 + eps, abs=1e-8)
    assert got[1] == 1 + eps
    assert got[2] == eps


def test_sampling_function_eta_zero_is_a_plain_filter_and_shape_is_monotone():
    r = np.linspace(0.001, 1, 1000)
    np.testing.assert_array_equal(sampling_function(r, 50.0, 0.3, 0.0, 0.0), np.where(r <= 0.3, 1.0, 0.0))
    s = sampling_function(r, 50.0, 0.3, 0.8, 1e-3)
    inside = s[r <= 0.3]
    assert (np.diff(inside) <= 0).all() and inside.max() < 2**0.8 + 1e-3 and inside.min() >= 1.001


def test_sampling_function_large_lambda_no_warnings():
    r = np.array([0.0, 0.05, 0.1, 0.5, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sampling_function(r, 1000.0, 0.1, 1.0, 1e-3)
        sampling_function(r, 1e6, 0.1, 1.0, 0.0)
    np.testing.assert_allclose(got, [2.001, 2 / (1 + math.exp(-50)) + 1e-3, 1.001, 1e-3, 1e-3])


def test_sampling_function_per_document_beta():
    d = np.array([0, 1, 0, 1])
    r = np.array([0.05, 0.05, 0.3, 0.3])
    omega = np.array([0.1, 0.5])[d]
    eta = np.array([1.0, 0.5])[d]
    got = sampling_function(r, 20.0, omega, eta, np.array([0.0, 0.01])[d])
    expected = [
        2 / (1 + math.exp(-20 * 0.05)),
        math.sqrt(2 / (1 + math.exp(-20 * 0.45))) + 0.01,
        0.0,
        math.sqrt(2 / (1 + math.exp(-20 * 0.2))) + 0.01,
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    with pytest.raises(ValueError, match="NaN"):
        sampling_function([np.nan], 1.0, 0.5, 1.0, 0.0)


# -- hash_uniform -----------------------------------------------------------------------------


def test_hash_uniform_matches_documented_recipe():
    keys = [0, 1, 2, -1, -(2**63), 2**63 - 1, 123456789012345]
    for seed in (0, 1, 2**64 + 5, -7):
        for copy in (0, 3):
            got = hash_uniform(np.array(keys, dtype=np.int64), seed, copy)
            np.testing.assert_array_equal(got, [reference_hash_uniform(k, seed, copy) for k in keys])


# Frozen outputs of (key 0, 1, -1; seed 42): if these change, every stored selection changes.
GOLDEN_SEED42 = [0.3869742762400409, 0.577125795355946, 0.32985804994312096]


def test_hash_uniform_golden_values():
    got = hash_uniform(np.array([0, 1, -1], dtype=np.int64), 42, 0)
    expected = [reference_hash_uniform(k, 42) for k in (0, 1, -1)]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, GOLDEN_SEED42)


def test_hash_uniform_deterministic_and_order_independent():
    keys = np.random.default_rng(0).integers(-(2**63), 2**63 - 1, 20000, dtype=np.int64)
    u = hash_uniform(keys, 7)
    np.testing.assert_array_equal(u, hash_uniform(keys.copy(), 7))
    perm = np.random.default_rng(1).permutation(keys.size)
    np.testing.assert_array_equal(hash_uniform(keys[perm], 7), u[perm])
    chunks = np.concatenate([hash_uniform(c, 7) for c in np.array_split(keys, 13)])
    np.testing.assert_array_equal(chunks, u)
    assert (hash_uniform(keys, 8) != u).mean() > 0.999
    assert (hash_uniform(keys, 7, 1) != u).mean() > 0.999
    np.testing.assert_array_equal(hash_uniform(keys, 7, np.zeros(keys.size, dtype=np.int64)), u)
    np.testing.assert_array_equal(hash_uniform(keys.view(np.uint64), 7), u)
    assert hash_uniform(int(keys[5]), 7) == u[5]


def test_hash_uniform_is_uniform_and_streams_independent():
    keys = np.arange(100_000, dtype=np.int64)  # sequential keys: the hard case for a weak mix
    u = hash_uniform(keys, 2024)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    assert abs(u.var() - 1 / 12) < 0.002
    ks = np.abs(np.sort(u) - (np.arange(u.size) + 0.5) / u.size).max()
    assert ks < 0.006  # ~ the 1% critical value 1.63/sqrt(n) = 0.0052
    assert abs(np.corrcoef(u, hash_uniform(keys, 2024, 1))[0, 1]) < 0.01
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert counts.min() > 9600 and counts.max() < 10400


def test_hash_uniform_rejects_float_keys():
    with pytest.raises(TypeError, match="keys must be integers"):
        hash_uniform(np.array([1.0, 2.0]), 0)


# -- copies ----------------------------------------------------------------------------------


def test_copies_floor_plus_bernoulli_at_the_boundary():
    S = np.array([1.3, 1.3, 0.0, 2.0, 0.001, 0.001])
    u = np.array([0.2999, 0.3001, 0.0, 0.999, 0.0, 0.001])
    got = expected_copies_to_copies(S, u)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [2, 1, 0, 2, 1, 0])


def test_copies_have_the_right_expectation():
    keys = np.arange(200_000, dtype=np.int64)
    S = np.full(keys.size, 1.37)
    copies = expected_copies_to_copies(S, hash_uniform(keys, 3))
    assert set(np.unique(copies)) == {1, 2}
    assert abs(copies.mean() - 1.37) < 0.005


def test_copies_validation():
    with pytest.raises(ValueError, match="S must be finite and >= 0"):
        expected_copies_to_copies([-0.1], [0.5])
    with pytest.raises(ValueError, match=r"u must be in \[0, 1\)"):
        expected_copies_to_copies([0.5], [1.0])


def test_domain_token_expectation():
    got = domain_token_expectation([0, 1, 0], [10, 20, 30], [1.5, 0.5, 0.001], 3)
    np.testing.assert_allclose(got, [15.03, 10.0, 0.0], rtol=1e-14)
    with pytest.raises(ValueError, match="outside"):
        domain_token_expectation([3], [1], [1.0], 3)


def test_text_keys_are_the_documented_sha256_prefix():
    texts = ["run-0001", "7", "07", "ünïcode"]
    expected = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big", signed=True) for t in texts]
    got = text_keys(texts)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert len(set(got.tolist())) == 4  # "7" and "07" are different ids


def test_streams_are_distinct():
    streams = [SAMPLE_STREAM, SAMPLE_STREAM + 1, ORDER_STREAM, HOLDOUT_STREAM, HOLDOUT_STREAM + 1]
    streams += [STATS_DOMAIN_STREAM, STATS_GLOBAL_STREAM, RUN_HOLDOUT_STREAM]
    streams += [ENTROPY_STREAM, ENTROPY_STREAM + 1]
    assert len(set(streams)) == len(streams)
    assert 0 not in streams  # copy draws use 0, 1, ...
