"""The ``quadmix`` command: one subcommand per job, each also a spark-submit entry in jobs/.

Every subcommand takes ``--config FILE`` and any number of ``--set section.key=value`` overrides;
the config is validated before a SparkSession starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from quadmix_spark.config import ConfigError, PipelineConfig, load_config, resolve

log = logging.getLogger("quadmix")
#: The project config `quadmix init` writes; commands find it in the working directory.
PROJECT_CONFIG = "quadmix.yaml"
#: The demo's config, found when the command runs in the checkout (the README's first command).
DEFAULT_CONFIG = "conf/demo.yaml"


def default_config() -> str:
    """The config a command reads without ``--config``: ./quadmix.yaml, else the checkout's demo."""
    for candidate in (PROJECT_CONFIG, DEFAULT_CONFIG):
        if Path(candidate).is_file():
            return candidate
    raise ConfigError(
        f"no {PROJECT_CONFIG} in {Path.cwd()}: run `quadmix init` here to start a project "
        f"(or pass --config FILE)"
    )


def cmd_init(args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.init import init_project

    done = init_project(args.dir, corpus=args.corpus, fmt=args.format, label=args.label, force=args.force)
    print(f"init: wrote {done.config}, {done.models}/" + (f", {done.readme}" if done.readme else ""))
    print(f"  edit {done.config}, then from {args.dir}: quadmix train-classifier, annotate, stats, ...")


def _session(config: PipelineConfig):
    from quadmix_spark.spark.session import build_session

    conf = {
        "spark.sql.shuffle.partitions": str(config.spark.shuffle_partitions),
        **config.spark.conf,
    }
    spark = build_session(
        app_name=config.spark.app_name,
        master=config.spark.master,
        warehouse=config.warehouse,
        conf=conf,
        local_max_failures=config.spark.local_max_failures,
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def cmd_demo_corpus(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.demo.corpus import write_corpus

    cfg = config.demo
    n_docs = args.docs or cfg.n_docs
    log.info("writing %d demo documents to %s", n_docs, cfg.output_path)
    summary = write_corpus(
        cfg.output_path,
        n_docs=n_docs,
        seed=cfg.seed,
        fmt=cfg.format,
        defect_rate=cfg.defect_rate,
        malformed_rate=cfg.malformed_rate if cfg.format == "jsonl" else 0.0,
        workers=cfg.workers,
    )
    print(f"demo corpus: {summary['docs']} documents, {summary['bytes'] / 1e6:.1f} MB")
    for domain, count in sorted(summary["per_domain"].items()):
        print(f"  {domain:<24} {count:>8}")
    if summary.get("malformed"):
        print(f"  malformed records added: {summary['malformed']}")


def cmd_train_classifier(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.classifier import format_report, train_classifier

    names = args.name or sorted(config.classifiers)
    unknown = [n for n in names if n not in config.classifiers]
    if unknown:
        raise ConfigError(f"classifiers.{unknown[0]} is not defined in the config")
    spark = _session(config)
    for name in names:
        print(format_report(name, train_classifier(spark, config.classifiers[name], name)))


def cmd_annotate(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.annotate import AnnotateFailed, format_summary, run_annotate

    spark = _session(config)
    try:
        summary = run_annotate(spark, config, mode=args.mode)
    except AnnotateFailed as err:
        if err.summary is not None:
            print(format_summary(err.summary))
        raise SystemExit(str(err)) from err
    print(format_summary(summary))


def cmd_stats(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.stats import run_stats

    run_stats(_session(config), config)


def cmd_select(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.select import check_config, format_summary, load_checked_params, run_select
    from quadmix_spark.spark import files

    check_config(config)  # the selector and the mixture's name, before the SparkSession starts
    if files.is_local_path(config.select.params):  # a URI is read through the session
        load_checked_params(config)  # a bad params file fails before the SparkSession starts
    print(format_summary(run_select(_session(config), config)))


def cmd_params_template(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.params_template import write_params_template

    params = write_params_template(_session(config), config, args.output, overwrite=args.force)
    # A project from `quadmix init` already names the file select reads: no --set to suggest.
    read_by_select = os.path.abspath(resolve(config.select.params)) == os.path.abspath(args.output)
    then = "" if read_by_select else f", then --set select.params={args.output}"
    print(
        f"params-template: {params.n_domains} domains × {params.n_scorers} scorers → {args.output} "
        f"(core.uniform's defaults; edit it{then})"
    )


def cmd_fit_search(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.fit_search import (
        check_regmix_domains,
        format_summary,
        prior_fallback,
        regressor_families,
        run_fit_search,
    )
    from quadmix_spark.pipeline.inputs import mixture_needs
    from quadmix_spark.spark import files

    cfg = config.search
    paths = [cfg.output_dir, cfg.output_params if cfg.mode == "quadmix" else cfg.output_mixture]
    paths += [cfg.runs_path, cfg.template_params, cfg.holdout_runs or ""]
    needs_spark = cfg.runs_format == "delta"
    regressor_families(cfg)  # these fail before the SparkSession starts
    check_regmix_domains(config)
    if cfg.mode == "regmix":  # the prior's stats table or file (none: uniform, see prior_fallback)
        prior = "uniform" if prior_fallback(config) else cfg.prior
        prior_file, prior_stats = mixture_needs(config, [prior], "search.prior")
        needs_spark, paths = needs_spark or prior_stats, paths + prior_file
    # realised features read a sample of the pool (its stats table) when there is one
    stats = Path(config.table_path(config.select.stats_table)) / "_delta_log"
    needs_spark = needs_spark or (cfg.mode == "quadmix" and cfg.features != "theta" and stats.is_dir())
    needs_spark = needs_spark or not all(map(files.is_local_path, paths))  # URIs go through Hadoop
    print(format_summary(run_fit_search(config, _session(config) if needs_spark else None)))


def cmd_bimix(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.bimix import check_config, format_summary, needs_spark, run_bimix

    check_config(config)  # a local runs file's mistakes (weights, columns, too few rows) before Spark
    print(format_summary(run_bimix(config, _session(config) if needs_spark(config) else None)))


def cmd_entropy(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.entropy import check_config, format_summary, run_entropy

    check_config(config)  # a missing tokenizer or VNE model fails before the SparkSession starts
    print(format_summary(run_entropy(_session(config), config)))


def cmd_predict_mixture(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.fit_search import predict_mixtures
    from quadmix_spark.pipeline.inputs import mixture_needs
    from quadmix_spark.spark import files

    read, needs_stats = mixture_needs(config, args.mixture, "--mixture")
    spark = None
    where = [config.search.output_dir, config.search.output_mixture, *read, args.regressor or ""]
    if needs_stats or not all(map(files.is_local_path, where)):
        spark = _session(config)  # the stats table, and URIs through Spark's Hadoop FileSystem
    for name, loss in predict_mixtures(config, args.mixture, spark, args.regressor):
        print(f"{loss:.5f}  {name}")


def cmd_import_runs(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.import_runs import format_summary, import_runs, read_runs_file

    runs = read_runs_file(config)  # a local file and its mode are checked before the SparkSession starts
    print(format_summary(import_runs(_session(config), config, replace=args.replace, runs=runs)))


def cmd_experiment(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.experiment import format_result, run_experiment

    print(format_result(run_experiment(_session(config), config)))


def cmd_streams(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.streams import format_summary, run_streams

    print(format_summary(run_streams(_session(config), config, force=args.force)))


def cmd_reweight(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.reweight import format_result, run_reweight

    if args.retry_failed:
        config.reweight.retry_failed = True
    print(format_result(run_reweight(_session(config), config, args.method)))


def cmd_cluster(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.clustering import format_result, run_cluster

    print(format_result(run_cluster(_session(config), config)))


def cmd_assign(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.clustering import check_model, format_assign, run_assign
    from quadmix_spark.spark import files

    if files.is_local_path(config.table_path(config.cluster.model_dir)):  # a URI is read through the session
        check_model(config)
    print(format_assign(run_assign(_session(config), config)))


def cmd_demo(config: PipelineConfig, args: argparse.Namespace) -> None:
    """The whole demo pipeline end to end."""
    from quadmix_spark.pipeline.select import check_config

    check_config(config)  # a bad select setting fails before the corpus is written
    args.name = None
    cmd_demo_corpus(config, args)
    cmd_train_classifier(config, args)
    cmd_annotate(config, args)
    cmd_stats(config, args)
    cmd_select(config, args)


def cmd_refresh(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.pipeline.annotate import AnnotateFailed
    from quadmix_spark.pipeline.refresh import (
        check_clusters,
        format_summary,
        parse_run_date,
        run_refresh,
        uses_clusters,
    )
    from quadmix_spark.spark import files

    run_date = parse_run_date(args.run_date)  # a bad date fails before the SparkSession starts
    if args.step == "assign" and not uses_clusters(config):
        # The nightly DAG runs every step as a task, whatever the config: this one has no clusters.
        print(
            f"refresh {run_date}: assign: nothing to do (domain_column {config.domain_column!r} is not "
            f"cluster.column {config.cluster.column!r}: the domains are not clusters)"
        )
        return
    if files.is_local_path(config.table_path(config.cluster.model_dir)):  # a URI is read through the session
        check_clusters(config)
    try:
        summary = run_refresh(_session(config), config, run_date, step=args.step, restart=args.restart)
    except AnnotateFailed as err:
        table = config.refresh.runs_table
        raise SystemExit(f"refresh {run_date}: annotate failed (recorded in {table}): {err}") from err
    print(format_summary(summary))


def cmd_resolve_jars(config: PipelineConfig, args: argparse.Namespace) -> None:
    from quadmix_spark.spark.session import resolve_jars

    resolve_jars()


COMMANDS: dict[str, tuple[Callable, str]] = {
    "demo": (cmd_demo, "run the demo pipeline end to end"),
    "demo-corpus": (cmd_demo_corpus, "generate the bundled demo corpus"),
    "train-classifier": (cmd_train_classifier, "train the fastText classifiers of the config"),
    "annotate": (cmd_annotate, "annotate a corpus into Delta (domain, quality, language, tokens)"),
    "stats": (cmd_stats, "per-domain statistics and quantile sketches of the scorers"),
    "select": (cmd_select, "QuaDMix selection: selected Delta table, shards, manifest, report"),
    "params-template": (cmd_params_template, "a θ file for the stats table's domains, with the defaults"),
    "fit-search": (cmd_fit_search, "fit the loss regressor on proxy runs and search θ*"),
    "bimix": (cmd_bimix, "fit BiMix laws on proxy runs: diagnostics and the optimal mixture r*"),
    "entropy": (cmd_entropy, "entropy mixtures: per-domain SE, JE, CE, VNE → softmax mixture files"),
    "predict-mixture": (cmd_predict_mixture, "predicted target loss of mixture files (RegMix regressor)"),
    "import-runs": (cmd_import_runs, "import proxy runs trained elsewhere into the proxy_runs table"),
    "experiment": (cmd_experiment, "proxy runs → fit → search → θ* against the baselines at one budget"),
    "refresh": (cmd_refresh, "nightly run for a date: annotate (incremental) → stats → select, recorded"),
    "streams": (cmd_streams, "per-domain token streams (domain_streams) for online reweighting"),
    "reweight": (cmd_reweight, "TANDEM / DoReMi / Uniform domain reweighting on the streams: mixture files"),
    "cluster": (cmd_cluster, "cluster a hash sample (MLlib TF-IDF + k-means): clusters table and model"),
    "assign": (cmd_assign, "write each document's cluster name into the annotated table (new rows only)"),
    "resolve-jars": (cmd_resolve_jars, "download the Delta jars into Spark's Ivy cache"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quadmix", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_init(sub)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--config", help=f"YAML config (default: ./{PROJECT_CONFIG}, in the checkout {DEFAULT_CONFIG})"
        )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set annotate.max_text_bytes=500000",
        )
        if name in ("demo", "demo-corpus"):
            p.add_argument("--docs", type=int, help="number of demo documents (default: demo.n_docs)")
        if name == "predict-mixture":
            p.add_argument(
                "--mixture",
                action="append",
                required=True,
                help="a mixture source: a file, natural, uniform, entropy:<measure>, ... (repeatable)",
            )
            p.add_argument(
                "--regressor",
                help="fit-search's regressor.pkl, its folder or its search_summary.json (default: "
                "search.output_dir, else the one r* at search.output_mixture or a --mixture file names)",
            )
        if name == "import-runs":
            p.add_argument(
                "--replace",
                action="store_true",
                help="update runs recorded ok whose losses or vectors changed (default: refuse them)",
            )
        if name == "params-template":
            p.add_argument("--output", default="params.yaml", help="θ file to write (default: %(default)s)")
            p.add_argument("--force", action="store_true", help="replace an existing --output file")
        if name == "streams":
            p.add_argument("--force", action="store_true", help="rewrite the table even if up to date")
        if name == "reweight":
            from quadmix_spark.mixing.reweighters import REWEIGHTERS

            p.add_argument(
                "--method",
                action="append",
                choices=REWEIGHTERS.names(),
                help="method to run (repeatable; default: reweight.methods)",
            )
            p.add_argument("--retry-failed", action="store_true", help="train runs recorded as failed again")
        if name == "train-classifier":
            p.add_argument("--name", action="append", help="classifier to train (default: all)")
        if name in ("demo", "annotate"):
            # The demo retrains its classifiers, and a table scored by other models is not appended to.
            p.add_argument(
                "--mode",
                choices=("incremental", "overwrite"),
                default="overwrite" if name == "demo" else "incremental",
                help="incremental: annotate only ids not yet in the table; overwrite: rescore all "
                "(default: %(default)s)",
            )
        if name == "refresh":
            p.add_argument("--run-date", help="the run's date, YYYY-MM-DD (default: today in UTC)")
            p.add_argument(
                "--step",
                choices=("all", "annotate", "assign", "stats", "select"),
                default="all",
                help="run one step of the date's run (each is recorded; default: all steps not done; assign: "
                "nothing to do unless domain_column is cluster.column)",
            )
            p.add_argument(
                "--restart",
                action="store_true",
                help="begin a new attempt for a date already done or started",
            )
    return parser


def _add_init(sub: argparse._SubParsersAction) -> None:
    from quadmix_spark.pipeline.init import FORMATS

    p = sub.add_parser("init", help=f"start a project folder: {PROJECT_CONFIG} for your corpus, models/")
    p.add_argument("dir", nargs="?", default=".", help="the project folder (default: .)")
    p.add_argument("--corpus", help="your corpus: a file, folder or URI (default: DIR/data/corpus)")
    p.add_argument("--format", choices=FORMATS, help="the corpus's format (default: from its files)")
    p.add_argument(
        "--label", default="domain", help="the corpus's domain label column (default: %(default)s)"
    )
    p.add_argument("--force", action="store_true", help=f"replace an existing {PROJECT_CONFIG}")


def main(argv: Sequence[str] | None = None, command: str | None = None) -> int:
    """Entry point of ``quadmix`` (and, with ``command``, of the jobs/ scripts)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if command:
        argv = [command, *argv]
    args = build_parser().parse_args(argv)
    try:
        if args.command == "init":  # no config yet: it writes one
            cmd_init(args)
            return 0
        config = load_config(args.config or default_config(), args.overrides)
        COMMANDS[args.command][0](config, args)
    except ConfigError as err:
        print(f"quadmix {args.command}: configuration error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
