"""The driver's checks of fastText model files: truncated, zeroed and one-label models are refused."""

from __future__ import annotations

import random

import fasttext
import numpy as np
import pytest

from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.pipeline.annotate import check_annotators, run_annotate
from udfs import models
from udfs.annotators import FastTextDomain, FastTextQuality, LanguageId

# 150 words a topic: the dictionary alone is ~6 KB, so a 2 KB copy ends inside it.
TOPICS = {"high": [f"science{i}" for i in range(150)], "low": [f"spam{i}" for i in range(150)]}


def train_small(path, labels=("high", "low"), seed=0) -> str:
    """A small fastText classifier (20,000 hash buckets, 10 dimensions: ~800 KB) saved at ``path``."""
    rng = random.Random(seed)
    lines = [
        f"__label__{label} " + " ".join(rng.choice(TOPICS[label]) for _ in range(10))
        for _ in range(200)
        for label in labels
    ]
    train = path.parent / f"{path.name}.train.txt"
    train.write_text("\n".join(lines) + "\n")
    # fastText initialises its input matrix in ten blocks, one per thread up to `thread`: with
    # fewer threads, or dim × rows not a multiple of ten, the rest keeps whatever the heap held
    # (now and then NaN). Ten threads and dim 10 initialise all of it.
    model = fasttext.train_supervised(
        str(train), epoch=10, lr=0.5, dim=10, wordNgrams=2, bucket=20000, verbose=0, thread=10, seed=seed
    )
    model.save_model(str(path))
    return str(path)


def truncated(source: str, path, size: int) -> str:
    with open(source, "rb") as fh:
        path.write_bytes(fh.read(size))
    return str(path)


def refusal(annotator) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        check_annotators([annotator])
    return err.value


def test_a_whole_model_passes_its_checks(tmp_path):
    model = train_small(tmp_path / "quality.bin")
    check_annotators(
        [
            FastTextQuality(name="quality", column="q", model=model, label="high"),
            FastTextDomain(name="topic", column="d", model=model),
            LanguageId(name="lang", column="lang"),  # lid.176.ftz: a quantized model, walked as one
        ]
    )
    probe = models.fasttext_probe(model)
    assert probe.labels == ["high", "low"] or probe.labels == ["low", "high"]
    assert probe.spread["high"] > 0.5  # its own words send a probe to either side


def test_half_a_model_is_refused_before_spark_work_naming_file_and_annotator(spark, tmp_path):
    whole = train_small(tmp_path / "quality.bin")
    half = truncated(whole, tmp_path / "half.bin", (tmp_path / "quality.bin").stat().st_size // 2)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-0.jsonl").write_text('{"id": "a", "text": "science1 science2"}\n')
    config = from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "warehouse"),
            "annotate": {
                "input": {"path": str(tmp_path / "in"), "format": "jsonl"},
                "annotators": [
                    {
                        "kind": "fasttext_quality",
                        "name": "quality",
                        "column": "q",
                        "model": half,
                        "label": "high",
                    }
                ],
            },
        },
    )
    with pytest.raises(ConfigError) as err:
        run_annotate(spark, config)
    message = str(err.value)
    assert message.startswith("annotate.annotators[0].model: annotator 'quality': ")
    assert (
        f"{half} is not a fastText model as its header describes it: the file ends inside the input matrix"
        in message
    )
    assert isinstance(err.value.__cause__.__cause__, models.ModelFileError)
    assert not (tmp_path / "warehouse").exists()  # nothing was read or written


def test_a_2kb_copy_is_refused_by_the_header_walk_before_fasttext_reads_it(tmp_path):
    whole = train_small(tmp_path / "quality.bin")
    small = truncated(whole, tmp_path / "small.bin", 2048)
    err = refusal(FastTextDomain(name="topic", column="d", model=small))
    # fastText itself, given this file, loops on its dictionary until std::bad_alloc.
    assert isinstance(err.__cause__.__cause__, models.ModelFileError)
    assert str(err).startswith(
        f"annotate.annotators[0].model: annotator 'topic': {small} is not a fastText model as"
    )
    assert "the file ends inside dictionary entry" in str(err)
    with pytest.raises(models.ModelFileError, match="ends inside dictionary entry .* of 303"):
        models.check_fasttext_file(small)  # 300 words, 2 labels and </s>


def test_sizes_that_do_not_match_the_header_are_refused(tmp_path):
    whole = train_small(tmp_path / "quality.bin")
    size = (tmp_path / "quality.bin").stat().st_size
    with pytest.raises(
        models.ModelFileError, match=r"ends inside the output matrix \(2 × 10 floats\).*\(1 missing\)"
    ):
        models.check_fasttext_file(truncated(whole, tmp_path / "short.bin", size - 1))
    padded = tmp_path / "padded.bin"
    padded.write_bytes((tmp_path / "quality.bin").read_bytes() + b"\0" * 4)
    with pytest.raises(models.ModelFileError, match=r"\(4 bytes after the model\)"):
        models.check_fasttext_file(str(padded))
    with pytest.raises(models.ModelFileError, match="does not start with fastText's header"):
        models.check_fasttext_file(
            truncated(str(tmp_path / "quality.bin.train.txt"), tmp_path / "text.bin", 500)
        )


def test_a_model_with_zeroed_weights_is_refused_for_its_constant_predictions(tmp_path):
    model = fasttext.load_model(train_small(tmp_path / "quality.bin"))
    model.set_matrices(model.get_input_matrix(), np.zeros_like(model.get_output_matrix()))
    zeroed = str(tmp_path / "zeroed.bin")
    model.save_model(zeroed)
    models.check_fasttext_file(zeroed)  # whole: only the probe can tell
    probe = models.fasttext_probe(zeroed)
    assert probe.spread == {"high": 0.0, "low": 0.0}
    for annotator in (
        FastTextQuality(name="quality", column="q", model=zeroed, label="high"),
        FastTextDomain(name="topic", column="d", model=zeroed),
    ):
        message = str(refusal(annotator))
        assert f"annotator '{annotator.name}': {zeroed} gives the same" in message
        assert "for each of 21 varied probe texts" in message  # 6 fixed, 15 of its words (and not </s>)


def test_a_quality_model_trained_on_one_label_is_refused(tmp_path):
    one = train_small(tmp_path / "one.bin", labels=("high",))
    message = str(refusal(FastTextQuality(name="quality", column="q", model=one, label="high")))
    assert message.startswith(
        f"annotate.annotators[0].model: annotator 'quality': {one} gives the same P(high)"
    )
    assert "trained on one label" in message
