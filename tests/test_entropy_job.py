"""The entropy job on a real Delta table: Spark's SE/JE/CE/VNE equal the numpy core's on the same
sample, whatever the partitioning; mixture files, the entropy table and reruns."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.mixing.entropy import (
    ngram_counts,
    sequence_entropies,
    softmax_mixture,
    von_neumann_entropy,
)
from quadmix_spark.pipeline import entropy as entropy_job
from quadmix_spark.pipeline.entropy import run_entropy
from udfs.models import load_fasttext, load_tokenizer

# Domains whose texts differ in how varied they are: entropies differ, so do the shares.
TEXTS = {
    "poetry": "moon rose river night silver dream wind song star shadow ember tide whisper flame",
    "ledger": "total sum paid due",
    "recipe": "salt flour butter egg milk oven stir bake sugar yeast",
}
VOCAB = {d: words.split(" ") for d, words in TEXTS.items()}
MODEL_NAME = "entropy_job_vectors.bin"  # shipped by file name: unique among the tests


def corpus(n: int = 240, seed: int = 7) -> list[tuple]:
    rng = np.random.default_rng(seed)
    enc = load_tokenizer("cl100k_base")
    rows = []
    domains = sorted(VOCAB)
    for i in range(n):
        d = domains[i % 3]
        text = " ".join(str(w) for w in rng.choice(VOCAB[d], int(rng.integers(3, 30))))
        if i % 17 == 0:
            text = text.replace(" ", "\n", 2)  # fastText reads one line: newlines are spaces
        rows.append((f"doc{i:04d}", d, text, len(enc.encode_ordinary(text))))
    rows.append(("empty", "ledger", "", 0))
    return rows


def train_model(path) -> str:
    import fasttext

    rng = np.random.default_rng(0)
    lines = [
        f"__label__{d} " + " ".join(str(w) for w in rng.choice(words, 10))
        for _ in range(100)
        for d, words in VOCAB.items()
    ]
    train = path.parent / "vectors.train.txt"
    train.write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(
        str(train), epoch=10, lr=0.5, dim=8, wordNgrams=2, minCount=2, verbose=0, thread=1, seed=0
    )
    model.save_model(str(path))
    return str(path)


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("entropy")
    model = train_model(root / MODEL_NAME)
    rows = corpus()
    schema = "id string, domain string, text string, n_tokens long"
    df = spark.createDataFrame(rows, schema).withColumn("doc_key", F.xxhash64("id"))
    df.coalesce(1).write.format("delta").save(str(root / "warehouse" / "one"))
    df.repartition(5, "id").write.format("delta").save(str(root / "warehouse" / "five"))
    return root, model, df.toPandas()


def make_config(root, table: str, **entropy) -> PipelineConfig:
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(root / "warehouse"),
            "entropy": {
                "input_table": table,
                "output_table": f"entropy_{table}",
                "output_dir": str(root / f"out_{table}"),
                "tokens_per_domain": 800,
                "vne_docs": 30,
                "vne_model": str(root / MODEL_NAME),
                "seed": 3,
                **entropy,
            },
        },
    )


def expected_values(pdf, seed: int = 3, tokens_per_domain: int = 800, vne_docs: int = 30, model=None):
    """The numpy core on the documents the job should draw, chosen here independently."""
    enc = load_tokenizer("cl100k_base")
    out: dict[str, dict[str, float]] = {"se": {}, "je": {}, "ce": {}, "vne": {}}
    sizes = {}
    for d, g in pdf.groupby("domain"):
        keys = g["doc_key"].to_numpy(np.int64)
        rate = min(1.0, tokens_per_domain / g["n_tokens"].sum())
        chosen = g[core.hash_uniform(keys, seed, core.ENTROPY_STREAM) < rate]
        ids = [enc.encode_ordinary(t) for t in chosen["text"]]
        for m, v in sequence_entropies(ids).items():
            out[m][d] = v
        sizes[d] = (sum(map(len, ids)), len(chosen))
        u = core.hash_uniform(keys, seed, core.ENTROPY_STREAM + 1)
        order = np.lexsort((keys, u))[:vne_docs]
        ft = load_fasttext(model)
        vecs = [ft.get_sentence_vector(t.replace("\n", " ")) for t in g["text"].to_numpy()[order]]
        vecs = np.asarray(vecs, dtype=np.float32).astype(np.float64)
        out["vne"][d] = von_neumann_entropy(vecs[np.linalg.norm(vecs, axis=1) > 0])
    return out, sizes


def test_spark_entropies_equal_the_numpy_core_on_any_partitioning(spark, setup):
    root, model, pdf = setup
    one = run_entropy(spark, make_config(root, "one"))
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    try:
        five = run_entropy(spark, make_config(root, "five"))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")
    assert one.values == five.values  # bit for bit: 1 vs 5 input partitions, 4 vs 7 shuffle partitions
    assert one.tokens == five.tokens and one.docs == five.docs

    want, sizes = expected_values(pdf, model=model)
    assert one.values == want  # the same bits as the core: SE/JE/CE exact, VNE on the same vectors
    for d, (tokens, docs) in sizes.items():
        assert one.tokens[d] == tokens and one.docs[d] == docs
        assert 0 < docs < (pdf["domain"] == d).sum()  # a sample, not the domain
    assert one.vne_docs == {d: 30 for d in VOCAB}
    # a richer vocabulary has a higher unigram entropy and a larger share
    assert one.values["se"]["poetry"] > one.values["se"]["recipe"] > one.values["se"]["ledger"]
    for m in ("se", "je", "ce", "vne"):
        mixture = core.Mixture.from_file(one.mixtures[m])
        assert dict(mixture.shares) == pytest.approx(dict(softmax_mixture(one.values[m]).shares), rel=1e-12)
        assert mixture.provenance["method"] == f"entropy:{m}"
        assert mixture.provenance["entropy_nats"] == pytest.approx(one.values[m], rel=1e-15)
        assert mixture.provenance["inputs"]["version"] == 0


def test_the_entropy_table_and_a_rerun(spark, setup, capsys):
    root, _, _ = setup
    config_path = root / "config.json"
    config = make_config(root, "one", measures=["se", "ce"], output_table="entropy_cli")
    config_path.write_text(json.dumps(__import__("dataclasses").asdict(config)))
    assert main(["entropy", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "entropy " in out and "count-histogram rows collected" in out
    for d in VOCAB:
        assert d in out
    table = spark.read.format("delta").load(str(root / "warehouse" / "entropy_cli")).toPandas()
    assert sorted(table.columns) == sorted(
        ["entropy_id", "input_table", "annotated_version", "domain", "measure", "value", "tokens", "docs"]
    )
    assert len(table) == 6 and set(table["measure"]) == {"se", "ce"}
    summary = json.loads((root / "out_one" / "entropy_summary.json").read_text())
    for r in table.itertuples():
        assert r.value == summary["values"][r.measure][r.domain]
        assert r.tokens == summary["tokens"][r.domain] and r.docs == summary["docs"][r.domain]
        assert r.annotated_version == 0
    # what the run cost: in the summary JSON, the printed summary and the commit (before its write)
    cost = summary["cost"]
    assert cost["wall_s"] > 0 and cost["executor_core_s"] > 0 and cost["executor_cpu_s"] > 0
    assert cost["tokens"] == sum(summary["domain_tokens"].values()) > 0
    assert cost["tokens_per_core_hour"] == pytest.approx(cost["tokens"] / (cost["executor_core_s"] / 3600))
    assert "executor core-s" in out
    history = DeltaTable.forPath(spark, str(root / "warehouse" / "entropy_cli")).history(1)
    committed = json.loads(history.select("userMetadata").first()[0])["cost"]
    assert committed["scope"] == "before_write"
    assert 0 < committed["executor_core_s"] <= cost["executor_core_s"]
    # a rerun of the same inputs replaces its rows, never adds them twice
    assert main(["entropy", "--config", str(config_path)]) == 0
    again = spark.read.format("delta").load(str(root / "warehouse" / "entropy_cli")).toPandas()
    assert len(again) == 6
    assert sorted(again["value"]) == sorted(table["value"])


def sampled_ids(pdf, seed: int = 3, tokens_per_domain: int = 800) -> dict[str, list[list[int]]]:
    """Each domain's hash-sampled documents as token ids, chosen here independently of the job."""
    enc = load_tokenizer("cl100k_base")
    out = {}
    for d, g in pdf.groupby("domain"):
        rate = min(1.0, tokens_per_domain / g["n_tokens"].sum())
        chosen = g[core.hash_uniform(g["doc_key"].to_numpy(np.int64), seed, core.ENTROPY_STREAM) < rate]
        out[d] = [enc.encode_ordinary(t) for t in chosen["text"]]
    return out


