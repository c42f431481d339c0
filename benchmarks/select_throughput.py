"""Throughput of the select job against the I/O floor: a plain Delta read + write of the same table.

What it measures
----------------
On a synthetic annotated Delta table of ``--docs`` documents (default 1,000,000) with the annotated
table's shape -- ``id``, ``text`` (1.5 KB median, lognormal tail, mean ~2.9 KB: hash-chosen slices
of one 4 MB string of Zipf-distributed words, so it compresses like text, not like repeats),
``domain`` (11 skewed domains), ``n_tokens`` (≈ text bytes / 4), ``doc_key = xxhash64(id)`` and
three scorer columns with ties -- it times, in one SparkSession with a warm JVM:

  * ``floor``: ``spark.read.format("delta").load(annotated).write.format("delta").save(new)``, every
    column, nothing else: the I/O floor of any job that rewrites the table. It runs before and
    after each select run (the machine's speed drifts).
  * ``stats``: ``quadmix_spark.pipeline.stats.run_stats`` (scans of the narrow columns only).
  * ``select``: ``quadmix_spark.pipeline.select.run_select`` with ``shard_formats=[]`` and ``report=False``
    (the selected Delta table only), scalable rank mode, no token budget. Its wall time is split
    into phases by wrapping select's own steps: ``load stats`` (and θ checks), ``rank sample``
    (``_fit_mapping``: the hash-chosen sample pass and the mapping fit), ``calibration`` (with a
    budget only), ``write`` (the query that scores every document and writes the selected Delta
    table, per-domain totals observed on the way), ``shards``, ``report``, ``other`` (the rest,
    e.g. the manifest); the wrappers only read the clock.
  * ``select+shards+report`` (``--shards``): run_select again with Parquet shards and the report,
    printed separately (not part of the goal).

The selection uses a hand-made θ like ``conf/params/demo.yaml`` (ω = 0.6: about 60 % of each
domain's tokens kept, the best up-sampled by up to 2^0.5), so the select write is smaller than the
floor's; the kept share is printed.

How to read it
--------------
``select / floor`` is the goal metric (the issue asks for ≤ 1.5x), on wall time and on CPU time;
``(stats + select) / floor`` is the cost of a full selection from a fresh annotated table. ``CPU s``
is the CPU seconds the JVM and its Python workers used during the row (from /proc): ``util = CPU /
(cores x wall)`` well below 1 means idle cores or other processes taking them, and then the CPU
ratio is the steadier figure. Figures are wall clock on a shared machine: each row shows the
1-minute load average at its end; compare runs only at similar load. ``select phases`` gives
seconds and, in brackets, multiples of the floor. Each select run is compared with the mean of the
floors run just before and after it; with ``--repeat N`` the median of those ratios is reported.

How to run
----------
    .venv/bin/python benchmarks/select_throughput.py                 # 1M docs (~5 min to generate once)
    .venv/bin/python benchmarks/select_throughput.py --docs 50000    # quick check
    .venv/bin/python benchmarks/select_throughput.py --shards --conf spark.sql.shuffle.partitions=16

The table is generated once and cached under ``--workdir`` (default /tmp/quadmix-select-bench),
keyed by document count, seed and file count; the outputs of each run go to ``<workdir>/run``
(deleted at the start of each run). ``<workdir>/pipeline.yaml`` is a config for the cached pool
(e.g. for ``benchmarks/rank_error.py --config <workdir>/pipeline.yaml --workdir <workdir>``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyspark.sql import Column, DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from quadmix_spark import core  # noqa: E402
from quadmix_spark.config import PipelineConfig, from_dict  # noqa: E402
from quadmix_spark.pipeline.stats import run_stats  # noqa: E402

GENERATOR_VERSION = 3  # bump when the generated table changes, so cached pools are rebuilt
DOMAINS = (
    "web", "news", "forum", "science", "code", "books", "wiki", "legal", "medical", "finance", "patents",
)  # fmt: skip
SCORERS = {"q_quality": "higher_is_better", "q_edu": "higher_is_better", "q_dup": "lower_is_better"}
CORPUS_BYTES = 4_000_000  # every text is a hash-chosen slice of this one string
MEDIAN_BYTES, SIGMA = 1500.0, 1.15  # lognormal text length: median 1.5 KB, mean ≈ 2.9 KB
MAX_BYTES = 200_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def load1() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------- the synthetic pool


def _corpus(seed: int) -> str:
    """CORPUS_BYTES of text: words of a fixed vocabulary drawn Zipf-like, with sentence breaks."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    p = np.linspace(2.0, 0.2, letters.size)
    vocab = sorted({"".join(rng.choice(letters, int(n), p=p / p.sum())) for n in rng.integers(1, 11, 20_000)})
    rank = rng.permutation(len(vocab))
    weights = 1.0 / (rank + 10.0)  # Zipf-like word frequencies
    n_words = CORPUS_BYTES // 5
    words = np.array(vocab)[rng.choice(len(vocab), n_words, p=weights / weights.sum())]
    ends = rng.random(n_words) < 1 / 14  # ~14 words per sentence
    text = " ".join(w + ("." if e else "") for w, e in zip(words, ends, strict=True))
    return text[:CORPUS_BYTES]


