"""A reweighting method added from this module alone (one class, one registration) runs through the
real reweight job: config validation and ``--method`` accept it, its runs train in Spark tasks on
Python workers that cannot import this module, and it lands in ``reweight_runs`` and a mixture file.
Both runs tables record a failing run the same way while the others finish."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from test_proxy import documents
from test_reweight_job import annotated, make_config  # noqa: F401 (a fixture)

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import ProxyConfig, load_config, to_dict
from quadmix_spark.mixing.reweighters import REWEIGHTERS
from quadmix_spark.mixing.reweighting import OnlineReweighter
from quadmix_spark.pipeline.reweight import run_reweight
from quadmix_spark.pipeline.reweight_runs import load_runs
from quadmix_spark.pipeline.streams import load_streams
from quadmix_spark.proxy.runs import RunSpec, run_proxies
from quadmix_spark.proxy.runs import load_runs as load_proxy_runs


@REWEIGHTERS.register("stream_length")
class StreamLength(OnlineReweighter):
    """α ∝ each domain's training stream length (tokens), nothing trained.

    ``min_tokens``: a domain with a shorter stream fails the fit (ValueError).
    """

    method = "stream_length"

    def __init__(self, min_tokens: int = 0, **shared) -> None:
        super().__init__(**shared)
        self.min_tokens = min_tokens

    def fit(self, train_streams, val_streams=None) -> StreamLength:
        train, _ = self._prepare(train_streams, val_streams)
        sizes = np.array([train[d].size for d in self.domains_], dtype=np.float64)
        if sizes.min() < self.min_tokens:
            raise ValueError(f"a domain has {int(sizes.min())} tokens, fewer than {self.min_tokens}")
        self.alpha_trajectory_ = (sizes / sizes.sum())[None, :]
        self.history_ = []
        self.epochs_ = dict.fromkeys(self.domains_, 0.0)
        self.n_train_tokens_ = 0
        self.mixture_ = self._final_mixture(self.alpha_trajectory_, {})
        return self


def test_a_reweighter_registered_here_runs_through_the_reweight_job(spark, annotated, tmp_path, capsys):  # noqa: F811
    config = make_config(tmp_path, annotated, methods=["stream_length"], params={})
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(config)))
    assert load_config(config_file).reweight.methods == ["stream_length"]  # validation asks the registry
    # --method's choices are the registry's; the run is a Spark task on a worker without this module
    assert main(["reweight", "--config", str(config_file), "--method", "stream_length"]) == 0
    assert "1 runs trained, 0 failed" in capsys.readouterr().out

    train, _, _, streams_key = load_streams(spark, str(tmp_path / "streams"))
    total = sum(s.size for s in train.values())
    expected = {d: s.size / total for d, s in train.items()}
    runs = load_runs(spark, str(tmp_path / "runs"))
    assert len(runs) == 1
    run = runs.iloc[0]
    assert (run["kind"], run["method"], run["status"], run["error"]) == (
        "reweight",
        "stream_length",
        "ok",
        None,
    )
    assert run["streams_key"] == streams_key and run["final"] == "average" and len(run["delta"]) == 0
    assert dict(zip(run["domains"], run["mixture"], strict=True)) == pytest.approx(expected, abs=1e-12)
    assert expected["gamma"] < expected["alpha"]  # gamma is capped at 120 tokens: not a uniform mixture

    mixture = core.Mixture.from_file(tmp_path / "out" / "mixture_stream_length.yaml")
    assert dict(mixture.shares) == pytest.approx(expected, abs=1e-12)
    assert mixture.provenance["method"] == "stream_length" and mixture.provenance["runs"] == [run["run_id"]]


def test_both_runs_tables_record_a_failing_run_and_finish_the_others(spark, annotated, tmp_path):  # noqa: F811
    # reweight_runs: the second hyperparameter set fails inside its task
    params = {"stream_length": [{}, {"min_tokens": 10**9}]}
    config = make_config(tmp_path, annotated, methods=["stream_length"], params=params)
    result = run_reweight(spark, config)
    assert result.trained == 2 and len(result.failed) == 1
    reweight = load_runs(spark, str(tmp_path / "runs")).set_index("run_id")

    # proxy_runs: run-b's documents all have 0 copies, so its training stream is empty
    docs = documents(spark).selectExpr(
        "run_id", "doc_key", "IF(run_id = 'run-b', 0L, copies) AS copies", "text"
    )
    proxy_path = str(tmp_path / "proxy_runs")
    eval_sets = {"e": np.arange(200, dtype=np.int64) + 1000}
    summary = run_proxies(
        spark,
        ProxyConfig(token_budget=300),
        proxy_path,
        [RunSpec("run-a"), RunSpec("run-b")],
        docs,
        eval_sets,
    )
    assert summary.ok == 1 and list(summary.failed) == ["run-b"]
    proxy = load_proxy_runs(spark, proxy_path).set_index("run_id")

    for table, message in ((reweight, "fewer than 1000000000"), (proxy, "the training stream is empty")):
        assert sorted(table["status"]) == ["failed", "ok"]
        ok, failed = table[table["status"] == "ok"].iloc[0], table[table["status"] == "failed"].iloc[0]
        assert ok["error"] is None and failed["error"].startswith("ValueError: ")
        assert message in failed["error"].splitlines()[0] and "Traceback" in failed["error"]
        assert (
            failed["attempt"] == ok["attempt"] == 0
            and failed["seconds"] >= 0
            and failed["written_at"] is not None
        )
    assert proxy.loc["run-a", "n_train_tokens"] == 300 and proxy.loc["run-b", "n_train_tokens"] == 0
    assert proxy.loc["run-b", "n_docs"] == 40  # the task saw its documents: the failure is the trainer's
