"""Targets: the evaluation sets of the proxy runs and the target loss they combine into.

Two sources (``targets`` in the config):

- per-domain held-out sets, ``heldout:<domain>``: documents of the annotated table chosen by a
  hash of ``doc_key`` (``heldout_fraction``), optionally filtered (``heldout_filter``, e.g. the
  clean documents only), at most ``heldout_max_tokens`` per domain. The held-out slice is removed
  from the pool the proxies select from, so no run trains on its own evaluation text;
- user-provided target sets (instruction data, benchmark training splits), named as configured.

The target of a run is the weighted mean of its final losses over the sets (``weights``; by
default every set weighs the same).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig, TargetsConfig
from quadmix_spark.spark.scoring import hash_uniform_column

MAX_PAGE = 16_384  # target-set texts on the driver at once


def heldout_column(seed: int, fraction: float):
    """True for the documents of the held-out slice."""
    return hash_uniform_column(seed, core.HOLDOUT_STREAM) < F.lit(float(fraction))


def split_pool(annotated: DataFrame, cfg: TargetsConfig, seed: int) -> tuple[DataFrame, DataFrame]:
    """(pool, held-out) rows of the annotated table; the held-out slice is filtered as configured."""
    if cfg.heldout_fraction <= 0:
        return annotated, annotated.limit(0)
    flagged = annotated.withColumn("_heldout", heldout_column(seed, cfg.heldout_fraction))
    pool = flagged.where(~F.col("_heldout")).drop("_heldout")
    heldout = flagged.where(F.col("_heldout")).drop("_heldout")
    if cfg.heldout_filter:
        heldout = heldout.where(F.expr(cfg.heldout_filter))
    return pool, heldout


def check_heldout_filter(annotated: DataFrame, cfg: TargetsConfig, table: str) -> None:
    """Fail, naming the key, when ``heldout_filter`` does not apply to ``table`` (no job runs).

    The columns the predicate names are read from Spark's parse of it and looked up in the table's
    schema first, so a missing column fails without an analysis error in Spark's log; anything else
    (an unknown function, a type error) is caught when Spark analyses the filter.
    """
    expression = cfg.heldout_filter
    if not expression:
        return
    where = f"targets.heldout_filter: {expression!r}"
    try:
        parsed = annotated.sparkSession._jsparkSession.sessionState().sqlParser().parseExpression(expression)
    except Exception as err:  # ParseException, through py4j
        raise ConfigError(f"{where} is not a SQL predicate: {str(err).strip().splitlines()[0]}") from None
    refs = parsed.references().toList()
    columns = {c.lower() for c in annotated.columns}
    missing = []
    for i in range(refs.size()):
        name, first = refs.apply(i).name(), refs.apply(i).nameParts().head()
        if name.lower() not in columns and first.lower() not in columns:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"{where} names column(s) {missing} that {table} does not have "
            f"(its columns: {', '.join(annotated.columns)})"
        )
    try:
        annotated.where(F.expr(expression)).schema  # noqa: B018 (analysed, never run)
    except AnalysisException as err:
        raise ConfigError(f"{where} does not apply to {table}: {str(err).strip().splitlines()[0]}") from None


def _encode(texts: Sequence[str], max_tokens: int, tokenizer: str = "cl100k_base") -> np.ndarray:
    from udfs.models import end_of_text, load_tokenizer

    eot = end_of_text(tokenizer)
    ids = load_tokenizer(tokenizer).encode_ordinary_batch(list(texts), num_threads=1)
    out: list[int] = []
    for doc in ids:
        if len(out) >= max_tokens:
            break
        out += [*doc, eot]
    return np.asarray(out[:max_tokens], dtype=np.int64)


def heldout_sets(heldout: DataFrame, config: PipelineConfig, seed: int) -> dict[str, np.ndarray]:
    """``heldout:<domain>`` → token ids, the documents in hash order up to the per-domain cap."""
    cfg, dom, tok = config.targets, config.domain_column, config.token_column
    order = Window.partitionBy(dom).orderBy("_u", "doc_key")
    rows = (
        heldout.withColumn("_u", hash_uniform_column(seed, core.HOLDOUT_STREAM + 1))
        .withColumn("_before", F.sum(tok).over(order) - F.col(tok))
        .where(F.col("_before") < cfg.heldout_max_tokens)
        .select(dom, "text", "_u", "doc_key")
        .toPandas()
        .sort_values([dom, "_u", "doc_key"])
    )
    return {
        f"heldout:{d}": _encode(group["text"].tolist(), cfg.heldout_max_tokens)
        for d, group in rows.groupby(dom, sort=True)
    }


def first_tokens(
    texts: DataFrame, max_tokens: int, tokenizer: str = "cl100k_base", first_page: int = 256
) -> tuple[np.ndarray, int]:
    """Token ids of the documents of ``texts`` (a ``text`` column) in a hash-of-text order, up to
    ``max_tokens``; and how many distinct texts reached the driver.

    The documents come in pages ordered by (xxhash64(text), text), each page a top-k in Spark
    (twice the size of the one before, at most ``MAX_PAGE`` texts), and stop as soon as the tokens
    reach ``max_tokens``: the driver holds about what it keeps, whatever the size of the set.
    Identical texts are one row with their count, so a page boundary never splits them.
    """
    from udfs.models import end_of_text, load_tokenizer

    eot, encoder = end_of_text(tokenizer), load_tokenizer(tokenizer)
    distinct = texts.groupBy(F.xxhash64("text").alias("_h"), "text").count()
    out: list[int] = []
    collected, last, page = 0, None, first_page
    while len(out) < max_tokens:
        rows = distinct
        if last is not None:
            h, t = last
            rows = distinct.where((F.col("_h") > h) | ((F.col("_h") == h) & (F.col("text") > t)))
        got = rows.orderBy("_h", "text").limit(page).collect()
        collected += len(got)
        docs = [r["text"] for r in got for _ in range(int(r["count"]))]
        for ids in encoder.encode_ordinary_batch(docs, num_threads=1):
            if len(out) >= max_tokens:
                break
            out += [*ids, eot]
        if len(got) < page:
            break
        last, page = (got[-1]["_h"], got[-1]["text"]), min(2 * page, MAX_PAGE)
    return np.asarray(out[:max_tokens], dtype=np.int64), collected


def target_sets(spark: SparkSession, cfg: TargetsConfig) -> dict[str, np.ndarray]:
    """The user-provided target sets → token ids, documents in a hash-of-text order."""
    out = {}
    for name, t in cfg.target_sets.items():
        key = f"targets.target_sets.{name}"
        if not t.path:
            raise ConfigError(f"{key}.path is required")
        reader = spark.read.format("json" if t.format == "jsonl" else t.format)
        try:
            df = reader.load(t.path)
        except Exception as err:  # a missing path or unreadable file: name the key
            raise ConfigError(f"{key}.path: cannot read {t.path}: {err}") from err
        if t.text_column not in df.columns:
            raise ConfigError(f"{key}.text_column: {t.text_column!r} is not a column of {t.path}")
        texts = df.where(F.col(t.text_column).isNotNull()).select(F.col(t.text_column).alias("text"))
        out[name], _ = first_tokens(texts, t.max_tokens)
        if out[name].size == 0:
            raise ConfigError(f"{key}: {t.path} has no text")
    return out


def combine(final_losses: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """The target: weighted mean of the final losses per eval set (plain mean without weights)."""
    if not weights:
        return float(np.mean(list(final_losses.values())))
    missing = sorted(set(weights) - set(final_losses))
    if missing:
        raise ConfigError(f"targets.weights: no loss for eval set(s) {missing}")
    total = sum(weights.values())
    return float(sum(w * final_losses[name] for name, w in weights.items()) / total)


def final_losses(losses: Sequence[Mapping]) -> dict[str, float]:
    """Eval set → loss at the last checkpoint of one run's loss records."""
    frame = pd.DataFrame(list(losses))
    last = frame[frame["step_tokens"] == frame["step_tokens"].max()]
    return dict(zip(last["eval_set"], last["loss"].astype(float), strict=True))
