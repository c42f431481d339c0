"""VNE's vectors: a general-purpose skipgram model trained on a hash sample of the input and cached
by the sample's digest (the default), or the domain classifier's model when asked."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import ConfigError, EntropyConfig, PipelineConfig, from_dict, load_config
from quadmix_spark.demo.corpus import generate_documents
from quadmix_spark.mixing.entropy import von_neumann_entropy
from quadmix_spark.pipeline import entropy as entropy_job
from quadmix_spark.pipeline.entropy import run_entropy
from udfs.models import load_fasttext, load_tokenizer

SEED, VNE_DOCS = 5, 12
TINY = {"vne_dim": 16, "vne_epochs": 5, "vne_train_tokens": 4000}  # fast; the default is 300-d


@pytest.fixture(scope="module")
def demo(spark, tmp_path_factory):
    """240 documents of the demo corpus (real prose in its domains), in 1 and in 5 partitions."""
    root = tmp_path_factory.mktemp("vne")
    enc = load_tokenizer("cl100k_base")
    rows = [
        (d["id"], d["true_domain"], d["text"], len(enc.encode_ordinary(d["text"])))
        for d in generate_documents(240, seed=0)
    ]
    df = spark.createDataFrame(rows, "id string, domain string, text string, n_tokens long")
    df = df.withColumn("doc_key", F.xxhash64("id"))
    df.coalesce(1).write.format("delta").save(str(root / "warehouse" / "one"))
    df.repartition(5, "id").write.format("delta").save(str(root / "warehouse" / "five"))
    return root, df.toPandas()


def make_config(root, table: str, annotators: list | None = None, **entropy) -> PipelineConfig:
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(root / "warehouse"),
            "annotate": {"annotators": annotators or []},
            "entropy": {
                "input_table": table,
                "output_table": f"entropy_{table}",
                "output_dir": str(root / f"out_{table}"),
                "measures": ["vne"],
                "vne_docs": VNE_DOCS,
                "seed": SEED,
                **entropy,
            },
        },
    )


def expected_vne(pdf, model: str) -> dict[str, float]:
    """VNE of each domain's first VNE_DOCS documents by hash, with ``model``'s vectors, chosen here."""
    ft, out = load_fasttext(model), {}
    for d, g in pdf.groupby("domain"):
        keys = g["doc_key"].to_numpy(np.int64)
        order = np.lexsort((keys, core.hash_uniform(keys, SEED, core.ENTROPY_STREAM + 1)))[:VNE_DOCS]
        texts = g["text"].to_numpy()[order]
        vecs = np.asarray([ft.get_sentence_vector(t.replace("\n", " ")) for t in texts], dtype=np.float32)
        vecs = vecs.astype(np.float64)
        out[d] = von_neumann_entropy(vecs[np.linalg.norm(vecs, axis=1) > 0])
    return out


def training_docs(pdf) -> int:
    """Documents of the skipgram model's sample, chosen here independently of the job."""
    n = 0
    for _, g in pdf.groupby("domain"):
        rate = min(1.0, TINY["vne_train_tokens"] / g["n_tokens"].sum())
        n += int(
            (core.hash_uniform(g["doc_key"].to_numpy(np.int64), SEED, core.ENTROPY_STREAM + 2) < rate).sum()
        )
    return n


