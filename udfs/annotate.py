"""One pass over the text: every configured annotator scores the same Arrow batch.

The Spark side calls :func:`annotate_batches` through ``DataFrame.mapInArrow``. Each batch's text
crosses from the JVM once, is turned into a Python list once, and every annotator reads that list;
fastText ``predict`` and the tokenizer get whole batches. Annotator specs are plain dicts so the
closure pickles small; models are loaded on the worker (see :mod:`udfs.models`).

Where the time goes (benchmarks/annotate_throughput.py): fastText's C++ ``predict``, the heuristics
and the tokenizer. The Python glue around them (``to_pylist``, the newline replace, fastText's
per-line check and UTF-8 encode, label stripping) costs a few percent of the language-ID annotator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from udfs.heuristics import SIGNALS, heuristic_signals
from udfs.models import default_langid_model, load_fasttext, load_tokenizer

Columns = dict[str, pa.Array]
Annotator = Callable[["Batch"], Columns]


class Batch:
    """The text of one Arrow batch, with views computed at most once and shared by annotators."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self._single_line: list[str] | None = None

    @property
    def single_line(self) -> list[str]:
        # fastText predicts one line at a time and rejects strings containing a newline.
        if self._single_line is None:
            self._single_line = [t.replace("\n", " ") for t in self.texts]
        return self._single_line


def output_fields(spec: dict[str, Any]) -> list[pa.Field]:
    """Arrow fields that an annotator spec adds to each row."""
    kind, column = spec["kind"], spec.get("column", "")
    if kind in ("fasttext_domain", "language_id"):
        fields = [pa.field(column, pa.string()), pa.field(f"{column}_prob", pa.float32())]
        if spec.get("min_confidence"):  # the model's own label beside the routed one
            fields.append(pa.field(f"{column}_label", pa.string()))
        return fields
    if kind == "fasttext_quality":
        return [pa.field(column, pa.float32())]
    if kind == "heuristics":
        return [pa.field(name, pa.float64()) for name in spec.get("signals") or SIGNALS]
    if kind == "tokens":
        return [pa.field(column, pa.int64())]
    raise ValueError(f"unknown annotator kind {kind!r}")


def _strip_labels(labels: Sequence[Sequence[str]]) -> list[str]:
    return [row[0].removeprefix("__label__") if row else "" for row in labels]


UNKNOWN = "unknown"  # the label of a document below ``min_confidence``


def _top_label(spec: dict[str, Any], model_path: str) -> Annotator:
    """The top label and its probability; below ``min_confidence`` the label is ``unknown``."""
    model = load_fasttext(model_path)
    column = spec["column"]
    min_confidence = spec.get("min_confidence")

    def run(batch: Batch) -> Columns:
        labels, probs = model.predict(batch.single_line, k=1)
        top = np.fromiter((p[0] if len(p) else 0.0 for p in probs), np.float32, len(probs))
        # Typed: an empty batch must still give a string column, not Arrow's null type.
        names = _strip_labels(labels)
        if not min_confidence:
            return {column: pa.array(names, pa.string()), f"{column}_prob": pa.array(top)}
        routed = [UNKNOWN if p < min_confidence else n for n, p in zip(names, top.tolist(), strict=True)]
        return {
            column: pa.array(routed, pa.string()),
            f"{column}_prob": pa.array(top),
            f"{column}_label": pa.array(names, pa.string()),
        }

    return run


def _label_probability(spec: dict[str, Any]) -> Annotator:
    model = load_fasttext(spec["model"])
    target = f"__label__{spec['label']}"
    if target not in model.get_labels():
        raise ValueError(
            f"annotator {spec['name']}: label {spec['label']!r} is not one of the model's labels "
            f"{[lab.removeprefix('__label__') for lab in model.get_labels()]}"
        )
    k = len(model.get_labels())

    def run(batch: Batch) -> Columns:
        labels, probs = model.predict(batch.single_line, k=k)
        out = np.zeros(len(labels), np.float32)
        for i, (row_labels, row_probs) in enumerate(zip(labels, probs, strict=True)):
            if target in row_labels:  # C-level scans, not a Python loop over all k labels per row
                out[i] = row_probs[row_labels.index(target)]
        return {spec["column"]: pa.array(out)}

    return run


def _heuristics(spec: dict[str, Any]) -> Annotator:
    names = spec.get("signals") or list(SIGNALS)

    def run(batch: Batch) -> Columns:
        values = heuristic_signals(batch.texts)
        return {name: pa.array(np.asarray(values[name], dtype=np.float64)) for name in names}

    return run


def _tokens(spec: dict[str, Any]) -> Annotator:
    column, name = spec["column"], spec.get("tokenizer", "cl100k_base")
    if name == "whitespace":
        return lambda batch: {column: pa.array([len(t.split()) for t in batch.texts], pa.int64())}
    encoding = load_tokenizer(name)

    def run(batch: Batch) -> Columns:
        # One thread: Spark already runs one task per core.
        ids = encoding.encode_ordinary_batch(batch.texts, num_threads=1)
        return {column: pa.array([len(x) for x in ids], pa.int64())}

    return run


def build_annotator(spec: dict[str, Any]) -> Annotator:
    """Instantiate one annotator on this worker (models come from the per-process cache)."""
    kind = spec["kind"]
    if kind == "fasttext_domain":
        return _top_label(spec, spec["model"])
    if kind == "language_id":
        return _top_label(spec, spec.get("model") or default_langid_model())
    if kind == "fasttext_quality":
        return _label_probability(spec)
    if kind == "heuristics":
        return _heuristics(spec)
    if kind == "tokens":
        return _tokens(spec)
    raise ValueError(f"unknown annotator kind {kind!r}")


def output_schema(input_schema: pa.Schema, specs: Sequence[dict[str, Any]]) -> pa.Schema:
    """The input columns followed by every annotator's output columns."""
    fields = list(input_schema)
    for spec in specs:
        fields.extend(output_fields(spec))
    return pa.schema(fields)


def annotate_batches(
    batches: Iterator[pa.RecordBatch], specs: Sequence[dict[str, Any]], text_column: str
) -> Iterator[pa.RecordBatch]:
    """Add every annotator's columns to each batch (the body of a ``mapInArrow`` call)."""
    annotators = [build_annotator(spec) for spec in specs]
    for record_batch in batches:
        batch = Batch(record_batch.column(text_column).to_pylist())
        arrays = list(record_batch.columns)
        names = list(record_batch.schema.names)
        for annotate in annotators:
            for name, array in annotate(batch).items():
                names.append(name)
                arrays.append(array)
        yield pa.RecordBatch.from_arrays(arrays, names=names)
