"""How each stage's cost grows with the corpus: annotate → stats → select at several corpus sizes.

What it measures
----------------
For each size of ``--sizes`` (documents; default 0.1M, 0.3M, 1M, 3M) a demo corpus
(``quadmix_spark.demo.corpus``, Parquet, generated once per size and cached) goes through the
jobs users run, in one ``local[--cores]`` SparkSession, each size into a fresh warehouse:
``run_annotate`` (conf/demo.yaml's five annotators: fastText domain and quality models trained
once on ``--train-docs`` documents, language ID, heuristics, cl100k tokens), ``run_stats`` and
``run_select`` (conf/params/demo.yaml's θ, Parquet shards, no report). Each stage's cost is the
one the job reports (``quadmix_spark.spark.cost``): wall seconds, executor core-seconds (the
seconds tasks held a core, Python workers included), JVM CPU seconds (Spark's
``executorCpuTime``: the Python workers are not in it), and core-seconds per million tokens
(the corpus's cl100k tokens, the same denominator for every stage).

A warm-up run (``--warmup`` documents) goes first and is not reported: JVM start-up, JIT and
each Python worker's model loading would otherwise land on the smallest size.

How to read it
--------------
``slope`` is the least-squares slope of log(cost) on log(tokens) over the sizes, per stage, for
core-seconds and for wall seconds. 1.0 is cost linear in the work; the goal is ≤ 1.05. A fixed
cost per run (Delta commits, job scheduling, driver-side steps) pulls the slope below 1 at small
sizes, so a slope measured on small corpora flatters; a per-size ``core-s/Mtok`` that rises with
size is the sign of super-linear work. Figures are from a shared machine: the 1-minute load
average at the end of each stage is printed beside it.

How to run
----------
    .venv/bin/python benchmarks/scaling.py                         # 0.1M..3M docs (hours on 2 cores)
    .venv/bin/python benchmarks/scaling.py --sizes 10k,30k,100k    # a quick look
    .venv/bin/python benchmarks/scaling.py --sizes 200,400 --train-docs 300 --warmup 0   # smoke

On a cluster
------------
``--cluster`` runs the pipeline at one size (``--cluster-docs``, default 10k) twice, each in a
process of its own after the same warm-up: on a standalone cluster of 2 workers of 1 core each
(``scripts/standalone_cluster.py``; the driver goes through ``scripts/submit.sh``, the executors
import this checkout from a wheel shipped with ``--py-files``, as docs/cluster.md does) and in
``local[2]``. It checks that the annotated table and the selected (id, copies) are identical and
prints each stage's wall and core-seconds and the cluster/local ratio (the overhead of
executors in their own JVMs: task shipping, shuffle through the block manager, the wheel)::

    .venv/bin/python benchmarks/scaling.py --cluster --cluster-docs 10k --train-docs 2000 --warmup 1000

Corpora, models and the warehouses live under ``--workdir`` (default /tmp/quadmix-scaling); the
table is also written as ``scaling.json`` and plotted to ``scaling.png`` (matplotlib) there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STAGES = ("annotate", "stats", "select")
GOAL_SLOPE = 1.05
KEEP_COLUMNS = ["url", "true_domain", "quality", "defect", "lang"]


def parse_size(text: str) -> int:
    """``100000``, ``100k``, ``0.1M`` → documents."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*", text)
    if found is None:
        raise argparse.ArgumentTypeError(f"--sizes: {text!r} is not a count like 100000, 100k or 0.1M")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[found.group(2).lower()]
    return int(round(float(found.group(1)) * scale))


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({parse_size(part) for part in text.split(",") if part.strip()})
    if len(sizes) < 2 or sizes[0] < 1:
        raise argparse.ArgumentTypeError("--sizes: at least two distinct positive sizes, e.g. 10k,30k,100k")
    return sizes


