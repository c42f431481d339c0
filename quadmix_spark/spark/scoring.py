"""Spark adapter of the numpy core: σ, Eq.1 merge, Eq.2 rank and Eq.3 S for every document.

The element-wise math runs in scalar pandas UDFs that call :mod:`quadmix_spark.core` on Arrow
batches, so the Spark path computes exactly what the core computes; only the UDF's argument
columns travel to Python (the text stays in the JVM). The exact rank is a Spark window
(tests and small data); the scalable rank applies a per-domain mapping fitted on a sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.core import QuadMixParams, RankMapping


@dataclass(frozen=True)
class ScoringModel:
    """Everything the workers need to score a document: θ and σ's references (all small)."""

    params: QuadMixParams
    references: tuple[np.ndarray, ...]  # per scorer: oriented, sorted cut points
    higher_is_better: tuple[bool, ...]  # per scorer

    @classmethod
    def from_raw_quantiles(
        cls, params: QuadMixParams, raw_quantiles: dict[str, np.ndarray], directions: dict[str, str]
    ) -> ScoringModel:
        hib = tuple(directions[s] == "higher_is_better" for s in params.scorers)
        refs = tuple(
            core.build_reference(raw_quantiles[s], h, name=s)
            for s, h in zip(params.scorers, hib, strict=True)
        )
        return cls(params, refs, hib)

    def sigma(self, scores: np.ndarray) -> np.ndarray:
        """(n, N) raw scores → (n, N) σ in [0, 1], smaller = better."""
        return core.percentile_matrix(scores, self.references, self.higher_is_better, self.params.scorers)

    def merged(self, scores: np.ndarray, domain_idx: np.ndarray) -> np.ndarray:
        """(n, N) raw scores, (n,) domain index → (n,) q̄ (Eq.1)."""
        return core.merge_scores(self.sigma(scores), domain_idx, self.params.alpha)

    def expected_copies(self, rank: np.ndarray, domain_idx: np.ndarray) -> np.ndarray:
        """(n,) r̄, (n,) domain index → (n,) S (Eq.3)."""
        p = self.params
        return core.sampling_function(
            rank, p.lam[domain_idx], p.omega[domain_idx], p.eta[domain_idx], p.eps[domain_idx]
        )


def hash_uniform_column(seed: int, copy: int, key: str = "doc_key") -> Column:
    """``core.hash_uniform(key, seed, copy)`` as a column (a pandas UDF: the same bits as the core)."""

    @F.pandas_udf("double")
    def draw(doc_key: pd.Series) -> pd.Series:
        return pd.Series(core.hash_uniform(doc_key.to_numpy(np.int64), seed, copy))

    return draw(key)


def rank_sample(
    base: DataFrame, docs_per_domain: Sequence[int], sample_size: int, seed: int, stream: int
) -> DataFrame:
    """About ``sample_size`` documents of every domain, chosen by a hash of ``doc_key``.

    ``base`` needs ``doc_key`` and ``domain_idx``; ``docs_per_domain`` is in domain-index order.
    The choice depends on (doc_key, seed, stream) only, so it is the same whatever the
    partitioning; this is the sample behind the scalable rank mapping.
    """
    rates = [min(1.0, sample_size / max(n, 1)) for n in docs_per_domain]
    rate = F.create_map(*[x for i, r in enumerate(rates) for x in (F.lit(i), F.lit(r))])
    return base.where(hash_uniform_column(seed, stream) < rate[F.col("domain_idx")])


def domain_index_column(domains: Sequence[str], domain_col: str) -> Column:
    """Domain label → index in θ's domain order (null for a label θ does not name)."""
    mapping = F.create_map(*[x for i, d in enumerate(domains) for x in (F.lit(d), F.lit(i))])
    return mapping[F.col(domain_col)]


def with_merged(df: DataFrame, model: ScoringModel) -> DataFrame:
    """Add ``merged`` (q̄); ``df`` needs ``domain_idx`` (int) and the scorer columns.

    The rank comes after: exactly from all documents of a domain (:func:`with_exact_rank`), or
    from a fitted mapping together with ``S`` and ``u`` (:func:`with_sampling_inputs`).
    """

    @F.pandas_udf("double")
    def merged_udf(domain_idx: pd.Series, *scores: pd.Series) -> pd.Series:
        values = np.column_stack([s.to_numpy(np.float64) for s in scores])
        return pd.Series(model.merged(values, domain_idx.to_numpy(np.int64)))

    return df.withColumn("merged", merged_udf("domain_idx", *model.params.scorers))


