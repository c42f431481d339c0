import dataclasses
import hashlib
import json
import re

import numpy as np
import pytest
import yaml

from quadmix_spark.core.params import (
    ParamsError,
    QuadMixParams,
    check_against,
    load_params,
    param_names,
    params_hash,
    save_params,
    uniform,
)

DOMAINS = ("news", "science")
SCORERS = ("fw", "dclm", "askllm")


def make(**overrides):
    kwargs = dict(
        domains=DOMAINS,
        scorers=SCORERS,
        alpha=np.array([[0.2, 0.3, 0.5], [0.1 + 0.2, 1 / 3, 1 - (0.1 + 0.2) - 1 / 3]]),
        lam=np.array([10.0, 1000.0]),
        omega=np.array([0.05, 1e-5]),
        eta=np.array([1.0, 0.25]),
        eps=np.array([1e-3, 0.0]),
    )
    kwargs.update(overrides)
    return QuadMixParams(**kwargs)


def valid_dict():
    return make().to_dict()


# -- vector layout -------------------------------------------------------------------------


def test_vector_layout_is_alpha_then_beta_per_domain():
    p = make()
    a = p.alpha
    expected = [*a[0], 10.0, 0.05, 1.0, 1e-3, *a[1], 1000.0, 1e-5, 0.25, 0.0]
    np.testing.assert_array_equal(p.to_vector(), expected)
    names = param_names(DOMAINS, SCORERS)
    assert len(names) == (3 + 4) * 2
    assert names[:7] == [
        "alpha[news,fw]", "alpha[news,dclm]", "alpha[news,askllm]",
        "lambda[news]", "omega[news]", "eta[news]", "epsilon[news]",
    ]  # fmt: skip
    assert names[7] == "alpha[science,fw]"


def test_vector_round_trip_is_exact():
    p = make()
    q = QuadMixParams.from_vector(p.to_vector(), DOMAINS, SCORERS)
    assert q == p and hash(q) == hash(p)
    np.testing.assert_array_equal(q.to_vector(), p.to_vector())
    with pytest.raises(ParamsError, match=r"expected \(14,\) = \(N\+4\)·M for N=3 scorers and M=2"):
        QuadMixParams.from_vector(p.to_vector()[:-1], DOMAINS, SCORERS)


def test_params_are_immutable_copies():
    alpha = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    p = make(alpha=alpha)
    alpha[0, 0] = 0.9
    assert p.alpha[0, 0] == 0.5
    with pytest.raises(ValueError):
        p.alpha[0, 0] = 0.1
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.omega = np.zeros(2)
    assert p.beta.shape == (2, 4)
    np.testing.assert_array_equal(p.beta[1], [1000.0, 1e-5, 0.25, 0.0])


def test_domain_index_maps_labels():
    p = make()
    np.testing.assert_array_equal(p.domain_index(["science", "news", "science"]), [1, 0, 1])
    with pytest.raises(ParamsError, match="'sports'"):
        p.domain_index(["news", "sports"])


# -- files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_round_trip_is_exact(tmp_path, suffix):
    p = make()
    path = tmp_path / f"theta{suffix}"
    save_params(p, path)
    q = load_params(path)
    assert q == p
    np.testing.assert_array_equal(q.to_vector(), p.to_vector())
    raw = json.loads(path.read_text()) if suffix == ".json" else yaml.safe_load(path.read_text())
    assert raw["version"] == 1 and raw["scorers"] == list(SCORERS)
    assert raw["domains"]["news"]["alpha"]["dclm"] == 0.3
    assert raw["domains"]["science"]["lambda"] == 1000.0
    assert raw["domains"]["science"]["omega"] == 1e-5


def test_yaml_scientific_notation_without_dot_is_a_number(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nscorers: [a, b]\ndomains:\n  news:\n"
        "    alpha: {a: 0.5, b: 0.5}\n    lambda: 1e3\n    omega: 0.1\n    eta: 1\n"
        "    epsilon: 1e-3\n"
    )
    p = load_params(path)
    assert p.lam[0] == 1000.0 and p.eps[0] == 1e-3 and p.eta[0] == 1.0


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ParamsError, match=r"unknown params file suffix '\.txt'"):
        save_params(make(), tmp_path / "p.txt")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match=r"missing\.json: cannot read"):
        load_params(tmp_path / "missing.json")


