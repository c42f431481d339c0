"""Targets: user target sets read and tokenized, the combination of final losses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyspark.sql import functions as F

from quadmix_spark.config import ConfigError, TargetsConfig, from_dict
from quadmix_spark.pipeline.targets import combine, final_losses, first_tokens, target_sets
from udfs.models import end_of_text, load_tokenizer


def targets(**sets) -> TargetsConfig:
    return from_dict(TargetsConfig, {"target_sets": sets})


def test_target_set_from_jsonl_is_tokenized_in_a_stable_order_and_capped(spark, tmp_path):
    texts = [f"instruction {i}: explain delta tables and spark jobs" for i in range(30)]
    path = tmp_path / "instr.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": t}) for t in texts) + "\n" + json.dumps({"prompt": None}))
    enc = load_tokenizer("cl100k_base")
    per_doc = len(enc.encode_ordinary(texts[0])) + 1  # + EOT

    full = target_sets(
        spark, targets(instr={"path": str(path), "text_column": "prompt", "max_tokens": 10_000})
    )
    assert list(full) == ["instr"] and len(full["instr"]) == 30 * per_doc
    assert (full["instr"] == end_of_text("cl100k_base")).sum() == 30
    capped = target_sets(spark, targets(instr={"path": str(path), "text_column": "prompt", "max_tokens": 50}))
    assert np.array_equal(capped["instr"], full["instr"][:50])

    with pytest.raises(ConfigError, match=r"targets.target_sets.instr.text_column: 'text' is not a column"):
        target_sets(spark, targets(instr={"path": str(path)}))
    with pytest.raises(ConfigError, match=r"targets.target_sets.x.path: cannot read"):
        target_sets(spark, targets(x={"path": str(tmp_path / "missing.jsonl")}))
    with pytest.raises(ConfigError, match=r"targets.target_sets.x.path is required"):
        target_sets(spark, targets(x={}))


def test_a_target_set_is_cut_in_spark_so_the_driver_holds_the_same_whatever_its_size(spark):
    enc, eot = load_tokenizer("cl100k_base"), end_of_text("cl100k_base")

    def spec(texts: list[str], max_tokens: int) -> np.ndarray:
        # Every text to the driver, in (xxhash64, text) order, then cut: what target_sets did before.
        frame = spark.createDataFrame([(t,) for t in texts], "text string")
        hashes = dict(frame.select("text", F.xxhash64("text")).collect())
        ordered = sorted(texts, key=lambda t: (hashes[t], t))
        ids = [tok for t in ordered for tok in [*enc.encode_ordinary(t), eot]]
        return np.asarray(ids[:max_tokens], dtype=np.int64)

    collected = []
    for n in (60, 600):
        texts = [f"document {i % (n // 2)} about spark and delta" for i in range(n)]  # each text twice
        frame = spark.createDataFrame([(t,) for t in texts], "text string").repartition(3)
        tokens, rows = first_tokens(frame, max_tokens=40, first_page=4)
        assert np.array_equal(tokens, spec(texts, 40))
        collected.append(rows)
    # ~8 tokens a document, each text twice: the first page of 4 texts fills 40 tokens.
    assert collected == [4, 4]
    # A set smaller than the cap is taken whole, duplicates included.
    small = ["one text", "one text", "another text"]
    frame = spark.createDataFrame([(t,) for t in small], "text string")
    tokens, _ = first_tokens(frame, 10_000, first_page=2)
    assert np.array_equal(tokens, spec(small, 10_000))


def test_combine_is_the_mean_or_the_weighted_mean():
    losses = final_losses(
        [
            {"eval_set": "a", "step_tokens": 10, "loss": 9.0},
            {"eval_set": "a", "step_tokens": 20, "loss": 2.0},
            {"eval_set": "b", "step_tokens": 20, "loss": 4.0},
        ]
    )
    assert losses == {"a": 2.0, "b": 4.0}
    assert combine(losses, {}) == 3.0
    assert combine(losses, {"a": 3.0, "b": 1.0}) == 2.5
    with pytest.raises(ConfigError, match=r"targets.weights: no loss for eval set\(s\) \['c'\]"):
        combine(losses, {"c": 1.0})


def test_columns_the_config_names_are_checked_before_the_experiment_starts(spark, tmp_path):
    from quadmix_spark.config import PipelineConfig
    from quadmix_spark.pipeline.experiment import run_experiment

    table = str(tmp_path / "warehouse" / "annotated")
    rows = [("a", "some text", "news", 3, 0.5)]
    spark.createDataFrame(
        rows, "id string, text string, domain string, n_tokens long, q double"
    ).write.format("delta").save(table)

    def config(**keys):
        base = {"warehouse": str(tmp_path / "warehouse"), "scorers": {"q": "higher_is_better"}}
        return from_dict(
            PipelineConfig, {**base, "experiment": {"output_dir": str(tmp_path / "exp")}, **keys}
        )

    # The demo's filter on a corpus without a quality column: the key, not a raw AnalysisException.
    with pytest.raises(
        ConfigError,
        match=r"targets.heldout_filter: \"quality = 'high'\" names column\(s\) \['quality'\] that",
    ):
        run_experiment(spark, config(targets={"heldout_filter": "quality = 'high'"}))
    with pytest.raises(ConfigError, match=r"targets.heldout_filter: 'q >' is not a SQL predicate"):
        run_experiment(spark, config(targets={"heldout_filter": "q >"}))
    with pytest.raises(ConfigError, match=r"targets.heldout_filter: 'nosuchfn\(q\)' does not apply"):
        run_experiment(spark, config(targets={"heldout_filter": "nosuchfn(q)"}))
    with pytest.raises(ConfigError, match=r"scorers.q_missing: column 'q_missing' is not in"):
        run_experiment(spark, config(scorers={"q_missing": "higher_is_better"}))
    # 24 runs with a fifth held out leave 19 to fit on: said now, not after 24 proxies trained.
    held = {"holdout_fraction": 0.2}
    with pytest.raises(
        ConfigError, match=r"the first round \(24\) at least 20 .* the 5 that search.holdout_f"
    ):
        run_experiment(
            spark, config(experiment={"output_dir": str(tmp_path / "exp"), "n_runs": 24}, search=held)
        )
    assert not (tmp_path / "exp").exists()  # nothing was started