def with_exact_rank(df: DataFrame, token_col: str) -> DataFrame:
    """Eq.2 exactly: token-weighted, inclusive (≤), within the domain.

    A RANGE frame over ``merged`` includes every tie, which is what makes the rank inclusive.
    Each domain is one window partition: use for tests and small data only.
    """
    by_domain = Window.partitionBy("domain_idx")
    upto = by_domain.orderBy("merged").rangeBetween(Window.unboundedPreceding, Window.currentRow)
    tokens = F.col(token_col).cast("long")
    return df.withColumn(
        "rank", F.sum(tokens).over(upto).cast("double") / F.sum(tokens).over(by_domain).cast("double")
    )


def with_expected_copies(df: DataFrame, model: ScoringModel, seed: int) -> DataFrame:
    """Add ``S`` (Eq.3) and the document's uniform ``u`` = hash_uniform(doc_key, seed, copy 0)."""

    @F.pandas_udf("S double, u double")
    def s_udf(rank: pd.Series, domain_idx: pd.Series, doc_key: pd.Series) -> pd.DataFrame:
        d = domain_idx.to_numpy(np.int64)
        return pd.DataFrame(
            {
                "S": model.expected_copies(rank.to_numpy(np.float64), d),
                "u": core.hash_uniform(doc_key.to_numpy(np.int64), seed, 0),
            }
        )

    return df.withColumn("_s", s_udf("rank", "domain_idx", "doc_key")).select("*", "_s.*").drop("_s")


def with_sampling_inputs(df: DataFrame, model: ScoringModel, mapping: RankMapping, seed: int) -> DataFrame:
    """Add ``merged`` (q̄), ``rank`` (r̄ from the fitted ``mapping``), ``S`` and ``u`` in one Python pass.

    The values of :func:`with_merged` and :func:`with_expected_copies`. A scalar pandas UDF queues
    every row it sees, text included, on the JVM until its batch returns from Python: one pass
    instead of two halves that cost on a wide table.
    """
    scorers = list(model.params.scorers)

    @F.pandas_udf("merged double, rank double, S double, u double")
    def sampled_udf(domain_idx: pd.Series, doc_key: pd.Series, *scores: pd.Series) -> pd.DataFrame:
        d = domain_idx.to_numpy(np.int64)
        merged = model.merged(np.column_stack([s.to_numpy(np.float64) for s in scores]), d)
        rank = core.apply_rank_mapping(mapping, merged, d)
        return pd.DataFrame(
            {
                "merged": merged,
                "rank": rank,
                "S": model.expected_copies(rank, d),
                "u": core.hash_uniform(doc_key.to_numpy(np.int64), seed, 0),
            }
        )

    out = df.withColumn("_q", sampled_udf("domain_idx", "doc_key", *scorers))
    return out.select("*", "_q.*").drop("_q")


def copies_column(expected: Column, u: Column) -> Column:
    """floor(e) + 1[u < frac(e)]: the same IEEE operations as ``core.expected_copies_to_copies``."""
    base = F.floor(expected)
    return (base + F.when(u < expected - base, 1).otherwise(0)).cast("long")


def with_oriented(df: DataFrame, model: ScoringModel) -> DataFrame:
    """Add ``o__<scorer>`` (raw score oriented so smaller = better) and ``sigma__<scorer>``."""

    @F.pandas_udf(", ".join(f"sigma__{s} double" for s in model.params.scorers))
    def sigma_udf(*scores: pd.Series) -> pd.DataFrame:
        sig = model.sigma(np.column_stack([s.to_numpy(np.float64) for s in scores]))
        return pd.DataFrame({f"sigma__{s}": sig[:, i] for i, s in enumerate(model.params.scorers)})

    oriented = {
        f"o__{s}": (-F.col(s) if hib else F.col(s)).cast("double")
        for s, hib in zip(model.params.scorers, model.higher_is_better, strict=True)
    }
    out = df.withColumns(oriented).withColumn("_sig", sigma_udf(*model.params.scorers))
    return out.select("*", "_sig.*").drop("_sig")