def test_miller_madow_and_temperature_through_the_job(spark, setup, capsys):
    root, _, pdf = setup
    config = make_config(root, "one", measures=["se", "je", "ce"], estimator="miller_madow", temperature=2.5)
    got = run_entropy(spark, config)
    for d, ids in sampled_ids(pdf).items():
        counts = ngram_counts(ids)
        k = {kind: len(codes) for kind, (codes, _) in counts.items()}
        n = {kind: int(c.sum()) for kind, (_, c) in counts.items()}
        plugin = sequence_entropies(ids)
        assert {m: got.plugin_values[m][d] for m in ("se", "je", "ce")} == plugin  # the core's bits
        assert got.values["se"][d] == pytest.approx(
            plugin["se"] + (k["unigram"] - 1) / (2 * n["unigram"]), 1e-14
        )
        assert got.values["je"][d] == pytest.approx(plugin["je"] + (k["pair"] - 1) / (2 * n["pair"]), 1e-14)
        assert got.values["ce"][d] == pytest.approx(
            plugin["ce"] + (k["pair"] - k["left"]) / (2 * n["pair"]), 1e-14
        )
        assert got.tokens[d] == n["unigram"]
    # another estimator is another run: its table rows never replace the plug-in run's
    assert got.entropy_id != run_id(config, "plugin")
    for m in ("se", "je", "ce"):
        mixture = core.Mixture.from_file(got.mixtures[m])
        h = np.array([got.values[m][d] for d in mixture.domains])
        want = np.exp((h - h.max()) / 2.5)
        assert list(mixture.shares.values()) == pytest.approx((want / want.sum()).tolist(), rel=1e-12)
        p = mixture.provenance
        assert (p["estimator"], p["log_base"], p["softmax_temperature"]) == ("miller_madow", "e", 2.5)
        assert p["tokens"] == got.tokens and p["entropy_plugin_nats"] == pytest.approx(got.plugin_values[m])
    text = entropy_job.format_summary(got)
    assert "log base e" in text and "miller_madow" in text and "softmax(H / 2.5)" in text