def _uniform(salt: str, *cols: Column) -> Column:
    """A uniform in [0, 1) from a hash of ``cols`` and ``salt`` (deterministic, partition-free)."""
    return F.pmod(F.xxhash64(*cols, F.lit(salt)), F.lit(1 << 53)).cast("double") / float(1 << 53)


def pool_frame(spark: SparkSession, n_docs: int, files: int, seed: int) -> DataFrame:
    """The synthetic annotated table as a lazy DataFrame: Spark expressions only, no Python per row."""
    n = F.col("n")
    s = f"seed{seed}"
    corpus = F.lit(bytearray(_corpus(seed).encode()))  # binary: substr is O(length), not O(offset)
    # Domain: weights ∝ 0.72^k, so the largest domain is ~30 % and the smallest ~1 % of the pool.
    weights = 0.72 ** np.arange(len(DOMAINS))
    cuts = np.cumsum(weights / weights.sum())
    u_dom = _uniform(f"{s}-domain", n)
    domain_idx = F.lit(len(DOMAINS) - 1)
    for k in reversed(range(len(DOMAINS) - 1)):
        domain_idx = F.when(u_dom < float(cuts[k]), k).otherwise(domain_idx)
    # Text length: lognormal by Box-Muller on two hash uniforms.
    z = F.sqrt(-2.0 * F.log(1.0 - _uniform(f"{s}-len1", n))) * F.cos(2 * np.pi * _uniform(f"{s}-len2", n))
    n_bytes = F.least(
        F.greatest(F.exp(F.lit(float(np.log(MEDIAN_BYTES))) + SIGMA * z), F.lit(40.0)), F.lit(MAX_BYTES)
    )
    # A slice at a hash-chosen offset: cheap to make, and neighbouring documents share no long
    # substrings within Snappy's window, so the table compresses about like real text.
    offset = (_uniform(f"{s}-offset", n) * (CORPUS_BYTES - F.col("n_bytes"))).cast("int") + 1
    u = {name: _uniform(f"{s}-{name}", n) for name in ("q1", "q2", "q3", "q3z", "tok")}
    dom = F.col("domain_idx").cast("double")
    return (
        spark.range(0, n_docs, 1, files)
        .withColumnRenamed("id", "n")
        .withColumn("domain_idx", domain_idx)
        .withColumn("n_bytes", n_bytes.cast("int"))
        .select(
            F.format_string("doc-%010d", n).alias("id"),
            corpus.substr(offset, F.col("n_bytes")).cast("string").alias("text"),
            F.element_at(F.lit(list(DOMAINS)), F.col("domain_idx") + 1).alias("domain"),
            "domain_idx",
            "n",
        )
        .select(
            "id",
            "text",
            "domain",
            # ≈ 4 bytes per token, ±15 %: consistent with the text, never 0.
            F.greatest(F.lit(1), F.round(F.octet_length("text") / 4.0 * (0.85 + 0.3 * u["tok"])))
            .cast("long")
            .alias("n_tokens"),
            F.xxhash64("id").alias("doc_key"),
            # Three scorers, all with ties: ≤ 1001 / ~100 distinct values, and 40 % exact zeros.
            F.round(F.pow(u["q1"], 0.6 + 0.08 * dom), 3).alias("q_quality"),
            F.round(u["q2"] * 0.8 + 0.02 * dom, 2).alias("q_edu"),
            F.when(u["q3z"] < 0.4, 0.0).otherwise(F.round(F.pow(u["q3"], 3.0), 4)).alias("q_dup"),
        )
    )


