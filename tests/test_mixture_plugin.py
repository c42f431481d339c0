"""A new mixture source, added from this module alone, composed by ``select`` end to end.

The source gives each domain a share proportional to the square root of its token count (a
flattened natural mixture, a common up-sampling rule for small domains). It is one class and
one registration; no file of the package changes, and ``select.mixture: sqrt_tokens`` runs the
real select job with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_select import DOMAINS, make_config, synthetic_pool, write_pool

from quadmix_spark.config import ConfigError
from quadmix_spark.core import Mixture
from quadmix_spark.mixing.sources import SOURCES, MixtureSource, SourceContext, known, register
from quadmix_spark.pipeline import inputs
from quadmix_spark.pipeline.select import run_select
from quadmix_spark.pipeline.stats import run_stats


class SqrtTokens(MixtureSource):
    """Shares ∝ √(the pool's tokens of each domain)."""

    name = pattern = "sqrt_tokens"
    needs_tokens = True

    def mixture(self, ctx: SourceContext) -> Mixture:
        roots = {d: math.sqrt(t) for d, t in ctx.pool_tokens(self.name).items()}
        total = sum(roots.values())
        return Mixture.from_shares({d: r / total for d, r in roots.items()}, {"method": self.name})


@pytest.fixture
def sqrt_source():
    register(SqrtTokens)
    yield SqrtTokens
    del SOURCES[SqrtTokens.name]  # the registry as the other tests know it


@pytest.fixture(scope="module")
def pool_root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin pool")
    pool = synthetic_pool(n=3_000, seed=5)
    write_pool(spark, make_config(root).table_path("annotated"), pool, partitions=2)
    run_stats(spark, make_config(root))
    return root, pool


@pytest.mark.parametrize("selector", ["quadmix", "uniform"])
def test_select_composes_a_source_added_by_one_class_and_one_registration(
    spark, pool_root, sqrt_source, selector
):
    root, pool = pool_root
    budget = int(pool["n_tokens"].sum() * 0.3)
    config = make_config(root, selector=selector, token_budget=budget, mixture="sqrt_tokens", seed=2)
    summary = run_select(spark, config)

    tokens = {d: int(pool["n_tokens"][pool["domain"] == d].sum()) for d in DOMAINS}
    roots = {d: math.sqrt(t) for d, t in tokens.items()}
    shares = {d: r / sum(roots.values()) for d, r in roots.items()}
    tolerance = config.select.budget_tolerance
    for d in DOMAINS:
        assert summary.tokens_target[d] == pytest.approx(budget * shares[d])
        assert abs(summary.tokens_after[d] - budget * shares[d]) <= tolerance * budget * shares[d]
    # The source changed the selection: science (≈ 10% of the pool) gets well over its natural share.
    natural = tokens["science"] / sum(tokens.values())
    assert summary.tokens_after["science"] / sum(summary.tokens_after.values()) > 1.4 * natural
    manifest = json.loads((Path(summary.out_dir) / "manifest.json").read_text())
    assert manifest["mixture"]["source"] == "sqrt_tokens"
    assert manifest["mixture"]["provenance"] == {"method": "sqrt_tokens"}
    assert manifest["mixture"]["shares"] == pytest.approx(shares)


def test_the_registration_is_what_makes_the_name_a_source(tmp_path):
    config = make_config(tmp_path, token_budget=1000, mixture="sqrt_tokens")
    with pytest.raises(ConfigError, match="select.mixture: neither .* nor a mixture file: sqrt_tokens"):
        inputs.resolve_mixture(config, "sqrt_tokens", "select.mixture", list(DOMAINS), lambda: {})
    register(SqrtTokens)
    try:
        mixture = inputs.resolve_mixture(
            config, "sqrt_tokens", "select.mixture", ["a", "b"], lambda: {"a": 1, "b": 4}
        )
        assert dict(mixture.shares) == pytest.approx({"a": 1 / 3, "b": 2 / 3})
        assert "sqrt_tokens" in known()
    finally:
        del SOURCES[SqrtTokens.name]
