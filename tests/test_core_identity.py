import hashlib

import pytest

from quadmix_spark.core import content_key
from quadmix_spark.proxy.ngram import NgramTrainer
from quadmix_spark.proxy.trainers import TRAINERS, make_trainer
from udfs.models import end_of_text, load_tokenizer


def test_content_key_is_sha256_of_canonical_json():
    value = {"b": [1, 2.5, None], "a": "x"}
    canonical = '{"a":"x","b":[1,2.5,null]}'
    assert content_key(value, 12) == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert content_key({"a": "x", "b": [1, 2.5, None]}, 12) == content_key(value, 12)  # key order
    assert content_key({"a": "y", "b": [1, 2.5, None]}, 12) != content_key(value, 12)
    assert len(content_key(value)) == 16


def test_content_key_rejects_nan_and_writes_other_values_as_text():
    with pytest.raises(ValueError):
        content_key([float("nan")])
    from pathlib import Path

    assert content_key([Path("/a/b")]) == content_key(["/a/b"])


@pytest.mark.parametrize(("tokenizer", "eot"), [("cl100k_base", 100_257), ("o200k_base", 199_999)])
def test_end_of_text_follows_the_tokenizer(tokenizer: str, eot: int):
    assert end_of_text(tokenizer) == eot
    assert load_tokenizer(tokenizer).decode([eot]) == "<|endoftext|>"


class _Proxy:
    trainer = "ngram"
    ngram_order = 3


def test_trainers_are_found_by_name():
    assert set(TRAINERS) == {"ngram", "tinylm"}
    trainer = make_trainer(_Proxy())
    assert isinstance(trainer, NgramTrainer)
    assert trainer.model.order == 3


def test_an_unknown_trainer_names_the_known_ones():
    proxy = _Proxy()
    proxy.trainer = "gpt"
    with pytest.raises(ValueError, match=r"proxy.trainer: unknown trainer 'gpt' \(ngram, tinylm\)"):
        make_trainer(proxy)
