"""Online reweighting: simplex projection, TANDEM, DoReMi and Uniform on tiny tinylm proxies (CPU)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from quadmix_spark.core.mixture import Mixture
from quadmix_spark.mixing.reweighting import Uniform
from quadmix_spark.mixing.simplex import project_simplex
from quadmix_spark.proxy.vocab import ProxyVocab, VocabMismatchError, check_comparable


def brute_force_projection(v: np.ndarray) -> np.ndarray:
    """The nearest simplex point by trying every support set S: a_S = v_S − (Σ v_S − 1)/|S|."""
    best, best_dist = None, math.inf
    for size in range(1, v.size + 1):
        for support in itertools.combinations(range(v.size), size):
            s = list(support)
            a = np.zeros_like(v)
            a[s] = v[s] - (v[s].sum() - 1.0) / size
            if (a >= -1e-12).all() and ((a - v) ** 2).sum() < best_dist:
                best, best_dist = a, ((a - v) ** 2).sum()
    return best


def clip_and_renormalise(v: np.ndarray) -> np.ndarray:  # a plausible wrong projection
    a = np.maximum(v, 0)
    return a / a.sum() if a.sum() > 0 else np.full_like(v, 1 / v.size)


def test_simplex_projection_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    wrong = 0
    for m in (1, 2, 3, 5):
        for _ in range(200):
            v = rng.normal(scale=rng.choice([0.1, 1.0, 5.0]), size=m) + rng.choice([0.0, 1.0 / m])
            expected = brute_force_projection(v)
            got = project_simplex(v)
            np.testing.assert_allclose(got, expected, atol=1e-12)
            assert got.min() >= 0 and got.sum() == pytest.approx(1.0, abs=1e-15)
            wrong += not np.allclose(clip_and_renormalise(v), expected, atol=1e-9)
    assert wrong > 100  # the brute-force check tells a wrong projection apart
    # points already on the simplex stay; a shift along (1, …, 1) is undone
    p = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(project_simplex(p), p)
    np.testing.assert_allclose(project_simplex(p + 7.0), p)
    with pytest.raises(ValueError, match="finite"):
        project_simplex([np.nan, 1.0])


def test_uniform_baseline() -> None:
    streams = {"b": np.arange(10), "a": np.arange(5)}
    method = Uniform(source_vocab_size=100, vocab="top:4").fit(streams, {"v": np.arange(3)})
    assert method.domains_ == ["a", "b"]
    assert dict(method.mixture_.shares) == {"a": 0.5, "b": 0.5}
    assert method.mixture_.provenance["method"] == "uniform"
    assert method.alpha_trajectory_.tolist() == [[0.5, 0.5]] and method.history_ == []
    assert method.result()["mixture"] == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="at least 2 are needed"):
        Uniform(source_vocab_size=100).fit({"a": np.arange(1)})
    with pytest.raises(ValueError, match=r"train_streams\['a'\]: token ids must be in \[0, 100\)"):
        Uniform(source_vocab_size=100).fit({"a": np.array([3, 100])})


torch = pytest.importorskip("torch")

from quadmix_spark.mixing.doremi import DoReMi, doremi_update  # noqa: E402
from quadmix_spark.mixing.tandem import Tandem  # noqa: E402

SOURCE = 1000
TINY = {
    "d_model": 32,
    "n_heads": 2,
    "d_ff": 64,
    "context": 32,
    "seqs_per_domain": 4,
    "vocab": "top:120",
    "source_vocab_size": SOURCE,
}
_rng = np.random.default_rng(0)
P = _rng.integers(0, 60, size=37)  # two learnable periodic "languages" on disjoint ids
Q = _rng.integers(500, 560, size=29)
STREAMS = {"p": np.tile(P, 120)[: 33 * 134], "q": np.tile(Q, 150)[: 33 * 131]}  # whole windows
VAL_P = {"target": np.tile(np.roll(P, 5), 30)}
VAL_Q = {"target": np.tile(np.roll(Q, 3), 30)}
TANDEM = {"episodes": 8, "probe_steps": 3, "free_steps": 2, "lr_alpha": 3.0}


def test_tandem_moves_alpha_toward_the_domain_that_helps_validation() -> None:
    toward_p = Tandem(**TANDEM, **TINY).fit(STREAMS, VAL_P)
    toward_q = Tandem(**TANDEM, **TINY).fit(STREAMS, VAL_Q)
    for method, helpful in ((toward_p, 0), (toward_q, 1)):
        alpha = method.alpha_trajectory_[:, helpful]
        assert alpha[-1] > 0.6 and alpha[-1] > alpha[0]
        # Δ of the helpful domain is negative on average: the reference beats the proxy there
        deltas = np.array([h["delta"] for h in method.history_])
        assert deltas[:, helpful].mean() < 0 < deltas[:, 1 - helpful].mean()
        assert method.mixture_.shares[method.domains_[helpful]] > 0.5
    assert toward_p.domains_ == ["p", "q"]


def test_tandem_records_follow_algorithm_1() -> None:
    method = Tandem(**TANDEM, **TINY).fit(STREAMS, VAL_P)
    assert [h["episode"] for h in method.history_] == list(range(1, 9))
    alpha_prev = np.array([0.5, 0.5])
    for h in method.history_:
        # sync: the twins start every episode identical; the probe steps pull them apart
        assert h["dist_start"] == 0.0 and h["dist_end"] > 0.0
        np.testing.assert_allclose(h["delta"], np.subtract(h["loss_w"], h["loss_u"]), atol=1e-12)
        np.testing.assert_allclose(h["alpha_before"], alpha_prev)
        step = alpha_prev - TANDEM["lr_alpha"] * 1.0 * np.asarray(h["delta"])
        np.testing.assert_allclose(h["alpha"], brute_force_projection(step), atol=1e-12)
        alpha_prev = np.asarray(h["alpha"])
    # the final mixture is the time average of the α after each update
    average = np.mean([h["alpha"] for h in method.history_], axis=0)
    np.testing.assert_allclose(method.mixture_.as_vector(["p", "q"]), average, atol=1e-12)
    last = Tandem(**TANDEM, **TINY, final="last").fit(STREAMS, VAL_P)
    np.testing.assert_allclose(last.mixture_.as_vector(["p", "q"]), method.history_[-1]["alpha"])
    # u trained T·(K + E) steps of seqs_per_domain windows of each domain (32 targets each)
    assert method.n_train_tokens_ == 8 * 5 * 4 * 2 * 32
    assert method.epochs_ == {"p": 8 * 5 * 4 / 134, "q": 8 * 5 * 4 / 131}
    # the result is JSON-able and carries the mixture and vocabulary
    result = method.result()
    assert result["vocab_key"] == method.vocab_key_ == method.mixture_.provenance["vocab_key"]
    assert Mixture.from_shares(result["mixture"]).key() == method.mixture_.key()


def test_tandem_is_deterministic_for_a_seed_on_cpu() -> None:
    short = {**TANDEM, "episodes": 3}
    a = Tandem(**short, **TINY, seed=1).fit(STREAMS, VAL_P)
    b = Tandem(**short, **TINY, seed=1).fit(STREAMS, VAL_P)
    c = Tandem(**short, **TINY, seed=2).fit(STREAMS, VAL_P)
    assert a.history_ == b.history_ and a.mixture_ == b.mixture_
    assert a.history_ != c.history_


def _token_nll(model, tokens: np.ndarray) -> np.ndarray:
    """Per-token NLL of one window, computed directly from the model's logits."""
    x = torch.from_numpy(tokens[None, :-1])
    with torch.no_grad():
        logits = model.hidden(x) @ model.embed.weight.T
        logp = torch.log_softmax(logits.double(), dim=-1)[0]
    return -logp[torch.arange(len(tokens) - 1), torch.from_numpy(tokens[1:])].numpy()


