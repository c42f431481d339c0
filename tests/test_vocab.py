"""Proxy vocabularies: the top-N mapping, its key, round trips, tinylm under a mapping, refusal."""

from __future__ import annotations

import numpy as np
import pytest

from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.proxy.vocab import (
    ProxyVocab,
    VocabMismatchError,
    check_comparable,
    full_vocab_key,
    parse_vocab_spec,
)

V = 50
STREAM = np.array([7, 7, 7, 3, 3, 9, 9, 1, 42, 42, 42, 42, 0])  # counts: 42:4, 7:3, 3:2, 9:2, 0:1, 1:1


def test_top_n_keeps_the_most_frequent_ids_ties_by_id() -> None:
    vocab = ProxyVocab.from_streams([STREAM[:6], STREAM[6:]], 4, V)
    assert vocab.kept.tolist() == [42, 7, 3, 9]  # 3 and 9 tie at 2: the smaller id first
    assert (vocab.size, vocab.unk_id, vocab.source_size) == (5, 4, V)
    # counts computed directly
    counts = np.bincount(STREAM, minlength=V)
    assert vocab == ProxyVocab.from_counts(counts, 4)
    # fewer ids seen than N: only the seen ones are kept
    assert ProxyVocab.from_counts(counts, 100).kept.tolist() == [42, 7, 3, 9, 0, 1]


def test_encode_decode_round_trip() -> None:
    vocab = ProxyVocab.from_streams([STREAM], 4, V)
    encoded = vocab.encode(STREAM)
    expected = [{42: 0, 7: 1, 3: 2, 9: 3}.get(t, 4) for t in STREAM.tolist()]
    assert encoded.tolist() == expected
    decoded = vocab.decode(encoded)
    kept = np.isin(STREAM, [42, 7, 3, 9])
    assert np.array_equal(decoded[kept], STREAM[kept])  # kept ids survive the round trip
    assert (decoded[~kept] == -1).all()  # UNK stands for many ids
    assert vocab.coverage(STREAM) == pytest.approx(kept.mean())
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        vocab.encode([V])
    with pytest.raises(ValueError, match="proxy ids"):
        vocab.decode([5])


def test_key_and_stored_form() -> None:
    vocab = ProxyVocab.from_streams([STREAM], 4, V)
    assert vocab.key().startswith("top4:")
    again = ProxyVocab.from_dict(vocab.to_dict())
    assert again == vocab and again.key() == vocab.key()
    other = ProxyVocab.from_streams([STREAM[:-2]], 4, V)  # drops one 42 and the 0: other order
    assert other.kept.tolist() == [7, 42, 3, 9] and other.key() != vocab.key()
    assert ProxyVocab(vocab.kept, V + 1).key() != vocab.key()  # another tokenizer
    tampered = {**vocab.to_dict(), "key": other.key()}
    with pytest.raises(ValueError, match="does not match"):
        ProxyVocab.from_dict(tampered)


def test_refusal_to_compare_across_mappings() -> None:
    a = ProxyVocab.from_streams([STREAM], 4, V).key()
    b = ProxyVocab.from_streams([STREAM[:-2]], 4, V).key()
    assert check_comparable({"run-1": a, "run-2": a}) == a
    with pytest.raises(VocabMismatchError, match="run-3") as err:
        check_comparable({"run-1": a, "run-2": a, "run-3": b})
    assert a in str(err.value) and b in str(err.value)
    with pytest.raises(VocabMismatchError):
        check_comparable({"full": full_vocab_key(V), "top": a})


@pytest.mark.parametrize("bad", ["top:0", "top:", "top8192", "TOP:5", "all", "top:-3", 8192])
def test_spec_parsing(bad) -> None:
    assert parse_vocab_spec("full") is None and parse_vocab_spec("top:8192") == 8192
    with pytest.raises(ValueError, match="proxy.tinylm.vocab"):
        parse_vocab_spec(bad, "proxy.tinylm.vocab")


