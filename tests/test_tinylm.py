"""TinyLMProxy: learning curves, record layout, determinism, validation, chunked loss, trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from quadmix_spark.proxy import CL100K_N_VOCAB, tinylm  # noqa: E402
from quadmix_spark.proxy.tinylm import TinyLMProxy, TinyLMTrainer  # noqa: E402

V = 512
SMALL = {"vocab_size": V, "d_model": 64, "n_heads": 4, "d_ff": 128, "context": 32, "batch_size": 8}
PATTERN = np.random.default_rng(0).integers(0, V, size=37)  # period 37 < context: learnable in-context
REPEATED = np.tile(PATTERN, 600)[:20_000]
RANDOM = np.random.default_rng(1).integers(0, V, size=2_000)
EVAL = {"pattern": np.tile(PATTERN, 60)[:2_000], "random": RANDOM}


def test_loss_falls_on_a_learnable_stream() -> None:
    model = TinyLMProxy(**SMALL).fit(REPEATED, EVAL, [500, 5_000, 20_000])
    pattern = [r["loss"] for r in model.losses_ if r["eval_set"] == "pattern"]
    assert pattern[-1] < pattern[0] - 2.0
    assert pattern[-1] < 0.5 * math.log(V)
    # Uniform random tokens cannot be learned: their loss stays near (here: above) ln V.
    random = [r["loss"] for r in model.losses_ if r["eval_set"] == "random"]
    assert random[-1] > 0.9 * math.log(V)


def test_records_layout_and_token_counts() -> None:
    tokens_per_step = SMALL["batch_size"] * (SMALL["context"] + 1)  # 264
    checkpoints = [1, 100, 3_000, 20_000]
    model = TinyLMProxy(**SMALL).fit(REPEATED, EVAL, checkpoints)
    assert [(r["step_tokens"], r["eval_set"]) for r in model.losses_] == [
        (k, name) for k in checkpoints for name in ("pattern", "random")
    ]
    assert all(isinstance(r["loss"], float) and np.isfinite(r["loss"]) for r in model.losses_)
    # Checkpoints 1 and 100 fall into the first optimizer step: one model, identical losses.
    assert model.losses_[0]["loss"] == model.losses_[2]["loss"]
    assert model.n_train_tokens_ == REPEATED.size
    # Training stops after the step holding the last checkpoint.
    partial = TinyLMProxy(**SMALL).fit(REPEATED, EVAL, [1_000])
    assert partial.n_train_tokens_ == math.ceil(1_000 / tokens_per_step) * tokens_per_step
    # No eval sets: trains, records nothing; default checkpoints: [T].
    assert TinyLMProxy(**SMALL).fit(REPEATED[:600]).losses_ == []
    assert [r["step_tokens"] for r in TinyLMProxy(**SMALL).fit(REPEATED[:600], EVAL).losses_] == [600, 600]


def test_same_seed_gives_identical_losses_on_cpu() -> None:
    run = [TinyLMProxy(**SMALL, seed=3).fit(REPEATED[:6_000], EVAL, [2_000, 6_000]).losses_ for _ in range(2)]
    assert run[0] == run[1]
    other = TinyLMProxy(**SMALL, seed=4).fit(REPEATED[:6_000], EVAL, [2_000, 6_000]).losses_
    assert other != run[0]


def test_fit_leaves_global_torch_state_alone() -> None:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TinyLMProxy(**SMALL, threads=1).fit(REPEATED[:600], EVAL)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_short_streams_and_eval_sets() -> None:
    # Shorter than one window (context + 1 = 33): one padded sequence; 1 token: nothing to learn.
    for n in (2, 10, 33, 34):
        model = TinyLMProxy(**SMALL).fit(REPEATED[:n], EVAL, [n])
        assert model.n_train_tokens_ == n
        assert all(np.isfinite(r["loss"]) for r in model.losses_)
    untrained = TinyLMProxy(**SMALL).fit(REPEATED[:1], EVAL).losses_
    assert untrained[1]["loss"] == pytest.approx(math.log(V), abs=0.1)  # at initialisation
    # An evaluation set with nothing to predict scores NaN (like NgramProxy on an empty set).
    losses = TinyLMProxy(**SMALL).fit(REPEATED[:100], {"one": PATTERN[:1], "none": PATTERN[:0]}).losses_
    assert all(math.isnan(r["loss"]) for r in losses)


def test_eval_tokens_caps_the_scored_prefix() -> None:
    mixed = np.concatenate([EVAL["pattern"][:500], RANDOM])
    capped = TinyLMProxy(**SMALL, eval_tokens=500).fit(REPEATED[:5_000], {"m": mixed, "p": mixed[:500]})
    assert capped.losses_[0]["loss"] == pytest.approx(capped.losses_[1]["loss"], rel=1e-6)


def test_chunked_output_layer_matches_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tinylm, "_LOGIT_FLOATS", 7 * 64)  # 7 rows per chunk at V = 64
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(50, 16, generator=gen, requires_grad=True)
    w = torch.randn(64, 16, generator=gen, requires_grad=True)
    targets = torch.randint(0, 64, (50,), generator=gen)
    targets[[3, 17, 49]] = -100  # padded positions
    total, grad_h, grad_w = tinylm._output_layer(h.detach(), targets, w.detach(), 1 / 47)
    full = torch.nn.functional.cross_entropy(h @ w.T, targets, reduction="sum")
    (full / 47).backward()
    assert total == pytest.approx(float(full.detach()), rel=1e-6)
    torch.testing.assert_close(grad_h, h.grad)
    torch.testing.assert_close(grad_w, w.grad)
    assert tinylm._output_layer(h.detach(), targets, w.detach()) == (pytest.approx(total), None, None)


def test_default_architecture_is_about_1m_non_embedding_params() -> None:
    model = TinyLMProxy()
    assert model.vocab_size == CL100K_N_VOCAB
    assert 800_000 <= model.n_non_embedding_params_ <= 1_600_000
    # The count matches the real module (tied embedding: V·d is the only embedding weight).
    stream = np.arange(0, 3 * CL100K_N_VOCAB, 997)[:40] % CL100K_N_VOCAB
    model.fit(stream, {"s": stream})
    n_params = sum(p.numel() for p in model.model_.parameters())
    assert n_params - CL100K_N_VOCAB * 256 == model.n_non_embedding_params_ == 1_312_000
    assert model.model_.embed.weight.shape == (CL100K_N_VOCAB, 256)
    assert np.isfinite(model.losses_[0]["loss"])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"vocab_size": 1}, "vocab_size"),
        ({"d_model": 0}, "d_model"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_heads": 2.0}, "n_heads"),
        ({"d_ff": -1}, "d_ff"),
        ({"context": 0}, "context"),
        ({"batch_size": True}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"seed": -1}, "seed"),
        ({"device": "gpu"}, "device"),
        ({"threads": 0}, "threads"),
        ({"eval_tokens": 1}, "eval_tokens"),
        ({"d_model": 64, "n_heads": 3}, "n_heads"),  # 64 / 3 is not an int
        ({"d_model": 24, "n_heads": 8}, "n_heads"),  # head size 3 is odd: no RoPE pairs
    ],
)
def test_parameter_validation(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        TinyLMProxy(**kwargs)


def test_input_validation() -> None:
    model = TinyLMProxy(**SMALL)
    with pytest.raises(ValueError, match="token ids must be in"):
        model.fit(np.array([0, 5, V]))
    with pytest.raises(ValueError, match="token ids must be in"):
        model.fit(np.array([0, -1, 3]))
    with pytest.raises(ValueError, match=r"eval_sets\['bad'\].*token ids"):
        model.fit(REPEATED[:100], {"bad": np.array([1, V + 7])})
    with pytest.raises(ValueError, match="1-D"):
        model.fit(REPEATED[:100].reshape(10, 10))
    with pytest.raises(ValueError, match="integer"):
        model.fit(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        model.fit(np.zeros(0, dtype=np.int64))
    for bad in ([], [50, 50], [0, 10], [10, 101]):
        with pytest.raises(ValueError, match="checkpoints"):
            model.fit(REPEATED[:100], EVAL, bad)


def test_trainer_returns_the_proxy_records() -> None:
    cfg = {k: v for k, v in SMALL.items() if k != "vocab_size"}
    trainer = TinyLMTrainer(**cfg, lr=3e-3, seed=0, device="cpu", threads=1, eval_tokens=1_000, vocab_size=V)
    assert trainer.name == "tinylm"
    records = trainer.train(REPEATED[:4_000], EVAL, [1_000, 4_000])
    expected = TinyLMProxy(**SMALL, eval_tokens=1_000).fit(REPEATED[:4_000], EVAL, [1_000, 4_000]).losses_
    assert records == expected
    assert len(records) == 4


def test_tinylm_proxy_runs_as_spark_tasks(spark, tmp_path):
    from test_proxy import documents

    from quadmix_spark.config import ProxyConfig, TinyLMConfig
    from quadmix_spark.proxy.runs import RunSpec, load_runs, run_proxies

    small = TinyLMConfig(d_model=32, n_heads=2, d_ff=64, context=32, batch_size=4, eval_tokens=200)
    cfg = ProxyConfig(token_budget=800, n_checkpoints=2, trainer="tinylm", tinylm=small)
    eval_sets = {"e": np.arange(200, dtype=np.int64) % 97 + 1000}
    specs = [RunSpec("run-a"), RunSpec("run-b")]
    summary = run_proxies(spark, cfg, str(tmp_path / "runs"), specs, documents(spark), eval_sets)
    assert summary.ok == 2 and not summary.failed
    runs = load_runs(spark, str(tmp_path / "runs")).set_index("run_id")
    assert set(runs["trainer"]) == {"tinylm"} and (runs["n_train_tokens"] == 800).all()
    assert [x["step_tokens"] for x in runs.loc["run-a", "losses"]] == [400, 800]


def test_one_piece_output_layer_trains_like_the_chunked_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small vocabularies go through the output layer in one piece; forcing chunks must give the
    # same losses up to float rounding.
    direct = TinyLMProxy(**SMALL).fit(REPEATED[:4_000], EVAL, [2_000, 4_000]).losses_
    monkeypatch.setattr(tinylm, "_DIRECT_LOGIT_FLOATS", 0)
    monkeypatch.setattr(tinylm, "_LOGIT_FLOATS", 100 * V)  # 100 rows per chunk: several chunks
    chunked = TinyLMProxy(**SMALL).fit(REPEATED[:4_000], EVAL, [2_000, 4_000]).losses_
    assert [r["loss"] for r in chunked] == pytest.approx([r["loss"] for r in direct], rel=1e-4)
    assert direct[-2]["loss"] < direct[0]["loss"]  # it learnt something: the comparison is not trivial


def test_proxy_runs_with_a_pool_vocabulary(spark, tmp_path):
    from test_proxy import documents

    from quadmix_spark.config import ProxyConfig, TinyLMConfig
    from quadmix_spark.proxy.runs import RunSpec, load_runs, pool_vocab, record_runs, run_proxies, runs_long
    from quadmix_spark.proxy.vocab import ProxyVocab, VocabMismatchError
    from udfs.models import load_tokenizer

    docs = documents(spark)
    vocab = pool_vocab(docs, 8)
    # the counts, directly: every distinct document tokenized once
    texts = docs.dropDuplicates(["doc_key"]).toPandas()["text"].tolist()
    ids = np.concatenate(load_tokenizer("cl100k_base").encode_ordinary_batch(texts))
    assert vocab == ProxyVocab.from_counts(np.bincount(ids, minlength=CL100K_N_VOCAB), 8)
    assert vocab == pool_vocab(docs.repartition(5), 8)  # whatever the partitioning

    small = TinyLMConfig(
        d_model=32, n_heads=2, d_ff=64, context=32, batch_size=4, eval_tokens=200, vocab="top:8"
    )
    cfg = ProxyConfig(token_budget=800, n_checkpoints=1, trainer="tinylm", tinylm=small)
    eval_sets = {"e": np.asarray(ids[:200], dtype=np.int64)}
    path = str(tmp_path / "runs")
    with pytest.raises(ValueError, match="top:8: pass the pool's mapping"):
        run_proxies(spark, cfg, path, [RunSpec("run-a")], docs, eval_sets)
    summary = run_proxies(spark, cfg, path, [RunSpec("run-a")], docs, eval_sets, vocab=vocab)
    assert summary.ok == 1, summary.failed
    runs = load_runs(spark, path)
    assert runs["vocab_key"].tolist() == [vocab.key()]
    # at most ln(9) nats: 8 kept ids + UNK
    assert 0 < runs["losses"][0][0]["loss"] < np.log(9) + 0.5
    # a run under another mapping (here: the full vocabulary) cannot be fitted together with it
    ok = {"status": "ok", "error": None, "n_train_tokens": 800, "n_docs": 1, "attempt": 0, "seconds": 1.0}
    ok["losses"] = [{"eval_set": "e", "step_tokens": 800, "loss": 6.0}]
    record_runs(spark, path, [(RunSpec("run-full", theta=(0.1,)), ok)], "tinylm")
    runs = load_runs(spark, path)
    with pytest.raises(VocabMismatchError, match="run-full"):
        runs_long(runs)
    assert len(runs_long(runs[runs["run_id"] == "run-a"])) == 0  # one mapping: accepted (no θ: no rows)


def test_a_runs_table_from_before_the_vocab_column_gets_it(spark, tmp_path):
    from quadmix_spark.proxy.runs import TABLE, RunSpec, load_runs, record_runs
    from quadmix_spark.spark import tables

    old_schema = type(TABLE)([f for f in TABLE.fields if f.name != "vocab_key"])
    path = str(tmp_path / "old_runs")
    tables.write(spark.createDataFrame([], old_schema), path, "append", {"job": "proxy-runs"})
    ok = {"status": "ok", "error": None, "n_train_tokens": 8, "n_docs": 1, "attempt": 0, "seconds": 1.0}
    ok["losses"] = [{"eval_set": "e", "step_tokens": 8, "loss": 6.0}]
    record_runs(spark, path, [(RunSpec("r1"), ok)], "tinylm")
    record_runs(spark, path, [(RunSpec("r2"), ok)], "tinylm", "top8:abc")
    runs = load_runs(spark, path).set_index("run_id")
    assert runs["vocab_key"].to_dict() == {"r1": None, "r2": "top8:abc"}
