"""Rank error of the scalable rank mode against the exact rank, over every document of a pool.

What it computes
----------------
For the annotated table, stats and θ of a pipeline config (default ``conf/demo.yaml``), with the
select job's own Spark machinery:

  * exact r̄: ``scoring.with_merged`` then ``scoring.with_exact_rank`` (a window per domain);
  * scalable r̄: ``scoring.with_sampling_inputs`` with the ``RankMapping`` that ``select._fit_mapping`` fits
    on its hash-chosen sample of ``rank_sample_size`` documents per domain (same seed, same
    sampling stream as ``quadmix select``),

and prints, for each ``rank_sample_size`` in ``--sizes``, the maximum, 99th percentile and mean of
|r̄_scalable − r̄_exact| over all documents, the domain with the largest error, and the mean
|ΔS| of the expected copies (Eq.3) that error causes. A domain with no more documents than the
sample size is sampled whole, so its error is 0 by construction: on the demo corpus (≤ ~3k
documents per domain) 10000 per domain is the exact rank, which is why the smaller sizes matter.

How to run
----------
    # the demo (builds it in --workdir with `quadmix demo` when its annotated table is missing,
    # a few minutes):
    .venv/bin/python benchmarks/rank_error.py --workdir /tmp/quadmix-rank-demo --build
    # the synthetic 1M pool of benchmarks/select_throughput.py (run that first):
    .venv/bin/python benchmarks/rank_error.py --config /tmp/quadmix-select-bench/pipeline.yaml \
        --workdir /tmp/quadmix-select-bench --sizes 10000

Relative paths of the config (warehouse, params) resolve against ``--workdir``; a params file not
found there is looked up in the repository (``conf/params/demo.yaml``). Stats are the latest run
of the stats table (``--build`` or ``quadmix stats`` makes one); the annotated table is read at
the version those stats describe, as select does.

How to read it
--------------
r̄ ∈ (0, 1] is a token-weighted share of the domain, so an error of 0.01 moves a document by 1 %
of its domain's tokens. ``sample docs`` is the size of the fitted sample over all domains; ``min
n_eff`` is the smallest per-domain effective sample size (Σt)² / Σt² of that sample: token
weights with a heavy tail make it several times smaller than the document count, and it is n_eff
that sets the error. A token-weighted fraction estimated from n_eff documents has a standard
error ≤ 1/(2√n_eff); the maximum over a domain's whole curve is ~1.36/√n_eff (DKW, 95 %), so
expect max and mean to fall roughly as 1/√size until the sample is the whole domain (error 0).
``knots`` is the mapping's size (distinct sample scores): it travels to every task.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyspark import StorageLevel  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from quadmix_spark import core  # noqa: E402
from quadmix_spark.config import PipelineConfig, load_config  # noqa: E402
from quadmix_spark.pipeline.select import _fit_mapping  # noqa: E402
from quadmix_spark.spark import tables  # noqa: E402
from quadmix_spark.spark.scoring import (  # noqa: E402
    ScoringModel,
    domain_index_column,
    hash_uniform_column,
    with_exact_rank,
    with_expected_copies,
    with_merged,
    with_sampling_inputs,
)
from quadmix_spark.spark.stats_table import Stats, load_stats  # noqa: E402

DEFAULT_SIZES = (100, 300, 1000, 3000, 10000)


def build_demo(config_path: Path, workdir: Path, params: str) -> None:
    """Run the whole demo pipeline (`quadmix demo`) in ``workdir``, with θ from ``params``."""
    quadmix = Path(sys.executable).with_name("quadmix")
    print(f"building the demo in {workdir} (quadmix demo, a few minutes) ...", flush=True)
    command = [str(quadmix), "demo", "--config", str(config_path), "--set", f"select.params={params}"]
    subprocess.run(command, cwd=workdir, check=True)


def resolve_params(config: PipelineConfig, override: str | None) -> None:
    """Point ``select.params`` at an existing file: the override, the path as given, or the repo's."""
    if override:
        config.select.params = override
    elif not Path(config.select.params).is_file() and (REPO / config.select.params).is_file():
        config.select.params = str(REPO / config.select.params)


