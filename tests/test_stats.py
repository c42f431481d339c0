"""Token-weighted quantiles of the stats sketches."""

import numpy as np

from quadmix_spark.pipeline.stats import token_weighted_quantiles


def test_token_weighted_quantiles_by_hand():
    values = np.array([1.0, 2.0, 3.0])
    tokens = np.array([1.0, 1.0, 2.0])  # cumulative token share: 0.25, 0.5, 1.0
    probs = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    assert token_weighted_quantiles(values, tokens, probs).tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]


def test_equal_tokens_match_the_unweighted_inverted_cdf():
    values = np.sort(np.random.default_rng(0).normal(size=1001))
    probs = np.linspace(0, 1, 101)
    weighted = token_weighted_quantiles(values, np.ones_like(values), probs)
    assert np.array_equal(weighted, np.quantile(values, probs, method="inverted_cdf"))


def test_empty_sample():
    assert token_weighted_quantiles(np.empty(0), np.empty(0), np.array([0.5])).size == 0
