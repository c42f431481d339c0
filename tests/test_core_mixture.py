"""Mixtures: the file format, validation, and per-domain targets against what a pool can yield."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from quadmix_spark.core import SUM_TOLERANCE, Mixture, MixtureError, domain_targets


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_through_a_file(tmp_path, suffix):
    provenance = {"method": "regmix", "fit": {"spearman": 0.91}, "created_at": "2026-11-27"}
    mixture = Mixture.from_shares({"prose": 0.6, "code": 0.4}, provenance)
    path = mixture.to_file(tmp_path / f"sub/mix{suffix}")
    back = Mixture.from_file(path)
    assert back == mixture
    assert back.domains == ["code", "prose"]  # sorted by name
    assert back.provenance["fit"] == {"spearman": 0.91}
    assert back.key() == mixture.key()


def test_rounded_shares_are_renormalised_and_the_original_sum_recorded():
    mixture = Mixture.from_shares({"a": 0.333, "b": 0.333, "c": 0.333})  # RegMix's three decimals
    assert mixture.shares["a"] == pytest.approx(1 / 3, abs=1e-15)
    assert math.fsum(mixture.shares.values()) == pytest.approx(1.0, abs=1e-15)
    assert mixture.provenance["renormalised_from"] == pytest.approx(0.999)
    assert "renormalised_from" not in Mixture.from_shares({"a": 0.25, "b": 0.75}).provenance


def test_a_sum_beyond_the_tolerance_is_rejected_with_the_sum_and_domains():
    with pytest.raises(MixtureError, match=r"shares sum to 1\.2, not 1 .*largest: b=0\.7, a=0\.5"):
        Mixture.from_shares({"a": 0.5, "b": 0.7})
    Mixture.from_shares({"a": 0.5, "b": 0.5 + SUM_TOLERANCE * 0.9})  # inside: accepted


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "lots"])
def test_invalid_shares_name_the_domain(bad):
    with pytest.raises(MixtureError, match=r"invalid: \{'b': "):
        Mixture.from_shares({"a": 1.0, "b": bad})


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"shares": {"a": 1.0}}))
    with pytest.raises(MixtureError, match=r"m\.json: a mixture file needs a top-level 'mixture'"):
        Mixture.from_file(path)
    path.write_text(json.dumps({"mixture": {"a": 1.0}, "extra": 1}))
    with pytest.raises(MixtureError, match="unknown top-level keys"):
        Mixture.from_file(path)
    with pytest.raises(MixtureError, match="unknown mixture file suffix '.txt'"):
        Mixture.from_file(tmp_path / "m.txt")
    with pytest.raises(MixtureError, match="cannot read mixture file"):
        Mixture.from_file(tmp_path / "missing.yaml")


def test_as_vector_follows_the_order_and_names_missing_domains_on_either_side():
    mixture = Mixture.from_shares({"a": 0.2, "b": 0.8})
    np.testing.assert_array_equal(mixture.as_vector(["b", "a"]), [0.8, 0.2])
    with pytest.raises(MixtureError, match=r"the mixture lacks \['c'\]"):
        mixture.as_vector(["a", "b", "c"])
    with pytest.raises(MixtureError, match=r"names \['b'\], which the pool does not have"):
        mixture.as_vector(["a"])


def test_natural_and_uniform():
    natural = Mixture.natural({"a": 100, "b": 300})
    assert dict(natural.shares) == {"a": 0.25, "b": 0.75}
    assert natural.provenance["method"] == "natural"
    assert dict(Mixture.uniform(["x", "y", "z", "w"]).shares) == dict.fromkeys("wxyz", 0.25)


def test_targets_are_budget_times_share_when_every_domain_can_give_them():
    targets, capped = domain_targets([0.5, 0.3, 0.2], 1000, [600, 300, 10_000])
    np.testing.assert_allclose(targets, [500, 300, 200])
    assert capped == []


def test_an_infeasible_target_names_the_domain_its_target_and_capacity():
    with pytest.raises(MixtureError, match=r"news: target 300 tokens, at most 250 selectable"):
        domain_targets([0.7, 0.3], 1000, [5000, 250], domains=["web", "news"])


def test_redistribute_caps_short_domains_and_spreads_the_rest_by_share():
    # b is short (100 < 300); the 200 left over go to a and c as 5:2; then c is short too.
    names = ["a", "b", "c"]
    targets, capped = domain_targets([0.5, 0.3, 0.2], 1000, [10_000, 100, 250], "redistribute", names)
    assert capped == ["b", "c"]
    np.testing.assert_allclose(targets, [650, 100, 250])
    assert targets.sum() == pytest.approx(1000)
    with pytest.raises(MixtureError, match="exceeds all domains together"):
        domain_targets([0.5, 0.5], 1000, [400, 400], "redistribute")
