"""The reweight job's two mixtures per method (the time-averaged and the last α) and
``reweight.final``, which picks the one the ``tandem`` / ``doremi`` sources resolve to."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from test_reweight_job import DOREMI, TANDEM, annotated, make_config  # noqa: E402, F401 (a fixture)

from quadmix_spark import core  # noqa: E402
from quadmix_spark.config import ConfigError, validate  # noqa: E402
from quadmix_spark.pipeline import inputs  # noqa: E402
from quadmix_spark.pipeline.reweight import run_reweight  # noqa: E402
from quadmix_spark.pipeline.reweight_runs import load_runs  # noqa: E402


def _history_alphas(runs, method: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(domains, mean over seeds of the last α, of the mean α), read from the recorded history JSON."""
    rows = runs[(runs["method"] == method) & (runs["kind"] == "reweight")]
    last, mean = [], []
    for history in rows["history"]:
        alphas = [record["alpha"] for record in json.loads(history)]
        last.append(alphas[-1])
        mean.append([sum(a[j] for a in alphas) / len(alphas) for j in range(len(alphas[0]))])
    return list(rows["domains"].iloc[0]), np.mean(last, axis=0), np.mean(mean, axis=0)


def test_both_mixtures_are_written_and_final_picks_the_methods_one(spark, annotated, tmp_path):  # noqa: F811
    cfg = make_config(
        tmp_path,
        annotated,
        methods=["tandem", "doremi"],
        params={"tandem": [TANDEM], "doremi": [DOREMI]},
        seeds=[0, 1],
        final={"tandem": "last"},
    )
    result = run_reweight(spark, cfg)
    assert not result.failed and result.trained == 4
    runs = load_runs(spark, str(tmp_path / "runs"))
    out = tmp_path / "out"
    for method, chosen in (("tandem", "last"), ("doremi", "avg")):
        domains, last, mean = _history_alphas(runs, method)
        assert not np.allclose(last, mean, atol=1e-6)  # the two choices differ on these runs
        files = {f: core.Mixture.from_file(out / f"mixture_{method}_{f}.yaml") for f in ("avg", "last")}
        np.testing.assert_allclose(files["last"].as_vector(domains), last, rtol=0, atol=1e-12)
        np.testing.assert_allclose(files["avg"].as_vector(domains), mean, rtol=0, atol=1e-12)
        assert [files[f].provenance["final"] for f in ("avg", "last")] == ["avg", "last"]
        assert files["last"].provenance["seeds"] == [0, 1]
        # the method's mixture (what the source and experiment.mixtures read) is the one final names
        mine = core.Mixture.from_file(out / f"mixture_{method}.yaml")
        assert dict(mine.shares) == dict(files[chosen].shares) and mine.provenance["final"] == chosen
        resolved = inputs.resolve_mixture(cfg, method, "select.mixture", domains)
        np.testing.assert_allclose(
            resolved.as_vector(domains), last if chosen == "last" else mean, atol=1e-12
        )
        res = next(m for m in result.methods if m.method == method)
        assert res.final == chosen and res.mixture == pytest.approx(dict(files[chosen].shares), abs=1e-12)

    # final changed without rerunning the job: the source refuses the file holding the other α
    stale = dataclasses.replace(cfg, reweight=dataclasses.replace(cfg.reweight, final={}))
    with pytest.raises(
        ConfigError, match=r"reweight.final.tandem is avg, but .*mixture_tandem.yaml holds the last"
    ):
        inputs.resolve_mixture(stale, "tandem", "select.mixture", domains)
    # the rerun rewrites it and trains nothing
    assert run_reweight(spark, stale).trained == 0
    _, _, tandem_mean = _history_alphas(runs, "tandem")
    resolved = inputs.resolve_mixture(stale, "tandem", "select.mixture", domains)
    np.testing.assert_allclose(resolved.as_vector(domains), tandem_mean, atol=1e-12)


def test_final_is_checked_before_any_run(tmp_path):
    cfg = make_config(tmp_path, "unused", final={"tandem": "last"})
    validate(cfg.reweight, "reweight")
    with pytest.raises(ConfigError, match=r"reweight.final.tandem: 'median' is not one of 'avg', 'last'"):
        make_config(tmp_path, "unused", final={"tandem": "median"})
    bad = make_config(tmp_path, "unused", final={"nope": "last"})
    with pytest.raises(ConfigError, match=r"reweight.final.nope: not a method"):
        validate(bad.reweight, "reweight")
    # the classes' own final would make the run's mixture disagree with the files: refused
    both = make_config(tmp_path, "unused", params={"tandem": [TANDEM, {**TANDEM, "final": "last"}]})
    with pytest.raises(
        ConfigError, match=r"reweight.params.tandem\[1\].final: .* reweight.final.tandem: avg"
    ):
        validate(both.reweight, "reweight")