def test_config_key_is_validated() -> None:
    cfg = from_dict(PipelineConfig, {"proxy": {"tinylm": {"vocab": "top:8192"}}})
    assert cfg.proxy.tinylm.vocab == "top:8192"
    assert from_dict(PipelineConfig, {}).proxy.tinylm.vocab == "full"
    from quadmix_spark.config import _check_semantics

    cfg.proxy.tinylm.vocab = "top:abc"
    with pytest.raises(ConfigError, match="proxy.tinylm.vocab"):
        _check_semantics(cfg)


torch = pytest.importorskip("torch")


def test_tinylm_under_a_mapping_equals_tinylm_on_the_mapped_stream() -> None:
    from quadmix_spark.proxy.tinylm import TinyLMProxy

    rng = np.random.default_rng(0)
    source = 400
    stream = np.tile(rng.integers(0, source, size=37), 60)
    evals = {"e": np.tile(stream[:37], 10), "rare": rng.integers(0, source, size=300)}
    vocab = ProxyVocab.from_streams([stream], 16, source)
    shape = {"d_model": 32, "n_heads": 2, "d_ff": 64, "context": 32, "batch_size": 4}
    mapped = TinyLMProxy(vocab_size=source, vocab=vocab, **shape).fit(stream, evals, [1000, 2000])
    direct = TinyLMProxy(vocab_size=vocab.size, **shape).fit(
        vocab.encode(stream), {k: vocab.encode(v) for k, v in evals.items()}, [1000, 2000]
    )
    assert mapped.losses_ == direct.losses_
    assert mapped.model_.embed.weight.shape == (17, 32)
    assert mapped.vocab_key_ == vocab.key() and direct.vocab_key_ == "full:17"
    with pytest.raises(ValueError, match="vocab maps 400"):
        TinyLMProxy(vocab_size=1000, vocab=vocab)


def test_trainer_needs_the_mapping_the_config_names() -> None:
    from quadmix_spark.config import ProxyConfig, TinyLMConfig
    from quadmix_spark.proxy.tinylm import TinyLMTrainer

    vocab = ProxyVocab.from_streams([STREAM], 4, 100_277)
    top = ProxyConfig(trainer="tinylm", tinylm=TinyLMConfig(vocab="top:4"))
    assert TinyLMTrainer.from_config(top, vocab).model.vocab_key_ == vocab.key()
    with pytest.raises(ValueError, match="top:4 needs a proxy vocabulary"):
        TinyLMTrainer.from_config(top)
    with pytest.raises(ValueError, match="keeps 4 ids"):
        TinyLMTrainer.from_config(ProxyConfig(tinylm=TinyLMConfig(vocab="top:2")), vocab)
    with pytest.raises(ValueError, match="'full'"):
        TinyLMTrainer.from_config(ProxyConfig(), vocab)
    assert TinyLMTrainer.from_config(ProxyConfig()).model.vocab_key_ == "full:100277"


def test_the_experiment_builds_one_pool_vocabulary_for_a_top_n_tinylm(spark) -> None:
    from quadmix_spark.pipeline.experiment import _proxy_vocab
    from udfs.models import load_tokenizer

    texts = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "the cat sat on the mat"]
    pool = spark.createDataFrame([(k, t) for k, t in enumerate(texts)], "doc_key long, text string")
    tinylm = from_dict(PipelineConfig, {"proxy": {"trainer": "tinylm", "tinylm": {"vocab": "top:5"}}})
    vocab = _proxy_vocab(tinylm, pool.repartition(3))
    # The same mapping from counts taken directly: each document once, whatever the partitioning.
    encoding = load_tokenizer("cl100k_base")
    ids = np.concatenate([encoding.encode_ordinary(t) for t in texts])
    assert vocab == ProxyVocab.from_counts(np.bincount(ids, minlength=encoding.n_vocab), 5)
    assert vocab.kept.size == 5
    full = from_dict(PipelineConfig, {"proxy": {"trainer": "tinylm", "tinylm": {"vocab": "full"}}})
    ngram = from_dict(PipelineConfig, {"proxy": {"trainer": "ngram"}})
    assert _proxy_vocab(full, pool) is None and _proxy_vocab(ngram, pool) is None
