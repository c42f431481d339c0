"""The streams job against the numpy specification, on a tiny annotated table in local[2]."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.pipeline.streams import load_streams, run_streams
from udfs.models import end_of_text, load_tokenizer

WORDS = {
    "alpha": ["river", "stone", "water", "bank", "fish", "boat", "shore", "current", "bridge", "mill"],
    "beta": ["matrix", "vector", "scalar", "tensor", "kernel", "norm", "basis", "rank", "trace", "field"],
    "gamma": ["court", "statute", "claim", "party", "appeal", "clause", "ruling", "judge", "motion", "brief"],
}
EOT = end_of_text("cl100k_base")


def documents(n_per_domain: dict[str, int], seed: int = 0) -> list[tuple[str, str, str, int]]:
    """(id, domain, text, n_tokens) rows; n_tokens by the tokenizer itself (as annotate counts)."""
    rng = np.random.default_rng(seed)
    enc = load_tokenizer("cl100k_base")
    rows = []
    for domain, n in n_per_domain.items():
        for i in range(n):
            words = rng.choice(WORDS[domain], size=int(rng.integers(5, 60)))
            text = " ".join(words) + "."
            rows.append((f"{domain}-{i}", domain, text, len(enc.encode_ordinary(text))))
    return rows


def write_table(spark, path: str, rows, partitions: int) -> None:
    df = spark.createDataFrame(rows, "id string, domain string, text string, n_tokens long")
    df = df.withColumn("doc_key", F.xxhash64("id")).repartition(partitions)
    df.write.format("delta").mode("overwrite").save(path)


def make_config(tmp_path, table: str, out: str, **streams) -> PipelineConfig:
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "wh"),
            "targets": {"heldout_fraction": 0.1, "heldout_max_tokens": 500},
            "reweight": {
                "streams": {"input_table": table, "output_table": out, "chunk_tokens": 97, **streams}
            },
        },
    )


def expected_streams(rows, need: dict[str, int], seed: int, holdout_seed: int = 0, fraction: float = 0.1):
    """The specification on the whole domain: pool = not held out, every document tokenized here."""
    import pyspark  # noqa: F401  (xxhash64 of the ids comes from Spark below)

    out = {}
    enc = load_tokenizer("cl100k_base")
    for domain in sorted({r[1] for r in rows}):
        mine = [r for r in rows if r[1] == domain]
        keys = np.array([r[4] for r in mine], dtype=np.int64)
        pool = core.hash_uniform(keys, holdout_seed, core.HOLDOUT_STREAM) >= fraction
        tokens = [enc.encode_ordinary(r[2]) for r, keep in zip(mine, pool, strict=True) if keep]
        out[domain] = core.domain_stream(tokens, keys[pool], seed, need[domain], eot=EOT)
    return out


@pytest.fixture(scope="module")
def table(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streams")
    rows = documents({"alpha": 120, "beta": 80, "gamma": 40})
    path = str(tmp / "annotated")
    write_table(spark, path, rows, 3)
    keyed = spark.createDataFrame([(r[0],) for r in rows], "id string").withColumn("k", F.xxhash64("id"))
    key_of = {r["id"]: int(r["k"]) for r in keyed.collect()}
    return tmp, path, [(*r, key_of[r[0]]) for r in rows]


def test_streams_match_the_specification_and_count_tokens(spark, table, tmp_path, caplog):
    tmp, path, rows = table
    out = str(tmp_path / "streams")
    cfg = make_config(tmp_path, path, out, tokens_per_domain=1500, max_tokens={"beta": 400})
    with caplog.at_level(logging.INFO, logger="quadmix_spark.pipeline.streams"):
        summary = run_streams(spark, cfg)
    train, val, available, key = load_streams(spark, str(tmp_path / "streams"))
    expected = expected_streams(rows, {"alpha": 1500, "beta": 400, "gamma": 1500}, seed=0)
    assert sorted(train) == ["alpha", "beta", "gamma"]
    for d in train:
        np.testing.assert_array_equal(train[d], expected[d])
        assert summary.domains[d].stream_tokens == expected[d].size
    # gamma is small: its whole pool (documents + one end-of-text each) is fewer than 1500 tokens
    enc = load_tokenizer("cl100k_base")
    pool_rows = {
        d: [r for r in rows if r[1] == d and core.hash_uniform([r[4]], 0, core.HOLDOUT_STREAM)[0] >= 0.1]
        for d in train
    }
    gamma_all = sum(len(enc.encode_ordinary(r[2])) + 1 for r in pool_rows["gamma"])
    assert gamma_all < 1500 and train["gamma"].size == gamma_all
    assert train["alpha"].size == 1500 and train["beta"].size == 400
    for d in train:  # the available tokens: the pool's annotated counts, before the cap
        assert available[d] == sum(r[3] for r in pool_rows[d]) == summary.domains[d].available_tokens
    assert summary.domains["beta"].capped and summary.domains["beta"].epochs == pytest.approx(1500 / 400)
    assert "capped at 400 (data-restricted)" in caplog.text and "3.75 epochs" in caplog.text
    # the capped stream is a prefix of the uncapped one: the same hash order
    np.testing.assert_array_equal(
        expected_streams(rows, {"alpha": 0, "beta": 1500, "gamma": 0}, seed=0)["beta"][:400], train["beta"]
    )
    assert sorted(val) == ["heldout:alpha", "heldout:beta", "heldout:gamma"]
    assert all(0 < v.size <= 500 for v in val.values())
    assert key == summary.streams_key
    again = run_streams(spark, cfg)  # same inputs and config: the table is reused, not rewritten
    assert again.reused and again.version == summary.version
    cost = summary.cost  # what the run cost, with the pool's tokens (the available ones)
    assert cost["wall_s"] > 0 and cost["executor_core_s"] > 0 and cost["executor_cpu_s"] > 0
    assert cost["tokens"] == sum(p.available_tokens for p in summary.domains.values())
    assert cost["tokens_per_core_hour"] == pytest.approx(cost["tokens"] / (cost["executor_core_s"] / 3600))
    committed = DeltaTable.forPath(spark, out).history().where(f"version = {summary.version}")
    assert json.loads(committed.select("userMetadata").first()[0])["cost"]["executor_core_s"] > 0


def test_streams_do_not_depend_on_partitioning_or_sample_rounds(spark, table, tmp_path):
    tmp, path, rows = table
    one = str(tmp_path / "one")
    write_table(spark, one, [r[:4] for r in rows], 1)
    a = make_config(tmp_path, path, str(tmp_path / "s3"), tokens_per_domain=900, seed=7)
    b = make_config(tmp_path, one, str(tmp_path / "s1"), tokens_per_domain=900, seed=7)
    run_streams(spark, a)
    run_streams(spark, b)
    ta, va, _, _ = load_streams(spark, str(tmp_path / "s3"))
    tb, vb, _, _ = load_streams(spark, str(tmp_path / "s1"))
    assert sorted(ta) == sorted(tb)
    for d in ta:
        np.testing.assert_array_equal(ta[d], tb[d])
    for name in va:
        np.testing.assert_array_equal(va[name], vb[name])
    expected = expected_streams(rows, {"alpha": 900, "beta": 900, "gamma": 900}, seed=7)
    for d in ta:
        np.testing.assert_array_equal(ta[d], expected[d])
    # another seed is another order
    other = expected_streams(rows, {"alpha": 900, "beta": 0, "gamma": 0}, 8)["alpha"]
    assert not np.array_equal(other, ta["alpha"])


def test_streams_config_errors_name_the_key(spark, table, tmp_path):
    tmp, path, _ = table
    with pytest.raises(ConfigError, match="reweight.streams.max_tokens.delta"):
        run_streams(spark, make_config(tmp_path, path, str(tmp_path / "x"), max_tokens={"delta": 10}))
    with pytest.raises(ConfigError, match="reweight.streams.input_table"):
        run_streams(spark, make_config(tmp_path, str(tmp_path / "none"), str(tmp_path / "x")))
    with pytest.raises(ConfigError, match="reweight.streams.tokens_per_domain"):
        from quadmix_spark.config import _check_reweight

        bad = make_config(tmp_path, path, str(tmp_path / "x"), tokens_per_domain=0)
        _check_reweight(bad.reweight)


def test_domain_stream_and_mixture_stream_specification():
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 50, size=int(n)) for n in rng.integers(1, 9, size=30)]
    keys = rng.integers(-(2**62), 2**62, size=30)
    u = core.hash_uniform(keys, 5, core.STREAMS_STREAM)
    order = sorted(range(30), key=lambda i: (u[i], keys[i]))  # brute force
    flat = [t for i in order for t in [*docs[i], 99]]
    np.testing.assert_array_equal(core.domain_stream(docs, keys, 5, 40, eot=99), flat[:40])
    np.testing.assert_array_equal(core.domain_stream(docs, keys, 5, 10**6, eot=99), flat)
    # a permutation of the documents gives the same stream
    p = rng.permutation(30)
    np.testing.assert_array_equal(core.domain_stream([docs[i] for i in p], keys[p], 5, 40, eot=99), flat[:40])

    streams = {"a": np.arange(10), "b": np.arange(100, 400)}
    mixed, taken = core.mixture_stream(streams, {"a": 0.25, "b": 0.75}, 100, seed=1, piece=8)
    assert taken == {"a": 25, "b": 75} and mixed.size == 100
    # a's 10 tokens are repeated cyclically: 2.5 epochs
    assert np.bincount(mixed[mixed < 10], minlength=10).tolist() == [3] * 5 + [2] * 5
    assert sorted(mixed[mixed >= 100].tolist()) == list(range(100, 175))
    flipped = dict(reversed(streams.items()))
    again, _ = core.mixture_stream(flipped, {"b": 0.75, "a": 0.25}, 100, seed=1, piece=8)
    np.testing.assert_array_equal(mixed, again)
    with pytest.raises(ValueError, match="sum to 1"):
        core.mixture_stream(streams, {"a": 0.5, "b": 0.2}, 10, 0, 4)