def test_doremi_one_step_follows_its_formula() -> None:
    # One window (context + 1 tokens) per domain: every batch is that window, so the first step
    # can be recomputed from the models alone.
    streams = {"p": STREAMS["p"][:33], "q": STREAMS["q"][:33]}
    eta, c = 2.0, 0.05
    # The reference trains on q only, so on p it is worse than the initial proxy at some tokens:
    # the per-token clip matters there.
    method = DoReMi(
        eta=eta, smoothing=c, steps=1, reference_steps=15, reference_weights={"p": 0.0, "q": 1.0}, **TINY
    ).fit(streams)
    from quadmix_spark.proxy.tinylm import build_model

    vocab = method.vocab_
    initial = build_model(vocab.size, 32, 2, 2, 64, 32, seed=0)  # the proxy before its step
    excess, clipped_any = [], False
    for d in ("p", "q"):
        tokens = vocab.encode(streams[d])
        diff = _token_nll(initial, tokens) - _token_nll(method.reference_, tokens)
        clipped_any |= bool((diff < 0).any())
        excess.append(np.maximum(diff, 0).mean())
    excess = np.array(excess)
    h = method.history_[0]
    np.testing.assert_allclose(h["excess"], excess, rtol=1e-4, atol=1e-6)
    logits = np.log([0.5, 0.5]) + eta * excess
    expected = (1 - c) * np.exp(logits) / np.exp(logits).sum() + c / 2
    np.testing.assert_allclose(h["alpha"], expected, rtol=1e-4)
    np.testing.assert_allclose(doremi_update([0.5, 0.5], excess, eta, c), expected, rtol=1e-12)
    assert clipped_any and excess[1] > excess[0] > 0


