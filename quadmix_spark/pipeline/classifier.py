"""The train-classifier job: a labelled corpus → a fastText supervised model + metadata file.

Spark reads and cleans the corpus and writes the training file in fastText's format
(``__label__<label> <text on one line>``); fastText trains on the driver, as it only trains on one
machine; held-out documents (chosen by a hash of the id) give accuracy and per-label F1.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quadmix_spark import __version__
from quadmix_spark.config import ClassifierConfig, ConfigError, resolve, validate
from quadmix_spark.spark import files, tables
from quadmix_spark.spark.reading import check_input_path, read_input

log = logging.getLogger(__name__)


@dataclass
class ClassifierReport:
    """Held-out evaluation of a trained classifier."""

    model_path: str
    labels: list[str]
    train_docs: int
    eval_docs: int
    accuracy: float
    macro_f1: float
    per_label: dict[str, dict[str, float]]
    seconds: float


def label_metrics(truth: list[str], predicted: list[str], labels: list[str]) -> dict:
    """Accuracy, macro-F1 and per-label precision/recall/F1/support."""
    t, p = np.asarray(truth), np.asarray(predicted)
    per_label = {}
    for label in labels:
        tp = int(np.sum((p == label) & (t == label)))
        per_label[label] = _label_scores(tp, int(np.sum(p == label)), int(np.sum(t == label)))
    return {
        "accuracy": float(np.mean(t == p)) if len(t) else 0.0,
        "macro_f1": float(np.mean([m["f1"] for m in per_label.values()])) if labels else 0.0,
        "per_label": per_label,
    }


def _label_scores(tp: int, predicted: int, support: int) -> dict[str, float]:
    """Precision, recall and F1 of one label (rounded to 4 places) and its support."""
    precision, recall = tp / max(predicted, 1), tp / max(support, 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "support": support,
    }


def metrics_from_confusion(counts: dict[tuple[str, str], int], labels: list[str]) -> dict:
    """:func:`label_metrics` from (truth, predicted) → documents, without one entry per document."""
    total = sum(counts.values())
    per_label = {}
    for label in labels:
        tp = counts.get((label, label), 0)
        predicted = sum(n for (_, p), n in counts.items() if p == label)
        support = sum(n for (t, _), n in counts.items() if t == label)
        per_label[label] = _label_scores(tp, predicted, support)
    correct = sum(n for (t, p), n in counts.items() if t == p)
    return {
        "accuracy": correct / total if total else 0.0,
        "macro_f1": float(np.mean([m["f1"] for m in per_label.values()])) if labels else 0.0,
        "per_label": per_label,
    }


def heldout_confusion(held: DataFrame, model_file: str, label_column: str) -> dict[tuple[str, str], int]:
    """(truth, predicted) → documents: the held-out set scored by the model in Spark.

    Only the confusion counts reach the driver (at most labels² rows), however many documents
    are held out. The model file is shipped to the workers under a name unique to this call.
    """
    spark = held.sparkSession
    shipped = Path(tempfile.mkdtemp(prefix="quadmix-eval-")) / f"model-{uuid.uuid4().hex}.bin"
    shutil.copyfile(model_file, shipped)
    spark.sparkContext.addFile(str(shipped))
    name = shipped.name

    def predict(batches):  # on the workers
        import fasttext
        import pandas as pd
        from pyspark import SparkFiles

        fasttext.FastText.eprint = lambda *args, **kwargs: None
        model = fasttext.load_model(SparkFiles.get(name))
        for batch in batches:
            labels = model.predict(batch["text"].tolist(), k=1)[0]
            predicted = [row[0].removeprefix("__label__") if row else "" for row in labels]
            yield pd.DataFrame({"truth": batch["truth"], "predicted": predicted})

    try:
        rows = (
            held.select(
                F.regexp_replace("text", r"[\r\n]+", " ").alias("text"),
                F.regexp_replace(label_column, " ", "_").alias("truth"),
            )
            .mapInPandas(predict, "truth string, predicted string")
            .groupBy("truth", "predicted")
            .count()
            .collect()
        )
    finally:  # the workers fetched their copy during the job; a model can be gigabytes
        shutil.rmtree(shipped.parent, ignore_errors=True)
    return {(r["truth"], r["predicted"]): int(r["count"]) for r in rows}


def train_classifier(spark: SparkSession, cfg: ClassifierConfig, key: str) -> ClassifierReport:
    """Train, evaluate and save one classifier; ``key`` names its config section in errors."""
    import fasttext  # noqa: F401  (a missing fastText fails here, before any Spark work)

    started = time.time()
    docs = labelled_documents(spark, cfg, key)
    model, train_docs = train_model(docs.where(~F.col("_heldout")), cfg, key)
    held = docs.where(F.col("_heldout")).limit(cfg.max_eval_docs)
    counts = save_and_evaluate(model, held, cfg)
    labels = sorted(lab.removeprefix("__label__") for lab in model.get_labels())
    metrics = metrics_from_confusion(counts, labels)
    report = ClassifierReport(
        model_path=cfg.output_model,
        labels=labels,
        train_docs=train_docs,
        eval_docs=sum(counts.values()),
        accuracy=round(metrics["accuracy"], 4),
        macro_f1=round(metrics["macro_f1"], 4),
        per_label=metrics["per_label"],
        seconds=round(time.time() - started, 1),
    )
    write_metadata(spark, cfg, report)
    return report


def labelled_documents(spark: SparkSession, cfg: ClassifierConfig, key: str) -> DataFrame:
    """The clean documents with a label, each marked ``_heldout`` by a hash of its id."""
    validate(cfg, f"classifiers.{key}")  # holdout_fraction, ... when the config was built in code
    check_input_path(spark, cfg.input)
    input_cfg = cfg.input
    if cfg.label_column not in input_cfg.keep_columns:
        input_cfg.keep_columns = [*input_cfg.keep_columns, cfg.label_column]
    docs = read_input(spark, input_cfg, max_text_bytes=10**9).clean.where(F.col(cfg.label_column).isNotNull())
    bucket = F.pmod(F.xxhash64("id", F.lit(cfg.seed)), F.lit(10_000))
    return docs.withColumn("_heldout", bucket < int(cfg.holdout_fraction * 10_000))


def train_model(train: DataFrame, cfg: ClassifierConfig, key: str) -> tuple[Any, int]:
    """fastText trained on the driver from ``train``'s lines; (model, training documents).

    Executors write the training file where the driver can read it back: beside the model (a URI
    on a cluster), not on the driver's local disk; the driver copies it to a local file.
    """
    staging = files.qualify(files.parent(cfg.output_model))
    staging = files.join(staging, f"_train-{key}-{uuid.uuid4().hex[:8]}")
    workdir = Path(tempfile.mkdtemp(prefix="quadmix-train-"))
    try:
        _write_training_lines(train, cfg, staging)
        train_file = workdir / "train.txt"  # fastText trains on the driver, from a local file
        with train_file.open("wb") as out:
            for part in files.glob(files.join(staging, "part-*")):
                out.write(files.read_bytes(part))
        train_docs = sum(1 for _ in train_file.open("rb"))
        if train_docs == 0:
            raise ConfigError(f"classifiers.{key}: no labelled training documents in {cfg.input.path}")
        log.info("training fastText on %d documents", train_docs)
        model = _fit_fasttext(train_file, cfg)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        files.delete(staging, recursive=True)
    if cfg.quantize:
        model.quantize(retrain=False)
    return model, train_docs


def _write_training_lines(train: DataFrame, cfg: ClassifierConfig, staging: str) -> None:
    """``__label__<label> <text on one line>`` text files under ``staging``, in hash order."""
    line = F.concat(
        F.lit("__label__"),
        F.regexp_replace(cfg.label_column, r"\s+", "_"),
        F.lit(" "),
        F.regexp_replace("text", r"[\r\n]+", " "),
    )
    # fastText reads the file in order with a decaying learning rate: shuffle by hash first.
    (
        train.select(line.alias("value"), F.xxhash64("id", F.lit(cfg.seed + 1)).alias("_order"))
        .repartition(4, "_order")
        .sortWithinPartitions("_order")
        .select("value")
        .write.text(staging)
    )


def _fit_fasttext(train_file: Path, cfg: ClassifierConfig) -> Any:
    import fasttext

    return fasttext.train_supervised(
        input=str(train_file),
        epoch=cfg.epoch,
        lr=cfg.lr,
        wordNgrams=cfg.word_ngrams,
        dim=cfg.dim,
        minCount=cfg.min_count,
        thread=cfg.threads,
        verbose=0,
    )


def save_and_evaluate(model: Any, held: DataFrame, cfg: ClassifierConfig) -> dict[tuple[str, str], int]:
    """Save the model at ``cfg.output_model``; the held-out confusion counts of that saved file."""
    with files.local_file(cfg.output_model) as path:
        model.save_model(str(path))
        return heldout_confusion(held, str(path), cfg.label_column)  # the saved file, shipped to workers


def write_metadata(spark: SparkSession, cfg: ClassifierConfig, report: ClassifierReport) -> None:
    """The report, the input and the training parameters as JSON beside the model."""
    meta = {
        **asdict(report),
        "label_column": cfg.label_column,
        "input_path": cfg.input.path,
        "input_version": _input_version(spark, cfg),
        "training_params": {
            k: getattr(cfg, k) for k in ("epoch", "lr", "word_ngrams", "dim", "min_count", "quantize")
        },
        "code_version": __version__,
    }
    files.write_text(f"{cfg.output_model}.json", json.dumps(meta, indent=2))


def _input_version(spark: SparkSession, cfg: ClassifierConfig) -> int | None:
    return tables.version(spark, resolve(cfg.input.path)) if cfg.input.format == "delta" else None


def format_report(name: str, report: ClassifierReport) -> str:
    """Human-readable classifier evaluation."""
    lines = [
        f"classifier {name}: {report.model_path} trained on {report.train_docs} docs in "
        f"{report.seconds}s; held-out {report.eval_docs} docs: accuracy {report.accuracy:.3f}, "
        f"macro-F1 {report.macro_f1:.3f}",
    ]
    for label, m in report.per_label.items():
        lines.append(
            f"  {label:<24} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}  n={m['support']}"
        )
    return "\n".join(lines)
