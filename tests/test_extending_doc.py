"""Every python and yaml block of docs/extending.md runs against the real interfaces, end to end
where the doc says it does (annotate, select, proxy runs, fit-search): the doc cannot drift."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from pyspark.sql import functions as F
from sklearn.base import clone

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig, ProxyConfig, from_dict
from quadmix_spark.pipeline.fit_search import run_fit_search
from quadmix_spark.search import REGRESSORS, make_regressor

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
TEXT = DOC.read_text()
PY = re.findall(r"```python\n(.*?)```", TEXT, re.S)
YML = re.findall(r"```yaml\n(.*?)```", TEXT, re.S)
MODS = {}


def load(i: int) -> types.ModuleType:
    if i not in MODS:
        mod = types.ModuleType(f"extending_example_{i}")
        sys.modules[mod.__name__] = mod
        exec(compile(PY[i], f"<extending.md block {i}>", "exec"), mod.__dict__)
        MODS[i] = mod
    return MODS[i]


def test_blocks_count():
    assert len(PY) == 6 and len(YML) == 6


def test_annotator(spark, tmp_path):
    load(0)
    from quadmix_spark.pipeline import annotate as annotate_job

    docs = {"a": "abc 123 4567 and more letters", "b": "no digits here at all, none", "c": "12"}
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "p.jsonl").write_text("".join(json.dumps({"id": k, "text": t}) + "\n" for k, t in docs.items()))
    block = yaml.safe_load(YML[0])
    block["annotate"]["annotators"].append(
        {"kind": "tokens", "column": "n_tokens", "tokenizer": "whitespace"}
    )
    config = from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "wh"),
            **block,
            "annotate": {**block["annotate"], "input": {"path": str(folder)}},
        },
    )
    with pytest.raises(ConfigError, match=r"annotate.annotators\[0\].min_chars: must be at least 1"):
        bad = from_dict(
            PipelineConfig,
            {
                "warehouse": str(tmp_path / "wh2"),
                "annotate": {
                    "input": {"path": str(folder)},
                    "annotators": [{"kind": "digit_share", "column": "d", "min_chars": 0}],
                },
            },
        )
        annotate_job.run_annotate(spark, bad)
    summary = annotate_job.run_annotate(spark, config)
    assert summary.annotated == 3
    rows = {
        r["id"]: r["digit_share"]
        for r in spark.read.format("delta").load(config.table_path("annotated")).collect()
    }
    assert rows["a"] == pytest.approx(7 / len(docs["a"]), rel=1e-6)
    assert rows["b"] == 0.0
    assert rows["c"] == 0.0  # shorter than min_chars 20


def test_selector_and_source_through_select(spark, tmp_path):
    from test_select import DOMAINS, SCORERS, make_config, synthetic_pool, write_pool

    from quadmix_spark.mixing import sources
    from quadmix_spark.pipeline import inputs
    from quadmix_spark.pipeline.select import run_select
    from quadmix_spark.pipeline.stats import run_stats
    from quadmix_spark.spark import selectors

    load(1)
    load(2)
    try:
        # yaml blocks load and name what the registries know
        sel = yaml.safe_load(YML[1])
        src = yaml.safe_load(YML[2])
        cfg = from_dict(PipelineConfig, {"scorers": SCORERS, **sel})
        assert selectors.check_selector(cfg.select.selector, list(SCORERS)).spelled == "bottomk:q_b"
        names = [s.spelled for s in selectors.baselines(cfg.experiment.baselines, list(SCORERS))]
        assert names[-3:] == ["bottomk:q_a", "bottomk:q_b", "bottomk:q_c"]
        with pytest.raises(ConfigError, match="select.selector: 'q_z' is not one of the scorers"):
            selectors.check_selector("bottomk:q_z", list(SCORERS))
        cfg = from_dict(
            PipelineConfig,
            {"select": {**src["select"]}, "experiment": src["experiment"], "search": src["search"]},
        )
        for name in [cfg.select.mixture, *cfg.experiment.mixtures, cfg.search.prior]:
            sources.parse(name, "k")
        with pytest.raises(ConfigError, match=r"select.mixture: 'power:x': 'x' is not a number"):
            sources.parse("power:x", "select.mixture")
        mix = inputs.resolve_mixture(cfg, "power:0.5", "select.mixture", ["a", "b"], lambda: {"a": 1, "b": 4})
        assert dict(mix.shares) == pytest.approx({"a": 1 / 3, "b": 2 / 3})

        pool = synthetic_pool(n=3000, seed=5)
        write_pool(spark, make_config(tmp_path).table_path("annotated"), pool, partitions=2)
        run_stats(spark, make_config(tmp_path))
        budget = int(pool["n_tokens"].sum() * 0.3)
        config = make_config(
            tmp_path, selector="bottomk:q_b", token_budget=budget, mixture="power:0.5", seed=2
        )
        summary = run_select(spark, config)
        tokens = {d: float(pool["n_tokens"][pool["domain"] == d].sum()) for d in DOMAINS}
        roots = {d: t**0.5 for d, t in tokens.items()}
        for d in DOMAINS:
            target = budget * roots[d] / sum(roots.values())
            assert summary.tokens_target[d] == pytest.approx(target)
            assert abs(summary.tokens_after[d] - target) <= config.select.budget_tolerance * target
        table = spark.read.format("delta").load(config.table_path("selected"))
        chosen = {r["id"] for r in table.where(F.col("selection_id") == summary.selection_id).collect()}
        ids = np.asarray(pool["id"])
        qb = np.asarray(pool["q_b"])
        picked = np.isin(ids, list(chosen))
        assert picked.sum() > 0
        # q_b is lower_is_better: bottomk picks the highest q_b in each domain
        for d in DOMAINS:
            m = pool["domain"] == d
            assert qb[m & picked].min() >= np.quantile(qb[m & ~picked], 0.9) - 1e-9
    finally:
        del sources.SOURCES["power"]
        selectors.SELECTORS.unregister("bottomk")


def test_reweighter():
    from quadmix_spark.mixing.reweighters import REWEIGHTERS

    mod = load(3)
    try:
        cfg = from_dict(PipelineConfig, yaml.safe_load(YML[3]))
        assert cfg.reweight.methods == ["token_share", "uniform"]
        m = mod.TokenShare(vocab="full", seed=0).fit({"a": np.arange(10), "b": np.arange(30)})
        assert dict(m.mixture_.shares) == pytest.approx({"a": 0.25, "b": 0.75})
        assert m.result()["method"] == "token_share"
        with pytest.raises(ValueError, match="fewer than 1000"):
            mod.TokenShare(min_tokens=1000, vocab="full").fit({"a": np.arange(10), "b": np.arange(30)})
    finally:
        REWEIGHTERS.unregister("token_share")


def test_trainer_through_run_proxies(spark, tmp_path):
    from test_proxy import documents

    from quadmix_spark.proxy.runs import RunSpec, load_runs, run_proxies
    from quadmix_spark.proxy.trainers import TRAINERS

    load(4)
    try:
        cfg = from_dict(PipelineConfig, yaml.safe_load(YML[4]))
        assert cfg.proxy.trainer == "unigram"
        proxy = ProxyConfig(trainer="unigram", token_budget=500, n_checkpoints=3)
        eval_sets = {"e": np.arange(200, dtype=np.int64) + 1000}
        table = str(tmp_path / "runs")
        summary = run_proxies(
            spark, proxy, table, [RunSpec("run-a"), RunSpec("run-b")], documents(spark), eval_sets
        )
        assert summary.ok == 2, summary.failed
        runs = load_runs(spark, table).set_index("run_id")
        losses = runs.loc["run-a", "losses"]
        assert [x["step_tokens"] for x in losses] == [125, 250, 500]
        # eval ids (mostly) never seen in training: add-one loss ≈ ln(step + V)
        for x in losses:
            assert x["loss"] == pytest.approx(np.log(x["step_tokens"] + 100_277), rel=1e-2)
            assert x["loss"] <= np.log(x["step_tokens"] + 100_277) + 1e-9
    finally:
        TRAINERS.unregister("unigram")


def test_regressor_through_fit_search(tmp_path):
    from test_fit_search import make_config, true_loss, write_runs

    load(5)
    try:
        cfg = from_dict(PipelineConfig, yaml.safe_load(YML[5]))
        assert cfg.search.regressor == "quadratic" and cfg.search.regressor_params == {
            "quadratic": {"alpha": 0.01}
        }
        model = make_regressor("quadratic", alpha=0.5)
        assert clone(model).get_params()["alpha"] == 0.5
        x = np.random.default_rng(0).normal(size=(40, 3))
        y = 1 + x[:, 0] - 2 * x[:, 1] ** 2
        fitted = make_regressor("quadratic", alpha=1e-9).fit(x, y)
        assert fitted.predict(x) == pytest.approx(y, abs=1e-6)
        with pytest.raises(ValueError, match=r"alpha must be in \(0.0, inf\)"):
            make_regressor("quadratic", alpha=0.0).fit(x, y)
        mix = np.random.default_rng(1).dirichlet(np.ones(4), size=30)
        make_regressor("quadratic", mode="regmix").fit(mix, mix @ np.arange(4.0))
        runs = write_runs(tmp_path / "runs.parquet", n_runs=80)
        summary = run_fit_search(
            make_config(
                tmp_path,
                weights={"target": 1.0},
                regressor="quadratic",
                regressor_params={"quadratic": {"alpha": 0.01}},
                keep_candidate=True,  # θ* as the family found it, whatever the evidence rule says
            )
        )
        assert summary["regressor"] == "quadratic"
        assert [r["family"] for r in summary["cv"]["table"] if r["family"] != "constant (the mean)"] == [
            "quadratic"
        ]
        assert summary["metrics"]["spearman"] > 0.9
        theta_star = core.load_params(tmp_path / "theta_star.yaml")
        final = runs[(runs.step_tokens == 2_000_000) & (runs.eval_set == "target")]
        assert true_loss(theta_star.to_vector()[None, :])[0] < final["loss"].min()
    finally:
        REGRESSORS.unregister("quadratic")
