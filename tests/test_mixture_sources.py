"""The mixture sources' resolver and the selectors' registry, on the driver (no Spark session).

Every place a mixture is named (select.mixture, search.prior, experiment.mixtures,
predict-mixture --mixture) resolves it through ``mixing.sources.resolve``; every place a
selector is named asks ``spark.selectors``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_fit_search import regmix_config, write_mixture_runs

from quadmix_spark import core
from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict, load_config
from quadmix_spark.mixing import sources
from quadmix_spark.pipeline import inputs, refresh
from quadmix_spark.pipeline.experiment import _selectors
from quadmix_spark.pipeline.fit_search import regmix_prior, run_fit_search
from quadmix_spark.pipeline.mixture_methods import check_mixtures
from quadmix_spark.pipeline.select import check_config
from quadmix_spark.spark import selectors

DOMAINS = ("arts", "code", "news")
TOKENS = {"arts": 600, "code": 300, "news": 100, "other": 5}
SHARES = {"arts": 0.2, "code": 0.3, "news": 0.5}


def config_at(tmp_path, **sections) -> PipelineConfig:
    """Every job output a source reads under ``tmp_path``."""
    data = {
        "entropy": {"output_dir": str(tmp_path / "entropy")},
        "bimix": {"output_mixture": str(tmp_path / "bimix" / "mixture_bimix.yaml")},
        "search": {"output_mixture": str(tmp_path / "search" / "mixture_star.yaml")},
        "reweight": {"output_dir": str(tmp_path / "reweight")},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return from_dict(PipelineConfig, data)


def write(path, shares=SHARES, method="test") -> str:
    return str(core.Mixture.from_shares(shares, {"method": method}).to_file(path))


def resolve(config, name, domains=DOMAINS, tokens=lambda: TOKENS):
    return inputs.resolve_mixture(config, name, "select.mixture", domains, tokens, stats_version=3)


def test_natural_and_uniform_are_computed_over_the_domains(tmp_path):
    config = config_at(tmp_path)
    natural = resolve(config, "natural")
    assert dict(natural.shares) == pytest.approx({"arts": 0.6, "code": 0.3, "news": 0.1})
    assert natural.provenance == {"method": "natural", "stats_version": 3}
    assert dict(resolve(config, "uniform").shares) == pytest.approx(dict.fromkeys(DOMAINS, 1 / 3))
    with pytest.raises(ConfigError, match="select.mixture: natural needs the pool's token counts"):
        resolve(config, "natural", tokens=None)
    with pytest.raises(
        ConfigError, match=r"select.mixture: natural, but the stats .* lack domains \['law'\]"
    ):
        resolve(config, "natural", domains=("arts", "law"))
    with pytest.raises(ConfigError, match="select.mixture: uniform needs the domains"):
        resolve(config, "uniform", domains=None)


def test_a_file_by_path_and_its_errors_name_the_key(tmp_path):
    config = config_at(tmp_path)
    path = write(tmp_path / "mine.yaml")
    assert dict(resolve(config, path).shares) == pytest.approx(SHARES)
    assert sources.parse(path, "select.mixture").label == "mine"
    every = "natural, uniform, entropy:<measure>, bimix, regmix, tandem, doremi"
    with pytest.raises(ConfigError, match=f"select.mixture: neither {every} nor a mixture file: .*nope.yaml"):
        resolve(config, str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"select.mixture \(.*mine.yaml\): the mixture lacks \['law'\]"):
        resolve(config, path, domains=("arts", "code", "news", "law"))


@pytest.mark.parametrize(
    ("name", "where", "key", "job"),
    [
        ("entropy:je", "entropy/mixture_entropy_je.yaml", "entropy.output_dir", "quadmix entropy"),
        ("bimix", "bimix/mixture_bimix.yaml", "bimix.output_mixture", "quadmix bimix"),
        (
            "regmix",
            "search/mixture_star.yaml",
            "search.output_mixture",
            r"quadmix fit-search \(search.mode: regmix\)",
        ),
        ("tandem", "reweight/mixture_tandem.yaml", "reweight.output_dir", "quadmix reweight --method tandem"),
        ("doremi", "reweight/mixture_doremi.yaml", "reweight.output_dir", "quadmix reweight --method doremi"),
    ],
)
def test_job_outputs_are_read_where_their_job_writes_them(tmp_path, name, where, key, job):
    config = config_at(tmp_path)
    with pytest.raises(
        ConfigError, match=rf"select.mixture: {name} reads .*\({key}\), which .* run {job} first"
    ):
        resolve(config, name)
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    write(tmp_path / where, method=name)
    mixture = resolve(config, name)
    assert dict(mixture.shares) == pytest.approx(SHARES) and mixture.provenance["method"] == name
    assert inputs.mixture_file(config, name, "select.mixture") == str(tmp_path / where)


def test_names_are_checked_before_anything_is_read(tmp_path):
    with pytest.raises(
        ConfigError, match=r"select.mixture: 'entropy:heat': 'heat' is not a measure \(se, je"
    ):
        sources.parse("entropy:heat", "select.mixture")
    with pytest.raises(ConfigError, match="search.prior: 'entropy' is not entropy:<measure>"):
        sources.parse("entropy", "search.prior")
    with pytest.raises(ConfigError, match="'bimix:x' is not bimix"):
        sources.parse("bimix:x", "select.mixture")
    # A URI's scheme is no source: it names a file.
    assert sources.parse("s3a://bucket/m.yaml", "select.mixture").file(None) == "s3a://bucket/m.yaml"
    assert inputs.mixture_needs(config_at(tmp_path), ["natural", "uniform"], "--mixture") == ([], True)


def test_the_experiment_and_refresh_check_their_mixtures_before_any_job(tmp_path):
    config = config_at(tmp_path, experiment={"mixtures": ["natural", "tandem", "entropy:se"]})
    # tandem is made on the experiment's own pool; entropy:se must be there already
    with pytest.raises(
        ConfigError, match=r"experiment.mixtures: entropy:se reads .* run quadmix entropy first"
    ):
        check_mixtures(config)
    (tmp_path / "entropy").mkdir()
    write(tmp_path / "entropy" / "mixture_entropy_se.yaml")
    check_mixtures(config)
    config.select.mixture, config.select.token_budget = "bimix", 1000
    with pytest.raises(ConfigError, match="select.mixture: bimix reads .* run quadmix bimix first"):
        refresh.check_config(config, "all")


def test_search_prior_takes_any_source(tmp_path):
    config = config_at(tmp_path, search={"mode": "regmix", "prior": "bimix"})
    (tmp_path / "bimix").mkdir()
    write(tmp_path / "bimix" / "mixture_bimix.yaml")
    domains, prior = regmix_prior(config)  # without search.domains: the prior file's domains
    assert domains == list(DOMAINS) and dict(prior.shares) == pytest.approx(SHARES)
    config.search.domains, config.search.prior = ["news", "code", "arts"], "uniform"
    domains, prior = regmix_prior(config)
    assert domains == ["news", "code", "arts"] and prior.provenance["method"] == "uniform"
    config.search.prior = "natural"
    with pytest.raises(ConfigError, match="search.prior: natural needs the pool's token counts"):
        regmix_prior(config)


def test_predict_mixture_accepts_every_source(tmp_path, capsys):
    write_mixture_runs(tmp_path / "runs.parquet", n_runs=60)
    config = regmix_config(tmp_path, n_candidates=2_000)
    summary = run_fit_search(config)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"search": config.search.__dict__}))
    capsys.readouterr()
    args = ["predict-mixture", "--config", str(config_file), "--mixture", "uniform", "--mixture", "regmix"]
    assert main(args) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [name for _, name in lines] == ["uniform", "regmix"]  # uniform: no "mixture file not found"
    assert float(lines[1][0]) == pytest.approx(summary["theta_star_predicted_loss"], abs=1e-4)
    assert np.isfinite(float(lines[0][0])) and float(lines[0][0]) != float(lines[1][0])


def test_selectors_are_found_by_name_and_checked_against_the_scorers(tmp_path):
    scorers = ["q_a", "q_b"]
    assert list(selectors.SELECTORS) == ["quadmix", "uniform", "topk", "union_topk"]
    topk = selectors.check_selector("topk:q_b", scorers)
    assert (topk.spelled, topk.label, topk.uses_theta, topk.unbounded) == (
        "topk:q_b",
        "top-k q_b",
        False,
        False,
    )
    assert selectors.check_selector("quadmix", scorers).uses_theta
    assert selectors.check_selector("uniform", scorers).unbounded
    for bad in ("nope", "topk", "uniform:q_a", "topk:"):
        with pytest.raises(
            ConfigError,
            match=rf"select.selector: '{bad}' is not quadmix, uniform, topk:<scorer> or union_topk",
        ):
            selectors.check_selector(bad, scorers)
    with pytest.raises(ConfigError, match="select.selector: 'nope' is not one of the scorers"):
        selectors.check_selector("topk:nope", scorers)
    found = selectors.baselines(["uniform", "topk", "union_topk", "topk:q_a"], scorers)
    assert [s.spelled for s in found] == ["uniform", "topk:q_a", "topk:q_b", "union_topk", "topk:q_a"]
    with pytest.raises(
        ConfigError, match="experiment.baselines: 'quadmix' is not uniform, topk or union_topk"
    ):
        selectors.baselines(["quadmix"], scorers)


def test_the_select_checks_ask_the_registries(tmp_path):
    """What load_config checked before the registries (same messages), now the select job's checks."""
    path = tmp_path / "c.yaml"
    path.write_text("{}")
    with pytest.raises(ConfigError, match="select.selector: 'nope' is not one of the scorers"):
        check_config(load_config(path, ["select.selector=topk:nope"]))
    with pytest.raises(ConfigError, match="select.token_budget is required for selector uniform"):
        check_config(load_config(path, ["select.selector=uniform"]))
    with pytest.raises(ConfigError, match="select.mixture: 'entropy:x': 'x' is not a measure"):
        check_config(load_config(path, ["select.mixture=entropy:x", "select.token_budget=10"]))
    scorers = "scorers={q_a: higher_is_better, q_b: lower_is_better}"
    config = load_config(path, [scorers, "experiment.baselines=[topk, uniform]"])
    assert _selectors(config) == [
        ("θ*", "quadmix"),
        ("top-k q_a", "topk:q_a"),
        ("top-k q_b", "topk:q_b"),
        ("uniform", "uniform"),
    ]
