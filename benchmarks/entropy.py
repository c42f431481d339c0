"""Benchmark: the entropy job's Spark aggregation (SE, JE, CE) against single-process numpy.

What it measures
----------------
A synthetic corpus (pseudo-words drawn from a Zipf law, so token counts are heavy-tailed like
text) in a few domains is written as a Delta table. Then, on the same documents:

- **spark**: ``pipeline.entropy.token_histograms`` with every document sampled (rate 1), i.e. the
  job's path: text → tokenizer inside ``mapInPandas`` → per-batch numpy counts → Spark sums per
  code → count histograms → entropies on the driver;
- **tokenizer**: the same tokenizer over the same texts in one process (the part of the Spark path
  that is not aggregation);
- **numpy**: single-process counting of the already tokenized ids: ``np.bincount`` for unigrams and
  left tokens, ``np.unique`` for pair codes (``x << 32 | x'`` has too many bins for a bincount),
  then the same entropy formulas.

Printed: tokens/s of each and the ratios spark / numpy and spark / (tokenizer + numpy), and a
check that Spark's entropies equal numpy's bit for bit. On a cluster the Spark figure scales with
the executors; the numpy baseline is one core.

How to run
----------
    PYTHONPATH=. .venv/bin/python benchmarks/entropy.py
    PYTHONPATH=. .venv/bin/python benchmarks/entropy.py --docs 20000 --master 'local[4]'
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_texts(n_docs: int, n_domains: int, vocab: int, seed: int) -> list[tuple[str, str, str]]:
    """(id, domain, text) rows; each domain draws its pseudo-words from its own Zipf exponent."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "po", "da", "gu", "fe", "xi", "bo"]
    words = ["".join(rng.choice(syllables, int(rng.integers(1, 4)))) for _ in range(vocab)]
    rows = []
    for i in range(n_docs):
        d = i % n_domains
        ranks = np.minimum(rng.zipf(1.2 + 0.2 * d, int(rng.integers(50, 400))), vocab) - 1
        rows.append((f"doc{i:07d}", f"domain{d}", " ".join(words[r] for r in ranks)))
    return rows


def numpy_entropies(ids: list[list[int]]) -> dict[str, float]:
    """SE/JE/CE of one domain's documents with bincount (unigrams, left tokens) and unique (pairs)."""
    from quadmix_spark.mixing.entropy import PAIR_SHIFT, count_histogram, entropies_from_histograms

    flat = np.concatenate([np.asarray(x, np.int64) for x in ids])
    lengths = np.array([len(x) for x in ids])
    linked = np.ones(len(flat) - 1, bool)
    starts = np.cumsum(lengths) - lengths
    linked[starts[(starts >= 1) & (starts < len(flat))] - 1] = False
    pairs = ((flat[:-1] << PAIR_SHIFT) | flat[1:])[linked]
    uni = np.bincount(flat)
    left = np.bincount(pairs >> PAIR_SHIFT)
    _, pair_counts = np.unique(pairs, return_counts=True)
    return entropies_from_histograms(
        {"unigram": count_histogram(uni), "pair": count_histogram(pair_counts), "left": count_histogram(left)}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=6000, help="documents (default: %(default)s)")
    parser.add_argument("--domains", type=int, default=4, help="domains (default: %(default)s)")
    parser.add_argument("--vocab", type=int, default=20000, help="pseudo-words (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=8, help="input partitions (default: %(default)s)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="Spark timings, best kept (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import pandas as pd
    from pyspark.sql import functions as F

    from quadmix_spark.mixing.entropy import entropies_from_histograms
    from quadmix_spark.pipeline.entropy import token_histograms
    from quadmix_spark.spark.session import build_session
    from udfs.models import load_tokenizer

    rows = synthetic_texts(args.docs, args.domains, args.vocab, args.seed)
    enc = load_tokenizer("cl100k_base")
    started = time.perf_counter()
    ids = enc.encode_ordinary_batch([r[2] for r in rows], num_threads=1)
    t_tokenize = time.perf_counter() - started
    n_tokens = sum(map(len, ids))

    by_domain: dict[str, list] = {}
    for r, x in zip(rows, ids, strict=True):
        by_domain.setdefault(r[1], []).append(x)
    started = time.perf_counter()
    expected = {d: numpy_entropies(x) for d, x in sorted(by_domain.items())}
    t_numpy = time.perf_counter() - started

    tmp = Path(tempfile.mkdtemp(prefix="entropy-bench-"))
    spark = build_session(
        app_name="entropy-benchmark",
        master=args.master,
        warehouse=tmp / "warehouse",
        conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(args.partitions)},
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        pdf = pd.DataFrame(rows, columns=["id", "domain", "text"])
        df = spark.createDataFrame(pdf).withColumn("doc_key", F.xxhash64("id"))
        df.repartition(args.partitions).write.format("delta").save(str(tmp / "table"))
        base = spark.read.format("delta").load(str(tmp / "table"))
        rates = {d: 1.0 for d in by_domain}
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            hist = token_histograms(base, rates, 0, "cl100k_base")
            got = {
                d: entropies_from_histograms({k: hist[(d, k)] for k in ("unigram", "pair", "left")})
                for d in sorted(by_domain)
            }
            times.append(time.perf_counter() - started)
        t_spark = min(times)
        rows_back = sum(len(c) for c, _ in hist.values())
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    same = got == expected
    print(
        f"corpus: {args.docs} documents, {args.domains} domains, {n_tokens:,} tokens (cl100k_base); "
        f"Spark {args.master}, {args.partitions} partitions"
    )

    def line(name: str, seconds: float) -> str:
        return f"{name:<56} {seconds:7.2f} s  {n_tokens / seconds:>12,.0f} tokens/s"

    print(line("spark aggregation (tokenize + count + sum + histograms):", t_spark))
    print(line("tokenizer alone, one process:", t_tokenize))
    print(line("numpy bincount/unique of the ids, one process:", t_numpy))
    print(
        f"ratio spark / numpy counting: {t_numpy / t_spark:.3f}×;  "
        f"spark / (tokenizer + numpy): {(t_tokenize + t_numpy) / t_spark:.3f}×"
    )
    print(
        f"count-histogram rows collected to the driver: {rows_back:,} ({rows_back / n_tokens:.4f} per token)"
    )
    print(f"entropies equal bit for bit: {same}")
    for d in sorted(expected):
        print(f"  {d}: " + ", ".join(f"{m.upper()} {v:.4f}" for m, v in got[d].items()))
    if not same or not all(math.isfinite(v) for e in got.values() for v in e.values()):
        raise SystemExit("Spark and numpy entropies differ")


if __name__ == "__main__":
    main()
