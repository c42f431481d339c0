import numpy as np
import pytest

from quadmix_spark.core.param_sampler import ParamSampler
from quadmix_spark.core.params import ParamsError, QuadMixParams

DOMAINS = [f"d{i}" for i in range(26)]
SCORERS = ["askllm", "fw", "dclm"]
N, M = len(SCORERS), len(DOMAINS)


def split(theta, n_scorers=N, n_domains=M):
    block = theta.reshape(theta.shape[0], n_domains, n_scorers + 4)
    return block[:, :, :n_scorers], block[:, :, n_scorers:]


def reference_algorithm_1(u_row, n_scorers, n_domains, scales):
    """Alg. 1 for one draw, written as loops from the paper, fed the same uniforms."""
    a = 1.0 - u_row[:n_scorers]
    a_tilde = a / a.sum()
    b = 1.0 - u_row[n_scorers : n_scorers + n_domains * n_scorers]
    beta_u = u_row[n_scorers + n_domains * n_scorers :]
    theta = []
    for m in range(n_domains):
        w = [a_tilde[i] * b[m * n_scorers + i] for i in range(n_scorers)]
        theta += [x / sum(w) for x in w]
        theta += [scales[j] * beta_u[4 * m + j] for j in range(4)]
    return np.array(theta)


def test_shape_alpha_rows_and_ranges():
    theta = ParamSampler(DOMAINS, SCORERS).sample(20000, seed=1)
    assert theta.shape == (20000, (N + 4) * M) == (20000, 182)
    alpha, beta = split(theta)
    np.testing.assert_allclose(alpha.sum(axis=2), 1.0, rtol=0, atol=1e-12)
    assert (alpha > 0).all()
    for j, high in enumerate([1000.0, 0.1, 1.0, 1e-3]):
        values = beta[:, :, j]
        assert values.min() >= 0 and values.max() <= high
        # the whole range is used, roughly uniformly
        assert values.max() > 0.99 * high and values.min() < 0.01 * high
        assert abs(values.mean() - high / 2) < 0.01 * high


def test_matches_loop_reference_of_algorithm_1():
    sampler = ParamSampler(DOMAINS[:4], SCORERS)
    theta = sampler.sample(5, seed=9)
    u = np.random.default_rng(9).random((5, N + 4 * N + 4 * 4))
    for i in range(5):
        expected = reference_algorithm_1(u[i], N, 4, [1000.0, 0.1, 1.0, 1e-3])
        np.testing.assert_allclose(theta[i], expected, rtol=1e-14, atol=0)


def test_global_weights_couple_domains():
    # With a shared ã, the domain-averaged weight of a scorer varies a lot between draws;
    # independent per-domain weights would average out (std ≈ 0.04).
    alpha, _ = split(ParamSampler(DOMAINS, SCORERS).sample(5000, seed=2))
    assert alpha[:, :, 0].mean(axis=1).std() > 0.12


def test_determinism_and_prefix_stability():
    sampler = ParamSampler(DOMAINS, SCORERS)
    a = sampler.sample(100, seed=5)
    np.testing.assert_array_equal(a, sampler.sample(100, seed=5))
    np.testing.assert_array_equal(a[:7], sampler.sample(7, seed=5))
    assert (a != sampler.sample(100, seed=6)).all()
    assert sampler.sample(0, seed=5).shape == (0, 182)


def test_custom_ranges_and_scales():
    sampler = ParamSampler(
        DOMAINS[:3], SCORERS, lam_scale=50.0, ranges={"omega": (0.2, 0.4), "epsilon": (0.0, 0.0)}
    )
    _, beta = split(sampler.sample(5000, seed=3), N, 3)
    assert beta[:, :, 0].max() <= 50.0 and beta[:, :, 0].max() > 49.0
    assert beta[:, :, 1].min() >= 0.2 and beta[:, :, 1].max() <= 0.4
    assert beta[:, :, 1].min() < 0.201 and beta[:, :, 1].max() > 0.399
    assert (beta[:, :, 3] == 0).all()
    assert sampler.bounds["eta"] == (0.0, 1.0)


def test_exclude_scorers_gets_zero_weight():
    sampler = ParamSampler(DOMAINS, SCORERS, exclude_scorers=["askllm"])
    alpha, _ = split(sampler.sample(1000, seed=4))
    assert (alpha[:, :, 0] == 0).all()
    assert (alpha[:, :, 1:] > 0).all()
    np.testing.assert_allclose(alpha.sum(axis=2), 1.0, rtol=0, atol=1e-12)


def test_sample_params_is_a_valid_object():
    sampler = ParamSampler(DOMAINS, SCORERS)
    p = sampler.sample_params(seed=11)
    assert isinstance(p, QuadMixParams)
    assert p.domains == tuple(DOMAINS) and p.scorers == tuple(SCORERS)
    np.testing.assert_array_equal(p.to_vector(), sampler.sample(1, seed=11)[0])
    assert sampler.names[0] == "alpha[d0,askllm]" and len(sampler.names) == sampler.n_params


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ranges": {"omgea": (0, 1)}}, r"ranges: unknown key 'omgea'"),
        ({"ranges": {"omega": (0.5, 0.1)}}, r"range of omega is \(0\.5, 0\.1\)"),
        ({"lam_scale": -1.0}, r"range of lambda is \(0\.0, -1\.0\)"),
        ({"ranges": {"omega": (0.0, 5.0)}}, r"range of omega is \(0\.0, 5\.0\); ω is the share .* at most 1"),
        ({"eps_scale": 2.0}, r"range of epsilon is \(0\.0, 2\.0\); ε is the keep rate"),
        ({"exclude_scorers": ["ppl"]}, r"exclude_scorers: unknown scorer\(s\) \['ppl'\]"),
        ({"exclude_scorers": SCORERS}, "excludes every scorer"),
    ],
)
def test_invalid_settings(kwargs, message):
    with pytest.raises(ParamsError, match=message):
        ParamSampler(DOMAINS, SCORERS, **kwargs)


def test_search_sized_draw_shape():
    # Speed is measured in benchmarks/, never asserted here: the machines are shared.
    theta = ParamSampler(DOMAINS, SCORERS).sample(100_000, seed=0)
    assert theta.shape == (100_000, 182)
    assert np.isfinite(theta).all()
