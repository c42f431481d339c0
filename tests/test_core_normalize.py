import numpy as np
import pytest

from quadmix_spark.core.normalize import (
    build_reference,
    orient,
    percentile_against,
    percentile_matrix,
)


def test_orient_negates_only_higher_is_better_and_copies():
    raw = np.array([0.9, 0.1, 0.5])
    np.testing.assert_array_equal(orient(raw, True), [-0.9, -0.1, -0.5])
    low = orient(raw, False)
    np.testing.assert_array_equal(low, raw)
    low[0] = 42.0
    assert raw[0] == 0.9  # a new array, never a view of the caller's data
    assert orient([1, 2], False).dtype == np.float64


def test_build_reference_is_sorted_and_oriented():
    np.testing.assert_array_equal(build_reference([0.9, 0.1, 0.5], True), [-0.9, -0.5, -0.1])
    np.testing.assert_array_equal(build_reference([[0.9], [0.1], [0.5]], False), [0.1, 0.5, 0.9])


@pytest.mark.parametrize("bad, msg", [([], "empty"), ([0.1, np.nan], "NaN"), ([np.inf], "finite")])
def test_build_reference_rejects_bad_samples(bad, msg):
    with pytest.raises(ValueError, match=msg):
        build_reference(bad, False, name="dclm")


def test_percentile_lower_is_better_inclusive():
    ref = build_reference([1.0, 2.0, 3.0, 4.0], False)
    got = percentile_against([0.5, 1.0, 2.5, 4.0, 5.0], ref, False)
    np.testing.assert_array_equal(got, [0.0, 0.25, 0.5, 1.0, 1.0])


def test_percentile_higher_is_better_best_gets_smallest():
    ref = build_reference([1.0, 2.0, 3.0, 4.0], True)
    got = percentile_against([5.0, 4.0, 2.5, 1.0, 0.5], ref, True)
    # fraction of the sample that is >= the value: 0, 1/4, 2/4, 4/4, 4/4
    np.testing.assert_array_equal(got, [0.0, 0.25, 0.5, 1.0, 1.0])


def test_percentile_counts_ties_in_reference():
    ref = build_reference([1.0, 1.0, 2.0, 3.0], False)
    np.testing.assert_array_equal(percentile_against([1.0, 0.99], ref, False), [0.5, 0.0])


def test_percentile_keeps_shape_and_is_batch_and_order_independent():
    rng = np.random.default_rng(0)
    ref = build_reference(rng.random(1000), True)
    values = rng.random(5000)
    whole = percentile_against(values, ref, True)
    parts = np.concatenate([percentile_against(v, ref, True) for v in np.array_split(values, 7)])
    np.testing.assert_array_equal(whole, parts)
    perm = rng.permutation(values.size)
    np.testing.assert_array_equal(percentile_against(values[perm], ref, True), whole[perm])
    assert percentile_against(values.reshape(50, 100), ref, True).shape == (50, 100)
    # against its own uniform sample, σ ≈ 1 - value for a higher-is-better scorer
    assert np.abs(whole - (1 - values)).max() < 0.06


def test_percentile_nan_raises_and_names_scorer():
    ref = build_reference([1.0, 2.0], False)
    with pytest.raises(ValueError, match=r"dclm: 1 NaN score\(s\) \(first at flat index 2\)"):
        percentile_against([1.0, 2.0, np.nan], ref, False, name="dclm")


def test_percentile_rejects_unsorted_or_empty_reference():
    with pytest.raises(ValueError, match="not sorted"):
        percentile_against([1.0], np.array([2.0, 1.0]), False)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        percentile_against([1.0], np.array([]), False)


def test_percentile_matrix_matches_columns():
    rng = np.random.default_rng(1)
    raw = rng.random((200, 2))
    refs = [build_reference(rng.random(300), True), build_reference(rng.random(300), False)]
    got = percentile_matrix(raw, refs, [True, False], names=["fw", "perplexity"])
    np.testing.assert_array_equal(got[:, 0], percentile_against(raw[:, 0], refs[0], True))
    np.testing.assert_array_equal(got[:, 1], percentile_against(raw[:, 1], refs[1], False))
    raw[3, 1] = np.nan
    with pytest.raises(ValueError, match="perplexity"):
        percentile_matrix(raw, refs, [True, False], names=["fw", "perplexity"])
    with pytest.raises(ValueError, match="2 columns but got 1 references"):
        percentile_matrix(raw, refs[:1], [True])