# -- validation: messages name the entry ---------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"alpha": np.array([[0.2, 0.3, 0.43], [0.3, 0.3, 0.4]])},
            r"alpha\[domain=news\] sums to 0\.93, must sum to 1 \(±1e-06\)",
        ),
        (
            {"alpha": np.array([[0.2, 0.3, 0.5], [-0.1, 0.6, 0.5]])},
            r"alpha\[domain=science, scorer=fw\] = -0\.1 is negative",
        ),
        ({"omega": np.array([-0.1, 0.1])}, r"omega\[domain=news\] = -0\.1 is negative"),
        ({"lam": np.array([1.0, np.nan])}, r"lambda\[domain=science\] = nan is not finite"),
        # ω is a share of a domain's tokens and ε a keep rate: neither can exceed 1.
        ({"omega": np.array([5.0, 0.1])}, r"omega\[domain=news\] = 5\.0 is above 1 \(ω is the share"),
        ({"eps": np.array([0.0, 1.5])}, r"epsilon\[domain=science\] = 1\.5 is above 1 \(ε is the keep rate"),
        ({"eps": np.array([0.0, -1e-4])}, r"epsilon\[domain=science\] = -0\.0001 is negative"),
        ({"eta": np.array([1.0])}, r"eta has shape \(1,\), expected \(2,\)"),
        ({"alpha": np.full((2, 2), 0.5)}, r"alpha has shape \(2, 2\), expected \(2, 3\)"),
        ({"alpha": [["a", "b", "c"]] * 2}, "alpha must be numeric"),
        ({"omega": np.array([True, False])}, "omega must be numeric"),
        ({"domains": ("news", "news")}, "duplicate domain name 'news'"),
        ({"scorers": ("fw", "dclm", "fw")}, "duplicate scorer name 'fw'"),
        ({"domains": "news"}, "domains must be a list of names"),
        ({"scorers": ("fw", "", "x")}, "non-empty string"),
    ],
)
def test_validation_messages(overrides, message):
    with pytest.raises(ParamsError, match=message):
        make(**overrides)


def _mutate(path, value):
    data = valid_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("extra",), 1, r"unknown top-level key 'extra'"),
        (("version",), 2, r"version must be 1, got 2"),
        (("version",), True, r"version must be 1, got True"),
        (("scorers",), KeyError, r"missing top-level key 'scorers'"),
        (("domains", "news", "omega"), KeyError, r"domains\.news: missing 'omega'"),
        (("domains", "news", "omgea"), 0.1, r"unknown key domains\.news\.omgea"),
        (("domains", "news", "eta"), "1.0", r"domains\.news\.eta must be a number, got str"),
        (("domains", "news", "lambda"), None, r"domains\.news\.lambda must be a number"),
        (("domains", "science", "epsilon"), False, r"domains\.science\.epsilon must be a number"),
        (("domains", "news", "alpha", "ppl"), 0.0, r"domains\.news\.alpha: unknown scorer 'ppl'"),
        (("domains", "news", "alpha", "dclm"), KeyError, r"alpha: missing scorer 'dclm'"),
        (("domains", "news", "alpha", "dclm"), 0.4, r"alpha\[domain=news\] sums to 1\.1"),
        (("domains", "news", "omega"), -0.5, r"omega\[domain=news\] = -0\.5 is negative"),
        (("domains",), {}, "domains must be a non-empty mapping"),
    ],
)  # fmt: skip
def test_from_dict_messages_name_the_key(path, value, message):
    with pytest.raises(ParamsError, match=message):
        QuadMixParams.from_dict(_mutate(path, value), source="theta.yaml")
    with pytest.raises(ParamsError, match=r"^theta\.yaml: "):
        QuadMixParams.from_dict(_mutate(path, value), source="theta.yaml")


def test_from_dict_accepts_ints_and_keeps_domain_order():
    data = valid_dict()
    data["domains"]["news"]["eta"] = 1
    data["domains"] = dict(reversed(list(data["domains"].items())))
    p = QuadMixParams.from_dict(data)
    assert p.domains == ("science", "news") and p.eta[1] == 1.0


# -- hash, check_against, uniform ------------------------------------------------------------


def test_params_hash_is_canonical_sha256():
    p = make()
    h = params_hash(p)
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert h == "eb6745027ca0e05c"  # pinned: a change of the canonical form changes every θ's hash
    data = p.to_dict()
    data["scorers"] = sorted(data["scorers"])
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert h == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    # listing order of names does not matter; any value does
    order = [1, 0]
    reordered = QuadMixParams(
        DOMAINS[::-1], SCORERS[::-1], p.alpha[order][:, ::-1],
        p.lam[order], p.omega[order], p.eta[order], p.eps[order],
    )  # fmt: skip
    assert params_hash(reordered) == h
    assert params_hash(make(eps=np.array([1e-3, 1e-12]))) != h
    assert params_hash(make(eps=np.array([1e-3, -0.0]))) == h


def test_check_against_names_problems():
    p = make()
    check_against(p, ["news", "science"], ["fw", "dclm", "askllm", "extra_scorer"])
    with pytest.raises(ParamsError, match=r"unknown scorer\(s\) \['askllm'\]"):
        check_against(p, DOMAINS, ["fw", "dclm"])
    with pytest.raises(ParamsError, match=r"domain\(s\) \['sports'\] of the data are missing"):
        check_against(p, [*DOMAINS, "sports"], SCORERS)
    with pytest.raises(ParamsError, match=r"unknown domain\(s\) \['science'\]"):
        check_against(p, ["news"], SCORERS)
    check_against(p, ["news"], SCORERS, allow_unused_domains=True)


def test_uniform_defaults():
    p = uniform(["a", "b", "c"], ["s1", "s2", "s3"])
    np.testing.assert_array_equal(p.alpha, np.full((3, 3), 1 / 3))
    np.testing.assert_array_equal(p.beta, np.tile([10.0, 0.5, 1.0, 1e-3], (3, 1)))
    q = uniform(["a"], ["s1", "s2"], omega=0.1, eps=0.0)
    assert q.omega[0] == 0.1 and q.eps[0] == 0.0 and q.alpha[0, 1] == 0.5
    with pytest.raises(ParamsError, match=r"omega\[domain=a\] = -1\.0 is negative"):
        uniform(["a"], ["s1"], omega=-1.0)
