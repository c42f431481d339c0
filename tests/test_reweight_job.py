"""The reweight job end to end in local[2]: streams → TANDEM / DoReMi / Uniform runs as Spark tasks →
mixture files, α plot and fresh proxies; reruns, failures and the table's creation race."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
import yaml
from pyspark.sql import functions as F

pytest.importorskip("torch")

from quadmix_spark import core  # noqa: E402
from quadmix_spark.cli import main  # noqa: E402
from quadmix_spark.config import PipelineConfig, from_dict, to_dict  # noqa: E402
from quadmix_spark.mixing.doremi import DoReMi  # noqa: E402
from quadmix_spark.mixing.tandem import Tandem  # noqa: E402
from quadmix_spark.pipeline.reweight import SHAPE_KEYS, build_vocab, run_reweight  # noqa: E402
from quadmix_spark.pipeline.reweight_runs import ensure_table, load_runs  # noqa: E402
from quadmix_spark.pipeline.streams import load_streams  # noqa: E402
from quadmix_spark.spark import tables  # noqa: E402
from udfs.models import load_tokenizer  # noqa: E402

WORDS = {
    "alpha": ["river", "stone", "water", "bank", "fish", "boat", "shore", "current", "bridge", "mill"],
    "beta": ["matrix", "vector", "scalar", "tensor", "kernel", "norm", "basis", "rank", "trace", "field"],
    "gamma": ["court", "statute", "claim", "party", "appeal", "clause", "ruling", "judge", "motion", "brief"],
}
TANDEM = {"episodes": 3, "probe_steps": 2, "free_steps": 1, "seqs_per_domain": 2, "lr_alpha": 0.5}
DOREMI = {"steps": 4, "reference_steps": 3, "seqs_per_domain": 2}
# A tinylm of a few thousand parameters: every reweight test's proxy shape.
TINYLM = {
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 2,
    "d_ff": 32,
    "context": 16,
    "batch_size": 4,
    "vocab": "top:64",
    "eval_tokens": 200,
}


@pytest.fixture(scope="module")
def annotated(spark, tmp_path_factory):
    rng = np.random.default_rng(1)
    enc = load_tokenizer("cl100k_base")
    rows = []
    for domain, n in {"alpha": 50, "beta": 40, "gamma": 30}.items():
        for i in range(n):
            text = " ".join(rng.choice(WORDS[domain], size=int(rng.integers(5, 40)))) + "."
            rows.append((f"{domain}-{i}", domain, text, len(enc.encode_ordinary(text))))
    path = str(tmp_path_factory.mktemp("reweight") / "annotated")
    df = spark.createDataFrame(rows, "id string, domain string, text string, n_tokens long")
    df.withColumn("doc_key", F.xxhash64("id")).write.format("delta").save(path)
    return path


def make_config(tmp_path, annotated: str, **reweight) -> PipelineConfig:
    base = {
        "streams": {
            "input_table": annotated,
            "output_table": str(tmp_path / "streams"),
            "tokens_per_domain": 500,
            "max_tokens": {"gamma": 120},
        },
        "runs_table": str(tmp_path / "runs"),
        "output_dir": str(tmp_path / "out"),
        "params": {"tandem": [TANDEM], "doremi": [DOREMI], "uniform": [{"seqs_per_domain": 2}]},
    }
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "wh"),
            "targets": {"heldout_fraction": 0.15, "heldout_max_tokens": 200},
            "proxy": {"tinylm": TINYLM},
            "reweight": base | reweight,
        },
    )


def test_reweight_job_end_to_end(spark, annotated, tmp_path, caplog):
    cfg = make_config(tmp_path, annotated, eval_tokens=600)
    with caplog.at_level(logging.INFO, logger="quadmix_spark.pipeline"):
        result = run_reweight(spark, cfg)
    assert not result.failed and result.trained == 6  # 3 methods + 3 fresh proxies
    assert result.cost["tasks"] >= 6 and result.cost["executor_core_s"] > 0  # a task per run
    runs = load_runs(spark, str(tmp_path / "runs")).set_index("run_id")
    assert len(runs) == 6 and (runs["status"] == "ok").all()
    assert sorted(runs["kind"]) == ["eval"] * 3 + ["reweight"] * 3

    # The Spark task's TANDEM equals TANDEM fitted here on the same streams (deterministic on the CPU).
    train, val, _, _ = load_streams(spark, str(tmp_path / "streams"))
    vocab = build_vocab(cfg, train)
    shape = {k: getattr(cfg.proxy.tinylm, k) for k in SHAPE_KEYS}
    direct = Tandem(**shape, **TANDEM, seed=0, vocab=vocab).fit(train, val)
    tandem = runs[(runs["method"] == "tandem") & (runs["kind"] == "reweight")].iloc[0]
    alpha = np.array([list(a) for a in tandem["alpha"]])
    np.testing.assert_allclose(alpha, direct.alpha_trajectory_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        np.array([list(d) for d in tandem["delta"]]), [h["delta"] for h in direct.history_], atol=1e-12
    )
    assert alpha.shape == (3, 3) and len(json.loads(tandem["history"])) == 3
    assert tandem["vocab_key"] == vocab.key() and tandem["final"] == "average"

    # Mixture files: the time average of α (the classes' final='average'), with provenance.
    for m in result.methods:
        run = runs[(runs["method"] == m.method) & (runs["kind"] == "reweight")].iloc[0]
        mixture = core.Mixture.from_file(m.mixture_file)
        expected = np.array([list(a) for a in run["alpha"]]).mean(axis=0)
        np.testing.assert_allclose(mixture.as_vector(list(run["domains"])), expected, atol=1e-12)
        assert mixture.provenance["method"] == m.method and mixture.provenance["runs"] == [run.name]
        assert mixture.provenance["inputs"]["streams_key"] == result.streams.streams_key
    assert result.methods[2].mixture == pytest.approx({"alpha": 1 / 3, "beta": 1 / 3, "gamma": 1 / 3})
    assert (tmp_path / "out" / "alpha.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "out" / "vocab.json").read_text())["key"] == vocab.key()

    # Fresh proxies: the target is the mean over the validation streams; gamma (120 tokens) repeats.
    evals = runs[runs["kind"] == "eval"]
    for _, run in evals.iterrows():
        losses = dict(run["eval_losses"])
        assert sorted(losses) == sorted(val) and run["target_loss"] == pytest.approx(
            np.mean(list(losses.values()))
        )
        shares = dict(zip(run["domains"], run["mixture"], strict=True))
        taken = dict(run["epochs"])["gamma"] * train["gamma"].size
        assert taken == pytest.approx(round(taken)) and abs(taken - 600 * shares["gamma"]) <= 1
    uniform_eval = evals[evals["mixture"].map(lambda v: np.allclose(list(v), 1 / 3))].iloc[0]
    assert dict(uniform_eval["epochs"])["gamma"] == pytest.approx(200 / 120)
    for m in result.methods:  # each method's target is its mixture's fresh proxy
        vector = [m.mixture[d] for d in sorted(m.mixture)]
        same = evals[evals["mixture"].map(lambda v, x=vector: np.allclose(list(v), x, atol=1e-12))]
        assert m.eval_ok == 1 and m.target == float(same["target_loss"].iloc[0])
    assert "epochs per domain" in caplog.text and "capped at 120 (data-restricted)" in caplog.text

    # A rerun trains nothing; the CLI prints the same table.
    assert run_reweight(spark, cfg).trained == 0


def test_rerun_trains_only_missing_and_failed_runs_are_recorded(spark, annotated, tmp_path, capsys):
    params = {"doremi": [DOREMI, {**DOREMI, "steps": 0}], "uniform": [{}]}
    cfg = make_config(tmp_path, annotated, params=params, methods=["doremi", "uniform"])
    first = run_reweight(spark, cfg)
    assert first.trained == 3 and len(first.failed) == 1
    runs = load_runs(spark, str(tmp_path / "runs")).set_index("run_id")
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert "steps must be an int >= 1" in failed["error"] and failed["attempt"] == 0
    assert not (tmp_path / "out" / "mixture_doremi_1.yaml").exists()
    assert (tmp_path / "out" / "mixture_doremi.yaml").exists()

    # A second seed: only its runs train; the failed one is reported, not retried.
    cfg2 = make_config(tmp_path, annotated, params=params, methods=["doremi", "uniform"], seeds=[0, 1])
    second = run_reweight(spark, cfg2)
    assert second.trained == 3 and list(second.skipped_failed) == [failed.name]
    after = load_runs(spark, str(tmp_path / "runs")).set_index("run_id")
    for run_id in runs.index:  # the rows of the first call are untouched
        assert after.loc[run_id, "written_at"] == runs.loc[run_id, "written_at"]
    assert sorted(after["seed"].tolist()) == [0, 0, 0, 1, 1, 1]
    mixture = core.Mixture.from_file(tmp_path / "out" / "mixture_doremi.yaml")
    assert mixture.provenance["seeds"] == [0, 1]

    # --retry-failed trains it again (and records the new failure).
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(cfg2)))
    assert main(["reweight", "--config", str(config_file), "--method", "doremi", "--retry-failed"]) == 0
    out = capsys.readouterr().out
    # both seeds of the failing set are trained again (and fail again); nothing else is
    assert "FAILED (now)" in out and failed.name in out and "2 runs trained, 2 failed" in out, out


def test_doremi_rounds_recorded_and_round_two_recomputed_by_hand(spark, annotated, tmp_path):
    cfg = make_config(tmp_path, annotated, methods=["doremi"])
    result = run_reweight(spark, cfg)
    assert not result.failed and result.trained == 1
    run = load_runs(spark, str(tmp_path / "runs")).iloc[0]
    domains = list(run["domains"])
    rounds = np.array([list(a) for a in run["round_alphas"]])
    assert rounds.shape == (2, 3)  # a uniform reference: two rounds by default

    # Round 1 by hand (a uniform reference), then round 2 with its reference trained on round 1's ᾱ.
    train, _, _, _ = load_streams(spark, str(tmp_path / "streams"))
    common = {k: getattr(cfg.proxy.tinylm, k) for k in SHAPE_KEYS} | DOREMI
    common |= {"seed": 0, "vocab": build_vocab(cfg, train), "rounds": 1}
    first = DoReMi(**common).fit(train)
    np.testing.assert_allclose(rounds[0], first.alpha_trajectory_.mean(axis=0), rtol=0, atol=1e-12)
    abar = dict(zip(domains, first.alpha_trajectory_.mean(axis=0).tolist(), strict=True))
    second = DoReMi(**common | {"reference_weights": abar}).fit(train)
    np.testing.assert_allclose(rounds[1], second.alpha_trajectory_.mean(axis=0), rtol=0, atol=1e-12)

    # The mixture and the α history are the last round's; every round is in the summary and provenance.
    alpha = np.array([list(a) for a in run["alpha"]])
    np.testing.assert_allclose(alpha, second.alpha_trajectory_, rtol=0, atol=1e-12)
    mixture = core.Mixture.from_file(tmp_path / "out" / "mixture_doremi.yaml")
    np.testing.assert_allclose(mixture.as_vector(domains), rounds[1], atol=1e-12)
    (method,) = result.methods
    assert [list(r.values()) for r in method.rounds] == rounds.tolist()
    assert mixture.provenance["round_alphas"] == method.rounds
    summary = json.loads((tmp_path / "out" / "reweight_summary.json").read_text())
    assert summary["methods"][0]["rounds"] == method.rounds

    # Naming the default (rounds: 2) is the same run: nothing trains again.
    again = make_config(tmp_path, annotated, methods=["doremi"], params={"doremi": [DOREMI | {"rounds": 2}]})
    assert run_reweight(spark, again).trained == 0


def test_runs_table_creation_is_race_free(spark, tmp_path):
    path = str(tmp_path / "race")
    errors = []

    def create():
        try:
            ensure_table(spark, path)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert tables.version(spark, path) == 0