def test_vne_on_a_skipgram_model_trained_once_and_cached(spark, demo, caplog):
    root, pdf = demo
    with caplog.at_level(logging.INFO, logger="quadmix_spark.pipeline"):
        first = run_entropy(spark, make_config(root, "one", **TINY))
    model = first.vne_model_file
    assert first.vne_model == "skipgram" and first.vne_trained and first.vne_dim == 16
    assert model.startswith(str(root / "warehouse" / "_models" / "vne" / "skipgram-"))
    ft = load_fasttext(model)
    assert ft.get_dimension() == 16 and str(ft.f.getArgs().model) == "model_name.skipgram"
    n = training_docs(pdf)
    assert 0 < n < len(pdf) and f"training the VNE skipgram model on {n} documents" in caplog.text

    # the values are the core's VNE of the same documents' vectors under that model, at most log d
    assert first.values["vne"] == expected_vne(pdf, model)
    assert all(0 < v <= np.log(16) for v in first.values["vne"].values())
    mixture = core.Mixture.from_file(first.mixtures["vne"])
    sample = mixture.provenance["sample"]
    assert (sample["vne_model"], sample["vne_model_file"], sample["vne_dim"]) == ("skipgram", model, 16)
    text = entropy_job.format_summary(first)
    assert f"of 16 dimensions from the skipgram model {model} (trained now)" in text
    meta = spark.sql(f"DESCRIBE HISTORY delta.`{first.table}`").first()["userMetadata"]
    assert '"vne_dim": 16' in meta

    # Another partitioning of the same documents: the same sample digest, so the cached file is read
    # (not retrained, not rewritten) and the values are the same bits.
    mtime = os.stat(model).st_mtime_ns
    again = run_entropy(spark, make_config(root, "five", **TINY))
    assert again.vne_model_file == model and not again.vne_trained
    assert os.stat(model).st_mtime_ns == mtime
    assert again.values["vne"] == first.values["vne"]
    assert len(list((root / "warehouse" / "_models" / "vne").glob("*.bin"))) == 1

    # Another dimension is another model (and another run id).
    wider = run_entropy(spark, make_config(root, "one", **{**TINY, "vne_dim": 24}))
    assert wider.vne_trained and wider.vne_dim == 24 and wider.vne_model_file != model
    assert wider.entropy_id != first.entropy_id


def train_classifier(path) -> str:
    import fasttext

    rng = np.random.default_rng(0)
    words = {"a": ["river", "stone", "water"], "b": ["matrix", "vector", "norm"]}
    lines = [f"__label__{d} " + " ".join(rng.choice(w, 8)) for _ in range(50) for d, w in words.items()]
    train = path.parent / "classifier.train.txt"
    train.write_text("\n".join(lines) + "\n")
    # fastText stops with "Encountered NaN" now and then on inputs this small (entropy._fit_skipgram).
    settings = {"epoch": 5, "dim": 8, "minCount": 1, "verbose": 0, "thread": 1, "seed": 0}
    for tries_left in range(4, -1, -1):
        try:
            model = fasttext.train_supervised(str(train), **settings)
            break
        except RuntimeError:
            if not tries_left:
                raise
    model.save_model(str(path))
    return str(path)


def test_the_domain_classifier_when_asked(spark, demo):
    root, pdf = demo
    model = train_classifier(root / "vne_classifier_vectors.bin")
    annotators = [{"kind": "fasttext_domain", "column": "domain", "model": model}]
    config = make_config(root, "one", annotators, vne_model="classifier")
    got = run_entropy(spark, config)
    assert got.vne_model == "classifier" and got.vne_model_file == model and got.vne_dim == 8
    assert not got.vne_trained and got.values["vne"] == expected_vne(pdf, model)
    by_path = run_entropy(spark, make_config(root, "one", vne_model=model))  # a path: the same vectors
    assert by_path.values == got.values and by_path.vne_dim == 8


def test_default_is_a_300_d_skipgram_and_errors_name_the_key(tmp_path):
    cfg = EntropyConfig()
    assert (cfg.vne_model, cfg.vne_dim) == ("skipgram", 300) and "vne" in cfg.measures
    train = tmp_path / "train.txt"
    train.write_text("the river runs past the stone mill and the water turns the wheel\n" * 20)
    ft = entropy_job._fit_skipgram(train, cfg)  # what the job trains with the default settings
    assert ft.get_dimension() == 300 and str(ft.f.getArgs().model) == "model_name.skipgram"

    path = tmp_path / "c.yaml"
    path.write_text("entropy: {vne_model: null}\n")
    with pytest.raises(ConfigError, match="entropy.vne_model: null no longer means the domain classifier"):
        load_config(path)
    with pytest.raises(
        ConfigError, match="entropy.vne_model: `classifier` needs a fasttext_domain annotator"
    ):
        entropy_job.check_config(make_config(tmp_path, "t", vne_model="classifier"))
    with pytest.raises(ConfigError, match="entropy.vne_dim must be positive"):
        load_config(path, ["entropy.vne_model=skipgram", "entropy.vne_dim=0"])
