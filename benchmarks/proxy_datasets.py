"""K proxy datasets in one scan against one select of the same pool, in the same run.

What it measures
----------------
On the synthetic annotated pool of ``benchmarks/select_throughput.py`` (``--docs`` documents,
default 1,000,000; generated once and cached), in one SparkSession with a warm JVM:

  * ``select``: ``quadmix_spark.pipeline.select.run_select`` with one θ, scalable rank, no budget, no
    shards or report: one selection written as a Delta table (text and all columns);
  * ``datasets K=1`` and ``datasets K=<K>``: ``quadmix_spark.proxy.datasets.build_proxy_datasets``
    with 1 and ``--k`` θ from Algorithm 1 (the paper's ranges, ω up to 0.6 here), every dataset at
    ``--budget-share`` of the pool's tokens: the rank sample, the expected-tokens pass, the pass that
    evaluates S for all K θ per Arrow batch and writes (run_id, doc_key, tokens, copies), and the
    per-run totals.

``datasets K / select`` is the goal metric (the issue asks for ≤ 3x at K = 64); ``K / K=1`` shows
how the cost grows with K. ``CPU s`` is the CPU time of the JVM and its Python workers (from /proc);
figures are wall clock on a shared machine, each row with the 1-minute load average at its end.
The datasets hold no text (the trainers join it by ``doc_key``), while the select writes every
column: the comparison is what each step needs to write.

How to run
----------
    .venv/bin/python benchmarks/proxy_datasets.py                  # 1M docs, K = 64
    .venv/bin/python benchmarks/proxy_datasets.py --docs 50000     # quick check
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from select_throughput import (  # noqa: E402
    DOMAINS,
    SCORERS,
    Bench,
    ensure_pool,
    pipeline_config,
    session,
    warm_up,
)

from quadmix_spark import core  # noqa: E402
from quadmix_spark.pipeline.select import run_select  # noqa: E402
from quadmix_spark.pipeline.stats import run_stats  # noqa: E402
from quadmix_spark.proxy.datasets import build_proxy_datasets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000, help="pool size (default 1000000)")
    ap.add_argument("--files", type=int, default=16, help="Parquet files of the pool (default 16)")
    ap.add_argument("--k", type=int, default=64, help="proxy datasets in the scan (default 64)")
    ap.add_argument("--budget-share", type=float, default=0.05, help="tokens per dataset / pool tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/quadmix-select-bench"))
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    run = args.workdir / "run"
    shutil.rmtree(run, ignore_errors=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    spark = session(args.cores, args.workdir, {})
    annotated, info = ensure_pool(spark, args.workdir, args.docs, args.files, args.seed)
    config = pipeline_config(args.workdir, annotated)
    budget = int(info["tokens"] * args.budget_share)
    config.proxy.token_budget = budget
    sampler = core.ParamSampler(DOMAINS, tuple(SCORERS), ranges={"omega": (0.0, 0.6)})
    params = [core.QuadMixParams.from_vector(v, DOMAINS, tuple(SCORERS)) for v in sampler.sample(args.k, 1)]
    bench = Bench(spark.sparkContext._gateway.proc.pid, spark.sparkContext.defaultParallelism)
    warm_up(spark, annotated, run / "warm")
    with contextlib.redirect_stdout(io.StringIO()):  # run_stats prints its own summary
        run_stats(spark, config)

    bench.measure("select", lambda: run_select(spark, config))
    one = bench.measure("datasets K=1", lambda: build_proxy_datasets(spark, config, params[:1], ["one"]))
    ids = [f"run-{k:04d}" for k in range(args.k)]
    many = bench.measure(f"datasets K={args.k}", lambda: build_proxy_datasets(spark, config, params, ids))
    spark.stop()

    select, single, k_row = bench.rows
    print(
        f"pool: {info['docs']} docs, {info['tokens']} tokens, {info['text_bytes'] / 1e9:.2f} GB of text; "
        f"budget per dataset {budget} tokens ({args.budget_share:.0%}), local[{args.cores}]"
    )
    print(f"{'step':<16} {'wall s':>8} {'CPU s':>8} {'util':>6} {'load':>6}  written")
    notes = {
        select.label: "one selection, every column",
        single.label: f"{int(one.docs.sum())} rows",
        k_row.label: f"{int(many.docs.sum())} rows, tokens per run {many.tokens.min()}..{many.tokens.max()}",
    }
    for row in bench.rows:
        util = row.cpu / (args.cores * row.seconds)
        cells = f"{row.label:<16} {row.seconds:>8.1f} {row.cpu:>8.1f} {util:>6.2f} {row.load:>6.2f}"
        print(f"{cells}  {notes[row.label]}")
    print(
        f"datasets K={args.k} / select: wall {k_row.seconds / select.seconds:.2f}x, "
        f"CPU {k_row.cpu / select.cpu:.2f}x (goal ≤ 3x); "
        f"K={args.k} / K=1: wall {k_row.seconds / single.seconds:.2f}x, CPU {k_row.cpu / single.cpu:.2f}x"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
