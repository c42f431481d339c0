"""Realised features of θ from a domain sample: exactly Eq. 1–3 on the sample, summed per domain."""

from __future__ import annotations

import numpy as np
import pytest

from quadmix_spark import core
from quadmix_spark.core.realised import DomainSample, realised_feature_names

DOMAINS, SCORERS = ("news", "code", "web"), ("a", "b")


def sample(n_per: int = 300, seed: int = 0, decimals: int = 2) -> DomainSample:
    rng = np.random.default_rng(seed)
    d = np.repeat(np.arange(3), n_per)
    sigma = rng.random((3 * n_per, 2)).round(decimals)  # few distinct values: many ties
    tokens = np.maximum(1, rng.lognormal(5, 1, 3 * n_per).astype(np.int64))
    return DomainSample(DOMAINS, SCORERS, sigma, d, tokens, np.array([5e6, 2e6, 1e7]))


def reference(s: DomainSample, theta: np.ndarray, aim: float | None, shares=None) -> np.ndarray:
    """Eq. 1–3 by the core's own functions on the whole sample, then the sums by hand."""
    p = core.QuadMixParams.from_vector(theta, DOMAINS, SCORERS)
    d, t, m = s.domain_idx, s.tokens.astype(float), len(DOMAINS)
    rank = core.token_weighted_rank(core.merge_scores(s.sigma, d, p.alpha), d, s.tokens, m)
    S = core.sampling_function(rank, p.lam[d], p.omega[d], p.eta[d], p.eps[d])
    mass = np.bincount(d, S * t, m)
    pool_mass = mass * s.pool_tokens / np.bincount(d, t, m)
    c = aim / pool_mass.sum() if aim else 1.0
    share = pool_mass / pool_mass.sum()
    if shares is not None:  # one scale per domain
        c, share = (aim * np.asarray(shares) / pool_mass)[d], np.asarray(shares)
    kept_tokens = np.bincount(d, np.minimum(c * S, 1) * t, m)
    quality = np.stack([np.bincount(d, S * t * s.sigma[:, j], m) / mass for j in range(2)], axis=1)
    per = np.column_stack(
        [share, kept_tokens / np.bincount(d, t, m), np.bincount(d, c * S * t, m) / kept_tokens, quality]
    )
    return per.ravel()


@pytest.mark.parametrize("omega_high", [0.1, 1.0])  # a partial sort, and every document sorted
def test_features_equal_eq_1_to_3_on_the_sample(omega_high: float) -> None:
    s = sample()
    sampler = core.ParamSampler(DOMAINS, SCORERS, ranges={"omega": (0.001, omega_high)})
    theta = sampler.sample(40, seed=1)
    got = s.features(theta, aim_tokens=2e5, chunk=7)
    assert got.shape == (40, 3 * 5)
    for k in range(40):
        np.testing.assert_allclose(got[k], reference(s, theta[k], 2e5), rtol=1e-10, atol=1e-13)
    no_aim = s.features(theta[:3])
    np.testing.assert_allclose(no_aim[0], reference(s, theta[0], None), rtol=1e-10)
    shares = got.reshape(40, 3, 5)[:, :, 0]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_a_fixed_mixture_gives_each_domain_its_own_scale() -> None:
    s = sample(seed=4)
    theta = core.ParamSampler(DOMAINS, SCORERS).sample(12, seed=5)
    shares = np.array([0.5, 0.3, 0.2])
    got = s.features(theta, aim_tokens=3e5, shares=shares)
    for k in range(12):
        np.testing.assert_allclose(got[k], reference(s, theta[k], 3e5, shares), rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(got.reshape(12, 3, 5)[:, :, 0], np.tile(shares, (12, 1)))
    free = s.features(theta, aim_tokens=3e5)
    assert np.abs(free.reshape(12, 3, 5)[:, :, 1] - got.reshape(12, 3, 5)[:, :, 1]).max() > 0.01
    with pytest.raises(ValueError, match="shares must hold 3"):
        s.features(theta, shares=shares)


def test_a_tie_group_across_the_cut_is_ranked_whole() -> None:
    # Every merged score the same: one tie group, rank 1 for all; with ω < 1 nobody is inside,
    # and a cut through the group must not leave its first members ranked inside.
    d = np.zeros(50, dtype=np.int64)
    s = DomainSample(("x",), ("a",), np.full((50, 1), 0.5), d, np.full(50, 10), np.array([500.0]))
    theta = np.array([[1.0, 100.0, 0.2, 1.0, 0.01]])  # α, λ, ω = 0.2, η, ε
    share, kept, copies, quality = s.features(theta, aim_tokens=None)[0]
    assert share == 1.0 and quality == pytest.approx(0.5)
    assert kept == pytest.approx(0.01) and copies == pytest.approx(1.0)  # S = ε for all: rank 1 > ω


def test_features_do_not_depend_on_the_order_of_the_sample_or_the_chunks() -> None:
    s = sample(seed=3)
    order = np.random.default_rng(9).permutation(len(s.tokens))
    shuffled = DomainSample(
        DOMAINS, SCORERS, s.sigma[order], s.domain_idx[order], s.tokens[order], s.pool_tokens
    )
    theta = core.ParamSampler(DOMAINS, SCORERS).sample(25, seed=2)
    a = s.features(theta, 1e5, chunk=25)
    np.testing.assert_allclose(shuffled.features(theta, 1e5, chunk=4), a, rtol=1e-12, atol=1e-15)
    assert realised_feature_names(DOMAINS, SCORERS)[:5] == [
        "share[news]",
        "kept[news]",
        "copies[news]",
        "quality[news,a]",
        "quality[news,b]",
    ]


def test_bad_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="no sample documents: \\['web'\\]"):
        DomainSample(DOMAINS, SCORERS, np.zeros((2, 2)), np.array([0, 1]), np.ones(2, int), np.ones(3))
    with pytest.raises(ValueError, match="tokens must hold"):
        DomainSample(DOMAINS, SCORERS, np.zeros((3, 2)), np.arange(3), np.zeros(3, int), np.ones(3))
    with pytest.raises(ValueError, match="theta must have 18 entries"):
        sample().features(np.zeros((1, 12)))