def run_id(config: PipelineConfig, estimator: str) -> str:
    cfg = dataclasses.replace(config.entropy, estimator=estimator)
    source = config.table_path(cfg.input_table)
    return entropy_job.entropy_id(dataclasses.replace(config, entropy=cfg), source, 0, None)


def test_restricted_domains_and_errors(spark, setup):
    root, _, _ = setup
    config = make_config(root, "one", measures=["je"])
    two = run_entropy(spark, config, domains=["ledger", "poetry"])
    assert two.domains == ["ledger", "poetry"] and set(two.shares["je"]) == {"ledger", "poetry"}
    with pytest.raises(ConfigError, match=r"no documents of \['nowhere'\]"):
        run_entropy(spark, config, domains=["ledger", "nowhere"])
    with pytest.raises(ConfigError, match="entropy.vne_model: no fastText model"):
        run_entropy(spark, make_config(root, "one", vne_model=str(root / "none.bin")))
    with pytest.raises(ConfigError, match="entropy.input_table: no Delta table"):
        run_entropy(spark, make_config(root, "missing", measures=["se"]))


def test_config_errors_name_the_key(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"entropy": {"measures": []}}))
    assert main(["entropy", "--config", str(path)]) == 2
    assert "entropy.measures: at least one" in capsys.readouterr().err
    for setting, message in (
        ("entropy.measures=[se, xe]", "entropy.measures[1]: 'xe' is not one of"),
        ("entropy.tokens_per_domain=0", "entropy.tokens_per_domain must be positive"),
        ("entropy.vne_docs=1", "entropy.vne_docs must be at least 2"),
        ("entropy.vne_model=classifier", "entropy.vne_model: `classifier` needs a fasttext_domain annotator"),
        ("entropy.estimator=bayes", "entropy.estimator: 'bayes' is not one of 'plugin', 'miller_madow'"),
        ("entropy.temperature=0", "entropy.temperature must be positive, got 0.0"),
    ):
        path.write_text("{}")
        assert main(["entropy", "--config", str(path), "--set", setting]) == 2
        assert message in capsys.readouterr().err