def exact_frame(spark: SparkSession, config: PipelineConfig, stats: Stats) -> tuple[DataFrame, ScoringModel]:
    """The pool with ``domain_idx``, exact ``rank_exact`` and ``S_exact`` (persisted, narrow)."""
    params = core.load_params(config.select.params)
    core.check_against(params, stats.domains, list(config.scorers))
    source = config.table_path(config.select.input_table)
    annotated = spark.read.format("delta").option("versionAsOf", stats.annotated_version).load(source)
    model = ScoringModel.from_raw_quantiles(
        params, {s: stats.reference(s) for s in params.scorers}, config.scorers
    )
    tok = config.token_column
    base = annotated.select(
        "doc_key",
        tok,
        *params.scorers,
        domain_index_column(params.domains, config.domain_column).alias("domain_idx"),
    )
    exact = with_expected_copies(with_exact_rank(with_merged(base, model), tok), model, config.select.seed)
    exact = exact.select(
        "doc_key",
        tok,
        "domain_idx",
        *params.scorers,
        F.col("rank").alias("rank_exact"),
        F.col("S").alias("S_exact"),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    exact.count()
    return exact, model


def sample_sizes(
    exact: DataFrame, model: ScoringModel, stats: Stats, seed: int, size: int, tok: str
) -> dict[int, tuple[int, float]]:
    """Per domain: documents in ``_fit_mapping``'s sample (same rule) and their effective number
    (Σt)² / Σt², which governs the error of a token-weighted fraction better than the count does."""
    rates = [min(1.0, size / max(stats.docs.get(d, 0), 1)) for d in model.params.domains]
    rate = F.create_map(*[x for i, r in enumerate(rates) for x in (F.lit(i), F.lit(r))])
    t = F.col(tok).cast("double")
    rows = (
        exact.where(hash_uniform_column(seed, core.SAMPLE_STREAM) < rate[F.col("domain_idx")])
        .groupBy("domain_idx")
        .agg(F.count(F.lit(1)).alias("n"), F.sum(t).alias("t"), F.sum(t * t).alias("t2"))
        .collect()
    )
    return {r["domain_idx"]: (r["n"], r["t"] ** 2 / r["t2"]) for r in rows}


def rank_error(
    exact: DataFrame, model: ScoringModel, stats: Stats, config: PipelineConfig, size: int
) -> dict:
    """Fit the mapping as select does with ``rank_sample_size = size`` and compare with the exact rank."""
    cfg = dataclasses.replace(config.select, rank_sample_size=size)
    mapping = _fit_mapping(exact, model, stats, cfg, config.token_column)
    sample = sample_sizes(exact, model, stats, cfg.seed, size, config.token_column)
    scored = with_sampling_inputs(exact, model, mapping, cfg.seed)
    err = F.abs(F.col("rank") - F.col("rank_exact"))
    per_domain = (
        scored.groupBy("domain_idx")
        .agg(
            F.max(err).alias("max"),
            F.sum(err).alias("sum"),
            F.count(F.lit(1)).alias("n"),
            F.sum(F.abs(F.col("S") - F.col("S_exact"))).alias("sum_dS"),
        )
        .collect()
    )
    worst = max(per_domain, key=lambda r: r["max"])
    n = sum(r["n"] for r in per_domain)
    p99 = scored.select(F.percentile_approx(err, 0.99, 100_000)).first()[0]
    domains = model.params.domains
    return {
        "size": size,
        "sample_docs": sum(n for n, _ in sample.values()),
        "n_eff": min(n_eff for _, n_eff in sample.values()),
        "knots": sum(k.size for k in mapping.knots),
        "max": worst["max"],
        "worst_domain": f"{domains[worst['domain_idx']]} ({stats.docs[domains[worst['domain_idx']]]} docs)",
        "p99": p99,
        "mean": sum(r["sum"] for r in per_domain) / n,
        "mean_dS": sum(r["sum_dS"] for r in per_domain) / n,
        "docs": n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "conf" / "demo.yaml")
    ap.add_argument(
        "--workdir", type=Path, default=Path.cwd(), help="where the pipeline was run (default: .)"
    )
    ap.add_argument("--build", action="store_true", help="run `quadmix demo` there if the table is missing")
    ap.add_argument("--params", help="θ file (default: select.params of the config)")
    ap.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="rank_sample_size values, comma-separated"
    )
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    config_path = args.config.resolve()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)
    config = load_config(config_path)
    resolve_params(config, args.params)

    from quadmix_spark.spark.session import build_session

    spark = build_session(
        app_name="quadmix-rank-error",
        master=f"local[{args.cores}]",
        warehouse=config.warehouse,
        conf={
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": str(config.spark.shuffle_partitions),
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    stats_path = config.table_path(config.select.stats_table)
    if not tables.exists(spark, stats_path):
        if not args.build:
            raise SystemExit(
                f"no stats table at {args.workdir / stats_path}: run the pipeline or pass --build"
            )
        spark.stop()
        build_demo(config_path, args.workdir, str(Path(config.select.params).resolve()))
        return main(argv)

    t0 = time.perf_counter()
    stats = load_stats(spark, stats_path)
    exact, model = exact_frame(spark, config, stats)
    results = [rank_error(exact, model, stats, config, size) for size in sizes]
    seconds = time.perf_counter() - t0
    spark.stop()

    docs = sorted(stats.docs.values())
    print(
        f"rank error, scalable vs exact: {results[0]['docs']} docs in {len(docs)} domains "
        f"({docs[0]}..{docs[-1]} docs per domain), θ {config.select.params}, seed {config.select.seed}"
    )
    print(f"  {'':>37} {'|r_scalable - r_exact|':^26} {'|S_sc - S_ex|':>13}")
    print(
        f"  {'sample/domain':>13} {'sample docs':>11} {'min n_eff':>9} {'knots':>7} "
        f"{'max':>8} {'p99':>8} {'mean':>8} {'mean':>13}  worst domain"
    )
    for r in results:
        print(
            f"  {r['size']:>13} {r['sample_docs']:>11} {r['n_eff']:>9.0f} {r['knots']:>7} "
            f"{r['max']:>8.5f} {r['p99']:>8.5f} {r['mean']:>8.5f} {r['mean_dS']:>13.5f}  "
            f"{r['worst_domain'] if r['max'] > 0 else '-'}"
        )
    print(f"  ({seconds:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