def test_doremi_upweights_the_domain_with_the_larger_excess_and_averages() -> None:
    # The reference trains on q only: the proxy's excess loss is on q, so DoReMi moves α to q.
    method = DoReMi(steps=12, reference_steps=30, reference_weights={"p": 0.0, "q": 1.0}, **TINY)
    method.fit(STREAMS, VAL_P)  # validation data is ignored
    excess = np.array([h["excess"] for h in method.history_])
    assert excess[:, 1].mean() > excess[:, 0].mean()
    alpha = method.alpha_trajectory_
    assert alpha[-1, 1] > alpha[0, 1] > 0.5
    for prev, h in zip(np.vstack([[0.5, 0.5], alpha[:-1]]), method.history_, strict=True):
        np.testing.assert_allclose(h["alpha"], doremi_update(prev, h["excess"], 1.0, 1e-3))
    np.testing.assert_allclose(method.mixture_.as_vector(["p", "q"]), alpha.mean(axis=0))
    assert method.reference_alpha_.tolist() == [0.0, 1.0]


def test_doremi_is_deterministic_for_a_seed_on_cpu() -> None:
    runs = [DoReMi(steps=3, reference_steps=3, **TINY, seed=s).fit(STREAMS) for s in (5, 5, 6)]
    assert runs[0].history_ == runs[1].history_
    assert runs[0].history_ != runs[2].history_