def docs_per_file(n_docs: int, cores: int) -> int:
    """At least 4 files per core (up to 50,000 documents a file, the generator's default).

    A corpus of one file with one row group is read by one task: every size must keep all cores
    busy, or the smallest runs alone and looks cheaper per token (the first 10k run did: one
    task, 7.5 core-s per million tokens against 9.4 at 30k and 100k).
    """
    return max(1, min(50_000, -(-n_docs // (4 * cores))))


def ensure_corpus(workdir: Path, n_docs: int, seed: int, cores: int = 2) -> Path:
    """The Parquet demo corpus of ``n_docs`` documents, generated once and reused."""
    from quadmix_spark.demo.corpus import write_corpus

    per_file = docs_per_file(n_docs, cores)
    path = workdir / f"corpus-{n_docs}-seed{seed}-per{per_file}"
    summary_file = path / "_summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary.get("docs") == n_docs and all((path / f).is_file() for f in summary["files"]):
            return path
    print(f"generating {n_docs} documents into {path} ...", flush=True)
    write_corpus(path, n_docs=n_docs, seed=seed, fmt="parquet", docs_per_file=per_file, workers=2)
    return path


def ensure_models(workdir: Path, n_docs: int, seed: int) -> dict[str, Path]:
    """fastText domain and quality models with conf/demo.yaml's hyper-parameters, trained once."""
    import fasttext
    import pyarrow.parquet as pq

    folder = workdir / f"models-{n_docs}-seed{seed}"
    models = {"domain": ("true_domain", 64), "quality": ("quality", 32)}
    paths = {name: folder / f"{name}.bin" for name in models}
    if all(p.is_file() for p in paths.values()):
        return paths
    corpus = ensure_corpus(workdir, n_docs, seed + 1)  # documents the measured corpora do not hold
    table = pq.read_table(corpus, columns=["text", *[c for c, _ in models.values()]])
    texts = [re.sub(r"[\r\n]+", " ", t) for t in table.column("text").to_pylist()]
    folder.mkdir(parents=True, exist_ok=True)
    for name, (label_column, dim) in models.items():
        train = folder / f"{name}.train.txt"
        labels = table.column(label_column).to_pylist()
        train.write_text(
            "".join(f"__label__{y.replace(' ', '_')} {t}\n" for t, y in zip(texts, labels, strict=True))
        )
        model = fasttext.train_supervised(
            input=str(train), epoch=10, lr=0.5, wordNgrams=2, dim=dim, minCount=2, thread=2, verbose=0
        )
        model.save_model(str(paths[name]))
        train.unlink()
    return paths


def pipeline_config(corpus: Path, warehouse: Path, models: dict[str, Path]) -> Any:
    """conf/demo.yaml for this corpus and warehouse (Parquet input, the trained models)."""
    from quadmix_spark.config import PipelineConfig, from_dict

    data = yaml.safe_load((REPO / "conf" / "demo.yaml").read_text())
    data["warehouse"] = str(warehouse)
    data.pop("demo", None)
    data.pop("classifiers", None)
    annotate = data["annotate"]
    annotate["input"] = {
        "path": str(corpus),
        "format": "parquet",
        "id_column": "id",
        "text_column": "text",
        "keep_columns": KEEP_COLUMNS,
        "skip_hidden_files": True,
    }
    for spec in annotate["annotators"]:
        if spec["kind"] == "fasttext_domain":
            spec["model"] = str(models["domain"])
        elif spec["kind"] == "fasttext_quality":
            spec["model"] = str(models["quality"])
    data["select"].update(
        params=str(REPO / "conf" / "params" / "demo.yaml"),
        output_dir=str(warehouse.parent / "selections"),
        shard_formats=["parquet"],
        report=False,
        allow_unused_domains=True,  # a small corpus may leave a domain unpredicted
    )
    return from_dict(PipelineConfig, data)


def run_pipeline(spark: Any, config: Any) -> dict[str, dict[str, Any]]:
    """annotate → stats → select; each stage's cost as its job reports it, and the load after it."""
    from quadmix_spark.pipeline.annotate import run_annotate
    from quadmix_spark.pipeline.select import run_select
    from quadmix_spark.pipeline.stats import run_stats

    costs = {"annotate": run_annotate(spark, config, mode="overwrite").cost}
    costs["annotate"]["load"] = os.getloadavg()[0]
    costs["stats"] = run_stats(spark, config).cost
    costs["stats"]["load"] = os.getloadavg()[0]
    costs["select"] = run_select(spark, config).cost
    costs["select"]["load"] = os.getloadavg()[0]
    return costs


def measure(
    spark: Any, workdir: Path, n_docs: int, seed: int, models: dict[str, Path], cores: int
) -> dict[str, Any]:
    corpus = ensure_corpus(workdir, n_docs, seed, cores)
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    costs = run_pipeline(spark, pipeline_config(corpus, run_dir / "warehouse", models))
    tokens = costs["annotate"]["tokens"]  # the corpus's tokens: every stage's denominator
    return {"docs": n_docs, "tokens": tokens, "stages": costs}


def run_one(args: argparse.Namespace) -> int:
    """One pipeline run in this process (``--one-run DIR``), for ``--cluster``: costs and tables in DIR.

    Under spark-submit the master is the one given there (the standalone cluster); otherwise
    ``local[--cores]``. The tables are dumped sorted by id, so two runs compare row for row.
    """
    from quadmix_spark.spark.session import build_session

    out: Path = args.one_run
    models = ensure_models(args.workdir, args.train_docs, args.seed)
    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8"}
    spark = build_session("quadmix-scaling", f"local[{args.cores}]", out / "spark-warehouse", conf)
    spark.sparkContext.setLogLevel("ERROR")
    if args.warmup:
        measure(spark, args.workdir, args.warmup, args.seed, models, args.cores)
    corpus = ensure_corpus(args.workdir, args.cluster_docs, args.seed, args.cores)
    shutil.rmtree(out / "run", ignore_errors=True)
    config = pipeline_config(corpus, out / "run" / "warehouse", models)
    costs = run_pipeline(spark, config)
    for name in ("annotated", "selected"):
        frame = spark.read.format("delta").load(config.table_path(name)).toPandas()
        frame.sort_values("id").reset_index(drop=True).to_parquet(out / f"{name}.parquet")
    master = spark.sparkContext.master
    (out / "costs.json").write_text(json.dumps({"master": master, "stages": costs}, indent=2))
    spark.stop()
    return 0


def build_wheel_zip(workdir: Path) -> Path:
    """This checkout as a wheel, copied to a .zip (``--py-files`` puts .zip, not .whl, on the path)."""
    build = workdir / "wheel-build"
    shutil.rmtree(build, ignore_errors=True)
    (build / "src").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, build / "src" / name)
    for name in ("quadmix_spark", "udfs"):
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO / name, build / "src" / name, ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    result = subprocess.run(
        [*command, "-w", str(build / "dist"), str(build / "src")], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"building the wheel failed:\n{result.stderr[-3000:]}")
    (wheel,) = (build / "dist").glob("quadmix_spark-*.whl")
    return Path(shutil.copy(wheel, workdir / "quadmix_spark.zip"))


def _one_run_command(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        str(Path(__file__).resolve()), "--one-run", str(out), "--workdir", str(args.workdir),
        "--cluster-docs", str(args.cluster_docs), "--cores", "2", "--seed", str(args.seed),
        "--train-docs", str(args.train_docs), "--warmup", str(args.warmup),
    ]  # fmt: skip


def _run_logged(command: list[str], log: Path, env: dict[str, str]) -> None:
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{command[0]} failed ({result.returncode}); log {log}:\n{tail}")


def cluster_compare(args: argparse.Namespace) -> int:
    """``--cluster``: the pipeline on 2 standalone workers of 1 core and in local[2]; compare."""
    sys.path.insert(0, str(REPO / "scripts"))
    import standalone_cluster

    args.workdir.mkdir(parents=True, exist_ok=True)
    ensure_models(args.workdir, args.train_docs, args.seed)  # once, before either run needs them
    for n_docs in filter(None, (args.warmup, args.cluster_docs)):
        ensure_corpus(args.workdir, n_docs, args.seed, 2)
    zip_file = build_wheel_zip(args.workdir)
    # The driver runs this file from the checkout; only the daemons must not inherit PYTHONPATH.
    # submit.sh's default interpreter is a .venv in the checkout, which a worktree may not have.
    env = {**os.environ, "QUADMIX_PYTHON": os.environ.get("QUADMIX_PYTHON", sys.executable)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    runs = {"cluster": args.workdir / "cluster-run", "local": args.workdir / "local-run"}
    for out in runs.values():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
    cluster = standalone_cluster.start(args.workdir / "cluster", cores=1, memory="2g", workers=2)
    try:
        print(f"cluster: {cluster.master_url}, 2 workers of 1 core", flush=True)
        submit = [
            str(REPO / "scripts" / "submit.sh"),
            "--master",
            cluster.master_url,
            "--deploy-mode",
            "client",
        ]
        submit += ["--conf", "spark.executor.memory=1g"]
        command = [*submit, *_one_run_command(args, runs["cluster"])]
        _run_logged(command, runs["cluster"] / "log.txt", {**env, "QUADMIX_PY_FILES": str(zip_file)})
    finally:
        cluster.stop()
    print("local[2] ...", flush=True)
    command = [sys.executable, *_one_run_command(args, runs["local"])]
    _run_logged(command, runs["local"] / "log.txt", env)
    text, same = compare_runs(runs["cluster"], runs["local"])
    print(text)
    return 0 if same else 1


def compare_runs(cluster: Path, local: Path) -> tuple[str, bool]:
    """The printed comparison, and whether the two runs' tables are identical."""
    import pandas as pd

    lines = []
    same = True
    for name, columns in (("annotated", None), ("selected", ["id", "copies"])):
        a = pd.read_parquet(cluster / f"{name}.parquet", columns=columns)
        b = pd.read_parquet(local / f"{name}.parquet", columns=columns)
        equal = list(a.columns) == list(b.columns) and a.equals(b)
        same &= equal
        verdict = "identical" if equal else "DIFFERENT"
        lines.append(f"{name:<10} {len(a):>7} rows x {a.shape[1]} columns on the cluster: {verdict}")
    costs = {
        k: json.loads((p / "costs.json").read_text()) for k, p in (("cluster", cluster), ("local", local))
    }
    lines.append(
        f"\ncluster = {costs['cluster']['master']} (2 workers x 1 core), local = {costs['local']['master']}"
    )
    walls = f"{'wall cl':>8} {'wall loc':>8} {'ratio':>6}"
    lines.append(f"{'stage':<9} {walls} {'core cl':>8} {'core loc':>8} {'ratio':>6}")
    for stage in (*STAGES, "total"):
        row = [
            _stage_sum({"stages": costs[k]["stages"]}, stage, f)
            for f in ("wall_s", "executor_core_s")
            for k in ("cluster", "local")
        ]
        lines.append(
            f"{stage:<9} {row[0]:>8.1f} {row[1]:>8.1f} {row[0] / row[1]:>6.2f} "
            f"{row[2]:>8.1f} {row[3]:>8.1f} {row[2] / row[3]:>6.2f}"
        )
    return "\n".join(lines), same


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def table(rows: list[dict[str, Any]]) -> tuple[str, dict[str, dict[str, float]]]:
    """The printed table and, per stage, the slopes of core-seconds and wall seconds."""
    lines = [
        f"{'docs':>9} {'tokens':>12} {'stage':<9} {'wall s':>9} {'core s':>9} {'JVM CPU s':>9} "
        f"{'core-s/Mtok':>11} {'Btok/core-h':>11} {'load':>5}"
    ]
    for row in rows:
        for stage in STAGES:
            c = row["stages"][stage]
            per_m = c["executor_core_s"] / (row["tokens"] / 1e6)
            lines.append(
                f"{row['docs']:>9} {row['tokens']:>12} {stage:<9} {c['wall_s']:>9.1f} "
                f"{c['executor_core_s']:>9.1f} {c['executor_cpu_s']:>9.1f} {per_m:>11.2f} "
                f"{3600 / per_m / 1000:>11.3f} {c['load']:>5.1f}"
            )
    tokens = [r["tokens"] for r in rows]
    slopes = {}
    lines.append("")
    lines.append(f"log-log slope of cost on tokens (goal ≤ {GOAL_SLOPE}: cost linear in the work)")
    lines.append(f"  {'stage':<9} {'core s':>7} {'wall s':>7}")
    for stage in (*STAGES, "total"):
        core = [_stage_sum(r, stage, "executor_core_s") for r in rows]
        wall = [_stage_sum(r, stage, "wall_s") for r in rows]
        slopes[stage] = {"core_s": slope(tokens, core), "wall_s": slope(tokens, wall)}
        verdict = "ok" if slopes[stage]["core_s"] <= GOAL_SLOPE else "SUPER-LINEAR"
        lines.append(
            f"  {stage:<9} {slopes[stage]['core_s']:>7.3f} {slopes[stage]['wall_s']:>7.3f}  {verdict}"
        )
    return "\n".join(lines), slopes


def _stage_sum(row: dict[str, Any], stage: str, field: str) -> float:
    stages = STAGES if stage == "total" else (stage,)
    return sum(row["stages"][s][field] for s in stages)


def plot(rows: list[dict[str, Any]], slopes: dict[str, dict[str, float]], out: Path) -> Path | None:
    """Core-seconds against tokens, per stage, on log-log axes; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG")
        return None
    tokens = np.array([r["tokens"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for stage in (*STAGES, "total"):
        core = np.array([_stage_sum(r, stage, "executor_core_s") for r in rows])
        ax.loglog(tokens, core, marker="o", label=f"{stage} (slope {slopes[stage]['core_s']:.2f})")
    ax.loglog(tokens, core[0] * tokens / tokens[0], "k:", label="linear from the smallest")
    ax.set_xlabel("corpus tokens (cl100k)")
    ax.set_ylabel("executor core-seconds")
    ax.set_title("quadmix-spark: cost per stage against corpus size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes", type=parse_sizes, default=parse_sizes("0.1M,0.3M,1M,3M"), help="documents per run"
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/quadmix-scaling"))
    ap.add_argument("--cores", type=int, default=2, help="Spark runs local[CORES] (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-docs", type=int, default=20_000, help="documents the fastText models learn from")
    ap.add_argument("--warmup", type=int, default=5_000, help="docs of an unreported first run (0: none)")
    ap.add_argument("--cluster", action="store_true", help="2 standalone workers of 1 core against local[2]")
    ap.add_argument("--cluster-docs", type=parse_size, default=10_000, help="the --cluster corpus size")
    ap.add_argument("--one-run", type=Path, help=argparse.SUPPRESS)  # one --cluster run, in its own process
    args = ap.parse_args(argv)
    if args.one_run:
        return run_one(args)
    if args.cluster:
        return cluster_compare(args)

    from quadmix_spark.spark.session import build_session

    args.workdir.mkdir(parents=True, exist_ok=True)
    models = ensure_models(args.workdir, args.train_docs, args.seed)
    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8"}  # as conf/demo.yaml
    spark = build_session("quadmix-scaling", f"local[{args.cores}]", args.workdir / "warehouse", conf)
    spark.sparkContext.setLogLevel("ERROR")
    if args.warmup:
        print(f"warm-up: {args.warmup} documents", flush=True)
        measure(spark, args.workdir, args.warmup, args.seed, models, args.cores)
    rows = []
    for n_docs in args.sizes:
        print(f"size {n_docs} ...", flush=True)
        rows.append(measure(spark, args.workdir, n_docs, args.seed, models, args.cores))
    text, slopes = table(rows)
    print(f"\nscaling, local[{args.cores}], {os.cpu_count()} CPUs on the machine\n{text}")
    (args.workdir / "scaling.json").write_text(json.dumps({"rows": rows, "slopes": slopes}, indent=2))
    png = plot(rows, slopes, args.workdir / "scaling.png")
    if png is not None:
        print(f"plot: {png}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
