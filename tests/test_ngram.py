"""NgramProxy: exact normalisation, hand-computed Kneser-Ney values, learning curves, domains."""

from __future__ import annotations

import numpy as np
import pytest

from quadmix_spark.proxy import CL100K_N_VOCAB, NgramProxy


def markov_stream(transition: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n tokens of the first-order Markov chain with row-stochastic ``transition`` (V, V)."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(transition, axis=1)
    u = rng.random(n)
    out = np.empty(n, dtype=np.int64)
    state = 0
    for i in range(n):
        state = min(int(np.searchsorted(cdf[state], u[i])), transition.shape[0] - 1)
        out[i] = state
    return out


def random_chain(v: int, seed: int) -> np.ndarray:
    """Sparse-ish transition matrix: each row a Dirichlet(0.1) draw, so contexts matter."""
    return np.random.default_rng(seed).dirichlet(np.full(v, 0.1), size=v)


V = 60
CHAIN_A, CHAIN_B = random_chain(V, 1), random_chain(V, 2)
TRAIN_A = markov_stream(CHAIN_A, 60_000, seed=10)
TEST_A = markov_stream(CHAIN_A, 5_000, seed=11)
TRAIN_B = markov_stream(CHAIN_B, 60_000, seed=20)
TEST_B = markov_stream(CHAIN_B, 5_000, seed=21)


@pytest.mark.parametrize("smoothing", ["kneser_ney", "additive"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_probabilities_normalise_exactly(order: int, smoothing: str) -> None:
    model = NgramProxy(order, smoothing, vocab_size=V).fit(TRAIN_A[:3_000])
    seen, unseen = TRAIN_A[100:102], np.array([V - 1, V - 1])
    for context in (np.zeros(0, dtype=np.int64), seen[-1:], seen, unseen, TRAIN_A[:10]):
        p = model.predict_proba(context)
        assert p.shape == (V,)
        assert np.all(p > 0)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_probabilities_normalise_at_cl100k_vocab() -> None:
    model = NgramProxy(3, vocab_size=CL100K_N_VOCAB).fit(np.arange(0, 90_000, 7) % CL100K_N_VOCAB)
    for context in ([0, 7], [7, 14], [5, 5], [100_276]):
        assert model.predict_proba(np.array(context)).sum() == pytest.approx(1.0, abs=1e-9)


def test_kneser_ney_matches_hand_computation() -> None:
    # Bigrams (0,1)x2 (1,0) (1,2); every word has continuation count 1, so with D = 0.5:
    # p1(w) = (1 - .5)/3 + .5·3/3·(1/3) = 1/3 and p(1|0) = (2 - .5 + .5·1·(1/3)) / 2 = 5/6.
    model = NgramProxy(2, vocab_size=3, discount=0.5).fit(np.array([0, 1, 0, 1, 2]))
    np.testing.assert_allclose(model.predict_proba(np.array([0])), [1 / 12, 5 / 6, 1 / 12], rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(np.zeros(0, dtype=np.int64)), [1 / 3] * 3, rtol=1e-12)
    # The first token is scored with the unigram level; context 2 never occurred, so p(0 | 2) backs
    # off to p1(0) = 1/3.
    assert model.score(np.array([2, 0, 1])) == pytest.approx(-np.log([1 / 3, 1 / 3, 5 / 6]).mean(), rel=1e-12)


def test_additive_matches_hand_computation() -> None:
    model = NgramProxy(1, "additive", vocab_size=4, add_k=0.5).fit(np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(
        model.predict_proba(np.zeros(0, dtype=np.int64)), [3.5 / 6, 1.5 / 6, 0.5 / 6, 0.5 / 6]
    )


@pytest.mark.parametrize("order", [2, 3])
def test_held_out_loss_decreases_with_training_tokens(order: int) -> None:
    steps = [500, 2_000, 8_000, 30_000, 60_000]
    model = NgramProxy(order, vocab_size=V).fit(TRAIN_A, {"a": TEST_A}, checkpoints=steps)
    assert [r["step_tokens"] for r in model.losses_] == steps
    assert all(r["eval_set"] == "a" for r in model.losses_)
    losses = np.array([r["loss"] for r in model.losses_])
    assert np.all(np.diff(losses) < 0), losses
    # The chain's rows are Dirichlet(0.1) draws, whose entropy is far below log V = 4.09 nats.
    assert losses[-1] < 0.75 * np.log(V)


def test_model_prefers_its_own_domain() -> None:
    sets = {"a": TEST_A, "b": TEST_B}
    on_a = NgramProxy(2, vocab_size=V).fit(TRAIN_A, sets).losses_
    on_b = NgramProxy(2, vocab_size=V).fit(TRAIN_B, sets).losses_
    loss = {(r["eval_set"], "A"): r["loss"] for r in on_a} | {(r["eval_set"], "B"): r["loss"] for r in on_b}
    assert loss[("a", "A")] < loss[("b", "A")] - 0.5
    assert loss[("b", "B")] < loss[("a", "B")] - 0.5
    assert loss[("a", "A")] < loss[("a", "B")] - 0.5


def test_unigram_domains_from_two_zipf_distributions() -> None:
    rng = np.random.default_rng(3)
    v = 1_000
    zipf = 1.0 / np.arange(1, v + 1) ** 1.2
    zipf /= zipf.sum()
    perm = rng.permutation(v)  # domain B: the same law over a shuffled vocabulary
    a_train, a_test = rng.choice(v, 50_000, p=zipf), rng.choice(v, 5_000, p=zipf)
    b_test = perm[rng.choice(v, 5_000, p=zipf)]
    losses = NgramProxy(1, vocab_size=v).fit(a_train, {"a": a_test, "b": b_test}).losses_
    assert losses[0]["loss"] < losses[1]["loss"] - 1.0


def test_incremental_counting_equals_one_shot_and_is_deterministic() -> None:
    sets = {"a": TEST_A, "b": TEST_B}
    inc = NgramProxy(3, vocab_size=V).fit(TRAIN_A, sets, checkpoints=[1, 777, 20_001, 60_000]).losses_
    again = NgramProxy(3, vocab_size=V).fit(TRAIN_A, sets, checkpoints=[1, 777, 20_001, 60_000]).losses_
    assert inc == again
    for step in (777, 20_001, 60_000):
        one = NgramProxy(3, vocab_size=V).fit(TRAIN_A[:step], sets).losses_
        assert [r["loss"] for r in one] == [r["loss"] for r in inc if r["step_tokens"] == step]


def test_eval_sets_shorter_than_order_are_scored() -> None:
    model = NgramProxy(3, vocab_size=V).fit(TRAIN_A[:1_000])
    assert np.isfinite(model.score(np.array([5])))
    assert np.isnan(model.score(np.zeros(0, dtype=np.int64)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": 0}, "order"),
        ({"order": 2.0}, "order"),
        ({"smoothing": "witten_bell"}, "smoothing"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"order": 4, "vocab_size": CL100K_N_VOCAB}, "int64"),
        ({"discount": 1.5}, "discount"),
        ({"add_k": 0.0}, "add_k"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NgramProxy(**kwargs)


def test_bad_fit_inputs() -> None:
    model = NgramProxy(2, vocab_size=10)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.score(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        model.fit(np.array([1, 10]))
    with pytest.raises(ValueError, match="integer"):
        model.fit(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="empty"):
        model.fit(np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="strictly increasing"):
        model.fit(np.arange(10), checkpoints=[5, 5])
    with pytest.raises(ValueError, match="lie in"):
        model.fit(np.arange(10), checkpoints=[5, 11])
    with pytest.raises(ValueError, match="eval_sets"):
        model.fit(np.arange(10), {"x": np.array([-1])})
