import json
import pickle

import numpy as np
import pytest

from quadmix_spark.core.merging import merge_scores
from quadmix_spark.core.ranking import (
    RankMapping,
    apply_rank_mapping,
    fit_rank_mapping,
    token_weighted_rank,
)


def brute_force_rank(q, d, t):
    """Eq.2 straight from the definition, O(n²)."""
    q, d, t = map(np.asarray, (q, d, t))
    out = np.empty(q.size)
    for i in range(q.size):
        same = d == d[i]
        out[i] = t[same & (q <= q[i])].sum() / t[same].sum()
    return out


def random_data(n, n_domains, seed, n_levels=20):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, n_levels, n) / n_levels  # coarse values: many exact ties
    d = rng.integers(0, n_domains, n)
    t = rng.integers(1, 500, n)
    return q, d, t


# -- merging (Eq.1) ------------------------------------------------------------------------


def test_merge_scores_uses_each_documents_domain_row():
    sigma = np.array([[0.1, 0.9], [0.1, 0.9], [0.5, 0.5]])
    alpha = np.array([[1.0, 0.0], [0.25, 0.75]])
    got = merge_scores(sigma, [0, 1, 1], alpha)
    np.testing.assert_allclose(got, [0.1, 0.025 + 0.675, 0.5], rtol=0, atol=1e-15)