def ensure_pool(spark: SparkSession, workdir: Path, n_docs: int, files: int, seed: int) -> tuple[str, dict]:
    """The annotated Delta table of ``n_docs`` documents, generated once and reused."""
    path = workdir / f"annotated-{n_docs}-f{files}-seed{seed}"
    marker = path / "_bench.json"
    want = {"docs": n_docs, "files": files, "seed": seed, "generator": GENERATOR_VERSION}
    if marker.is_file():
        info = json.loads(marker.read_text())
        if all(info.get(k) == v for k, v in want.items()):
            return str(path), info
    shutil.rmtree(path, ignore_errors=True)
    print(f"generating {n_docs} documents into {path} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    pool_frame(spark, n_docs, files, seed).write.format("delta").save(str(path))
    seconds = time.perf_counter() - t0
    row = (
        spark.read.format("delta")
        .load(str(path))
        .select(
            F.count(F.lit(1)).alias("docs"),
            F.sum(F.octet_length("text")).alias("text_bytes"),
            F.percentile_approx(F.octet_length("text"), 0.5).alias("median"),
            F.sum("n_tokens").alias("tokens"),
        )
        .first()
    )
    disk = sum(f.stat().st_size for f in path.glob("*.parquet"))
    info = {**want, "text_bytes": int(row["text_bytes"]), "median_bytes": int(row["median"]),
            "tokens": int(row["tokens"]), "disk_bytes": disk, "seconds": round(seconds, 1)}  # fmt: skip
    marker.write_text(json.dumps(info))
    print(f"  done in {seconds:.0f} s", file=sys.stderr, flush=True)
    return str(path), info


def theta() -> core.QuadMixParams:
    """A θ like conf/params/demo.yaml (ω = 0.6, η = 0.5), with α and λ varying by domain."""
    m, n = len(DOMAINS), len(SCORERS)
    alpha = np.array([np.roll([0.6, 0.25, 0.15], k % n) for k in range(m)])
    return core.QuadMixParams(
        domains=DOMAINS,
        scorers=tuple(SCORERS),
        alpha=alpha,
        lam=np.linspace(5.0, 20.0, m),
        omega=np.full(m, 0.6),
        eta=np.full(m, 0.5),
        eps=np.full(m, 0.001),
    )


def pipeline_config(workdir: Path, annotated: str, **select: Any) -> PipelineConfig:
    """Config for the cached pool; outputs under ``<workdir>/run``. Also written as pipeline.yaml."""
    params = workdir / "theta.yaml"
    core.save_params(theta(), params)
    run = workdir / "run"
    data = {
        "warehouse": str(run / "warehouse"),
        "domain_column": "domain",
        "token_column": "n_tokens",
        "scorers": SCORERS,
        "stats": {"input_table": annotated, "output_table": "stats"},
        "select": {
            "input_table": annotated,
            "stats_table": "stats",
            "output_table": "selected",
            "output_dir": str(run / "selections"),
            "params": str(params),
            "rank_mode": "scalable",
            "shard_formats": [],
            "report": False,
            **select,
        },
    }
    (workdir / "pipeline.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return from_dict(PipelineConfig, data)


# --------------------------------------------------------------------------- measuring


def _cpu_seconds(jvm: int) -> float:
    """CPU seconds of the JVM and every live descendant (exited children count through cutime)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK_TCK)
    tree, frontier = {jvm}, [jvm]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, (pp, _) in table.items() if pp == parent and p not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(table[p][1] for p in tree if p in table)


@dataclass
class Row:
    label: str
    seconds: float
    cpu: float
    load: float
    note: str = ""


@dataclass
class Bench:
    jvm: int
    cores: int
    rows: list[Row] = field(default_factory=list)

    def measure(self, label: str, action: Callable[[], Any]) -> Any:
        print(f"  {label} ...", file=sys.stderr, flush=True)
        cpu0, t0 = _cpu_seconds(self.jvm), time.perf_counter()
        result = action()
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds(self.jvm) - cpu0
        self.rows.append(Row(label, seconds, cpu, load1()))
        return result


class PhaseClock:
    """Benchmark-only: wraps select's steps so each one's start and end time is recorded.

    The wrappers call the originals unchanged; ``phases()`` turns the timeline into durations.
    """

    STEPS = ("load_stats", "_fit_mapping", "_calibrate", "write_shards", "_report")

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        self.events.append((name, time.perf_counter()))

    def _wrap(self, name: str, fn: Callable) -> Callable:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.mark(f"{name}:start")
            try:
                return fn(*args, **kwargs)
            finally:
                self.mark(f"{name}:end")

        return wrapped

    @contextlib.contextmanager
    def installed(self) -> Iterator[PhaseClock]:
        from quadmix_spark.pipeline import select

        saved = {name: getattr(select, name) for name in self.STEPS}
        saved_write = select.tables.write
        for name in self.STEPS:
            setattr(select, name, self._wrap(name, saved[name]))
        select.tables.write = self._wrap("write", saved_write)
        try:
            yield self
        finally:
            for name, fn in saved.items():
                setattr(select, name, fn)
            select.tables.write = saved_write

    def phases(self, start: float, end: float) -> list[tuple[str, float]]:
        t = dict(self.events)  # last occurrence wins; each step runs once per run_select

        def span(a: str, b: str) -> float:
            return t[b] - t[a] if a in t and b in t else 0.0

        out = [
            ("load stats", t.get("load_stats:end", start) - start),
            ("rank sample", span("_fit_mapping:start", "_fit_mapping:end")),
            ("calibration", span("_calibrate:start", "_calibrate:end")),
            ("write", span("write:start", "write:end")),
            ("shards", span("write_shards:start", "write_shards:end")),
            ("report", span("_report:start", "_report:end")),
        ]
        accounted = sum(s for _, s in out)
        return [(name, s) for name, s in out if s > 0.05] + [("other", end - start - accounted)]


def timed_select(spark: SparkSession, config: PipelineConfig) -> tuple[Any, list[tuple[str, float]]]:
    from quadmix_spark.pipeline.select import run_select

    clock = PhaseClock()
    with clock.installed():
        start = time.perf_counter()
        summary = run_select(spark, config)
        end = time.perf_counter()
    return summary, clock.phases(start, end)


def session(cores: int, workdir: Path, extra_conf: dict[str, str]) -> SparkSession:
    from quadmix_spark.spark.session import build_session

    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8", **extra_conf}
    spark = build_session(
        app_name="quadmix-select-bench", master=f"local[{cores}]", warehouse=workdir / "warehouse", conf=conf
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def warm_up(spark: SparkSession, annotated: str, scratch: Path) -> None:
    """JIT, Delta and Python-worker start-up outside the clock: a small copy and a pandas UDF."""

    @F.pandas_udf("double")
    def plus_one(x: pd.Series) -> pd.Series:
        return x + 1.0

    df = spark.read.format("delta").load(annotated).limit(50_000)
    df.write.format("delta").mode("overwrite").save(str(scratch))
    spark.read.format("delta").load(str(scratch)).select(plus_one("q_quality")).agg(F.sum("*")).collect()
    shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000, help="pool size (default 1000000)")
    ap.add_argument("--files", type=int, default=16, help="Parquet files of the pool (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/quadmix-select-bench"))
    ap.add_argument("--cores", type=int, default=2, help="Spark runs local[CORES] (default 2)")
    ap.add_argument("--rank-sample-size", type=int, default=None, help="select.rank_sample_size")
    ap.add_argument("--shards", action="store_true", help="also time select with Parquet shards + report")
    ap.add_argument("--repeat", type=int, default=1, help="select runs, each followed by a floor (default 1)")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting")
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    run = args.workdir / "run"
    shutil.rmtree(run, ignore_errors=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    spark = session(args.cores, args.workdir, dict(item.split("=", 1) for item in args.conf))
    annotated, info = ensure_pool(spark, args.workdir, args.docs, args.files, args.seed)
    select_opts = {"rank_sample_size": args.rank_sample_size} if args.rank_sample_size else {}
    config = pipeline_config(args.workdir, annotated, **select_opts)
    bench = Bench(spark.sparkContext._gateway.proc.pid, spark.sparkContext.defaultParallelism)
    warm_up(spark, annotated, run / "warm")

    def floor(i: int) -> None:
        out = str(run / f"floor-{i}")
        spark.read.format("delta").load(annotated).write.format("delta").mode("overwrite").save(out)

    floors, selects, phases = [], [], []
    bench.measure("floor #1", lambda: floor(1))
    floors.append(bench.rows[-1])
    with contextlib.redirect_stdout(io.StringIO()):  # run_stats prints its own summary
        bench.measure("stats", lambda: run_stats(spark, config))
    stats_row = bench.rows[-1]
    for i in range(1, args.repeat + 1):
        summary, phase = bench.measure(f"select #{i}", lambda: timed_select(spark, config))
        selects.append(bench.rows[-1])
        phases.append(phase)
        bench.measure(f"floor #{i + 1}", lambda i=i: floor(i + 1))
        floors.append(bench.rows[-1])
    shard_phases = None
    if args.shards:
        shard_config = pipeline_config(
            args.workdir, annotated, shard_formats=["parquet"], report=True, **select_opts
        )
        _, shard_phases = bench.measure("select+shards+report", lambda: timed_select(spark, shard_config))
    spark.stop()
    report(bench, info, config, summary, floors, stats_row, selects, phases, shard_phases)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def report(
    bench: Bench,
    info: dict,
    config: PipelineConfig,
    summary: Any,
    floors: list[Row],
    stats_row: Row,
    selects: list[Row],
    phases: list[list[tuple[str, float]]],
    shard_phases: list[tuple[str, float]] | None,
) -> None:
    """The table of runs, the ratios (medians over repeats) and select's phases."""
    # Each select run against the mean of the floors just before and after it (the machine drifts).
    pairs = [
        (sel, (floors[i].seconds + floors[i + 1].seconds) / 2, (floors[i].cpu + floors[i + 1].cpu) / 2)
        for i, sel in enumerate(selects)
    ]
    wall = [sel.seconds / f for sel, f, _ in pairs]
    cpu = [sel.cpu / c for sel, _, c in pairs]
    k = int(np.argsort(wall)[(len(wall) - 1) // 2])  # the median run (the lower one of two)
    sel, floor_s, _ = pairs[k]
    kept = sum(summary.tokens_after.values()) / sum(summary.tokens_before.values())
    print(
        f"select throughput: {info['docs']} docs, {info['text_bytes'] / 1e9:.2f} GB text (median "
        f"{info['median_bytes']} B), {len(DOMAINS)} domains, {info['disk_bytes'] / 1e9:.2f} GB Delta; Spark "
        f"local[{bench.cores}], rank_mode=scalable ({config.select.rank_sample_size}/domain), no budget"
    )
    print(
        f"selection: {summary.selected_docs} docs ({summary.selected_docs / info['docs']:.0%}), "
        f"{summary.selected_copies} copies, {kept:.0%} of the tokens"
    )
    print(f"  {'':<22} {'s':>7} {'docs/s':>7} {'CPU s':>6} {'util':>5} {'load1':>5}")
    for r in bench.rows:
        print(
            f"  {r.label:<22} {r.seconds:>7.1f} {info['docs'] / r.seconds:>7.0f} {r.cpu:>6.0f} "
            f"{r.cpu / (bench.cores * r.seconds):>5.2f} {r.load:>5.2f}"
        )
    verdict = "meets" if wall[k] <= 1.5 else "misses"
    print(
        f"select / floor = {wall[k]:.2f}x wall, {cpu[k]:.2f}x CPU (goal <= 1.5x: {verdict}); "
        f"(stats + select) / floor = {(stats_row.seconds + sel.seconds) / floor_s:.2f}x wall"
    )
    if len(pairs) > 1:
        print(
            "  each select vs the mean of the floors around it: "
            + ", ".join(
                f"#{i + 1} {w:.2f}x wall {c:.2f}x CPU" for i, (w, c) in enumerate(zip(wall, cpu, strict=True))
            )
        )
    print(f"select #{k + 1} phases, s (x floor): " + phase_line(phases[k], floor_s))
    if shard_phases is not None:
        print("select+shards+report phases, s: " + phase_line(shard_phases, floor_s))


def phase_line(phases: list[tuple[str, float]], floor_s: float) -> str:
    return " | ".join(f"{name} {s:.1f} ({s / floor_s:.2f})" for name, s in phases)


if __name__ == "__main__":
    sys.exit(main())