def test_doremi_from_a_uniform_reference_iterates_two_rounds_each_recomputable() -> None:
    # Round 2's reference trains on round 1's ᾱ: a one-round DoReMi given that ᾱ as its reference
    # weights is round 2 recomputed on its own.
    params = {"steps": 5, "reference_steps": 6, **TINY}
    method = DoReMi(**params).fit(STREAMS)
    assert method.rounds == 2 and [r["round"] for r in method.rounds_] == [1, 2]
    first = DoReMi(**params, rounds=1).fit(STREAMS)
    np.testing.assert_allclose(
        method.rounds_[0]["alpha_avg"], first.alpha_trajectory_.mean(axis=0), atol=1e-12
    )
    assert method.rounds_[0]["reference_alpha"] == [0.5, 0.5]
    abar = dict(zip(["p", "q"], first.alpha_trajectory_.mean(axis=0).tolist(), strict=True))
    second = DoReMi(**params, reference_weights=abar).fit(STREAMS)
    assert second.rounds == 1  # a non-uniform reference runs once unless asked
    np.testing.assert_allclose(
        method.rounds_[1]["alpha_avg"], second.alpha_trajectory_.mean(axis=0), atol=1e-12
    )
    np.testing.assert_allclose(method.rounds_[1]["reference_alpha"], first.alpha_trajectory_.mean(axis=0))
    # the mixture, the history and the trajectory are the last round's
    np.testing.assert_allclose(method.alpha_trajectory_, second.alpha_trajectory_, atol=1e-12)
    np.testing.assert_allclose(
        method.mixture_.as_vector(["p", "q"]), method.rounds_[1]["alpha_avg"], atol=1e-12
    )
    assert (
        method.result()["rounds"] == method.rounds_ and method.mixture_.provenance["rounds"] == method.rounds_
    )
    assert not np.allclose(method.rounds_[0]["alpha_avg"], method.rounds_[1]["alpha_avg"], atol=1e-6)
    # a run's identity names the rounds where the default is not the single round it once was
    assert DoReMi.identity_params({}) == {"rounds": 2}
    assert DoReMi.identity_params({"reference_weights": "natural"}) == {"reference_weights": "natural"}
    assert DoReMi.identity_params({"rounds": 3}) == {"rounds": 3}
    with pytest.raises(ValueError, match="rounds must be an int >= 1"):
        DoReMi(rounds=0)


def test_runs_share_a_mapping_or_refuse_to_compare() -> None:
    shared = ProxyVocab.from_streams(STREAMS.values(), 120, SOURCE)
    params = {**TINY, "vocab": shared}
    a = Tandem(**{**TANDEM, "episodes": 1}, **params).fit(STREAMS, VAL_P)
    b = DoReMi(steps=1, reference_steps=1, **params).fit(STREAMS)
    assert check_comparable({"tandem": a.vocab_key_, "doremi": b.vocab_key_}) == shared.key()
    # top:N built from other streams: another mapping, and the comparison is refused
    other = Tandem(**{**TANDEM, "episodes": 1}, **TINY).fit(
        {"p": STREAMS["p"], "q": STREAMS["q"][:100]}, VAL_P
    )
    assert other.vocab_key_ != shared.key()
    with pytest.raises(VocabMismatchError, match="tandem"):
        check_comparable({"tandem": a.vocab_key_, "other": other.vocab_key_})


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (Tandem, {"gamma": 0.0}, "gamma"),
        (Tandem, {"episodes": 0}, "episodes"),
        (Tandem, {"probe_steps": 0}, "probe_steps"),
        (Tandem, {"free_steps": -1}, "free_steps"),
        (Tandem, {"lr_alpha": float("inf")}, "lr_alpha"),
        (Tandem, {"vocab": "top:x"}, "vocab"),
        (Tandem, {"final": "median"}, "final"),
        (Tandem, {"init": "skewed"}, "init"),
        (DoReMi, {"smoothing": 1.0}, "smoothing"),
        (DoReMi, {"eta": -1}, "eta"),
        (DoReMi, {"reference_weights": "x"}, "reference_weights"),
        (DoReMi, {"rounds": 0}, "rounds"),
        (DoReMi, {"device": "gpu"}, "device"),
        (Uniform, {"seqs_per_domain": 0}, "seqs_per_domain"),
    ],
)
def test_parameter_validation(cls, kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


def test_stream_validation() -> None:
    with pytest.raises(ValueError, match="at least 2 domains"):
        Tandem(**TINY).fit({"p": STREAMS["p"]}, VAL_P)
    with pytest.raises(ValueError, match="val_streams"):
        Tandem(**TINY).fit(STREAMS, {})
    with pytest.raises(ValueError, match="1-D integer"):
        DoReMi(**TINY).fit({"p": STREAMS["p"], "q": STREAMS["q"].astype(float)})