def test_merge_scores_is_batch_independent_bitwise():
    rng = np.random.default_rng(3)
    sigma, d = rng.random((1001, 3)), rng.integers(0, 4, 1001)
    alpha = rng.dirichlet(np.ones(3), size=4)
    whole = merge_scores(sigma, d, alpha)
    parts = [merge_scores(sigma[i : i + 97], d[i : i + 97], alpha) for i in range(0, 1001, 97)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


def test_merge_scores_validates_shapes_and_values():
    with pytest.raises(ValueError, match=r"alpha must have shape \(M, 2\)"):
        merge_scores(np.zeros((2, 2)), [0, 0], np.ones((1, 3)) / 3)
    with pytest.raises(ValueError, match=r"domain_idx contains 2, outside \[0, 2\)"):
        merge_scores(np.zeros((2, 2)), [0, 2], np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        merge_scores(np.array([[np.nan, 0.0]]), [0], np.full((1, 2), 0.5))
    with pytest.raises(TypeError, match="integers"):
        merge_scores(np.zeros((1, 2)), [0.0], np.full((1, 2), 0.5))


# -- exact rank (Eq.2) -----------------------------------------------------------------------


def test_rank_distinct_scores_is_token_weighted():
    got = token_weighted_rank([0.1, 0.2, 0.3], [0, 0, 0], [1, 2, 3], 1)
    np.testing.assert_array_equal(got, [1 / 6, 3 / 6, 6 / 6])
    shuffled = token_weighted_rank([0.3, 0.1, 0.2], [0, 0, 0], [3, 1, 2], 1)
    np.testing.assert_array_equal(shuffled, [6 / 6, 1 / 6, 3 / 6])


def test_rank_ties_are_inclusive_and_equal():
    got = token_weighted_rank([0.2, 0.1, 0.2], [0, 0, 0], [1, 2, 3], 1)
    np.testing.assert_array_equal(got, [1.0, 2 / 6, 1.0])


def test_rank_is_per_domain_with_interleaved_domains():
    q = [0.3, 0.5, 0.1, 0.2, 0.2]
    d = [0, 1, 0, 1, 0]
    t = [1, 1, 2, 3, 4]
    # domain 0: 0.1 (2 tok), 0.2 (4), 0.3 (1) of 7; domain 1: 0.2 (3), 0.5 (1) of 4
    np.testing.assert_array_equal(token_weighted_rank(q, d, t, 3), [1.0, 1.0, 2 / 7, 3 / 4, 6 / 7])


def test_rank_matches_definition_and_ignores_row_order():
    q, d, t = random_data(600, 4, seed=5)
    got = token_weighted_rank(q, d, t, 4)
    np.testing.assert_allclose(got, brute_force_rank(q, d, t), rtol=0, atol=1e-15)
    assert got.min() > 0 and got.max() == 1.0
    for m in range(4):
        assert got[d == m].max() == 1.0  # the worst document of each domain
    perm = np.random.default_rng(6).permutation(q.size)
    np.testing.assert_array_equal(token_weighted_rank(q[perm], d[perm], t[perm], 4), got[perm])


def test_rank_of_a_domain_ignores_other_domains():
    q, d, t = random_data(300, 2, seed=7)
    alone = token_weighted_rank(q[d == 0], d[d == 0], t[d == 0], 2)
    together = token_weighted_rank(q, d, t, 2)[d == 0]
    np.testing.assert_array_equal(alone, together)


def test_rank_empty_input_and_validation():
    assert token_weighted_rank([], np.array([], dtype=int), [], 2).shape == (0,)
    with pytest.raises(ValueError, match=r"tokens must be >= 1 \(row 1 has 0\)"):
        token_weighted_rank([0.1, 0.2], [0, 0], [3, 0], 1)
    with pytest.raises(ValueError, match="whole numbers"):
        token_weighted_rank([0.1, 0.2], [0, 0], [3, 1.5], 1)
    with pytest.raises(ValueError, match="NaN"):
        token_weighted_rank([0.1, np.nan], [0, 0], [3, 1], 1)
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        token_weighted_rank([0.1, 0.2], [0, 1], [3, 1], 1)
    # integral float token counts (e.g. from pandas) are fine
    np.testing.assert_array_equal(token_weighted_rank([0.1, 0.2], [0, 0], [3.0, 1.0], 1), [0.75, 1.0])


# -- scalable mapping ------------------------------------------------------------------------


def test_mapping_hand_case_with_floor():
    mapping = fit_rank_mapping([0.3, 0.1, 0.2], [0, 0, 0], [2, 1, 1], 1)
    np.testing.assert_array_equal(mapping.knots[0], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(mapping.fractions[0], [0.25, 0.5, 1.0])
    got = apply_rank_mapping(mapping, [0.05, 0.1, 0.15, 0.2, 0.3, 0.9], [0] * 6)
    # 0.05 is better than every knot: floor = smallest positive fraction (0.25)
    np.testing.assert_array_equal(got, [0.25, 0.25, 0.25, 0.5, 1.0, 1.0])


def test_mapping_on_its_own_data_equals_exact_rank():
    q, d, t = random_data(5000, 6, seed=11)
    exact = token_weighted_rank(q, d, t, 6)
    mapping = fit_rank_mapping(q, d, t, 6)
    np.testing.assert_array_equal(apply_rank_mapping(mapping, q, d), exact)
    # also with continuous merged scores from Eq.1
    rng = np.random.default_rng(12)
    sigma, alpha = rng.random((3000, 3)), rng.dirichlet(np.ones(3), size=6)
    dd, tt = rng.integers(0, 6, 3000), rng.integers(1, 900, 3000)
    merged = merge_scores(sigma, dd, alpha)
    exact = token_weighted_rank(merged, dd, tt, 6)
    np.testing.assert_array_equal(apply_rank_mapping(fit_rank_mapping(merged, dd, tt, 6), merged, dd), exact)


def test_mapping_from_sample_approximates_full_rank_and_is_batch_independent():
    rng = np.random.default_rng(13)
    q, d = rng.random(40000), rng.integers(0, 3, 40000)
    t = rng.integers(1, 100, 40000)
    sample = rng.choice(q.size, 6000, replace=False)
    mapping = fit_rank_mapping(q[sample], d[sample], t[sample], 3)
    approx = apply_rank_mapping(mapping, q, d)
    assert np.abs(approx - token_weighted_rank(q, d, t, 3)).max() < 0.05
    assert approx.min() > 0 and approx.max() <= 1.0
    parts = [apply_rank_mapping(mapping, q[i : i + 999], d[i : i + 999]) for i in range(0, 40000, 999)]
    np.testing.assert_array_equal(np.concatenate(parts), approx)


def test_mapping_serialises_exactly():
    q, d, t = random_data(500, 3, seed=17, n_levels=1000)
    q = q + 1e-9 / 3  # awkward floats
    mapping = fit_rank_mapping(q, d, t, 4)  # domain 3 absent from the sample
    restored = RankMapping.from_dict(json.loads(json.dumps(mapping.to_dict())))
    unpickled = pickle.loads(pickle.dumps(mapping))
    for other in (restored, unpickled):
        assert other.n_domains == 4
        for m in range(4):
            np.testing.assert_array_equal(other.knots[m], mapping.knots[m])
            np.testing.assert_array_equal(other.fractions[m], mapping.fractions[m])
    np.testing.assert_array_equal(apply_rank_mapping(restored, q, d), token_weighted_rank(q, d, t, 4))
    with pytest.raises(ValueError, match="domain 3 has no sample documents"):
        apply_rank_mapping(restored, [0.5, 0.5], [0, 3])


def test_mapping_rejects_inconsistent_knots():
    with pytest.raises(ValueError, match="domain 0: fractions must increase"):
        RankMapping(([0.1, 0.2],), ([0.5, 0.9],))
    with pytest.raises(ValueError, match="domain 0: knots must be finite and strictly increasing"):
        RankMapping(([0.2, 0.1],), ([0.5, 1.0],))
    with pytest.raises(ValueError, match="unsupported RankMapping version"):
        RankMapping.from_dict({"version": 2, "n_domains": 0, "knots": [], "fractions": []})
