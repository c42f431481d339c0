"""One pass over the text: every configured annotator scores the same Arrow batch.

The Spark side calls :func:`annotate_batches` through ``DataFrame.mapInArrow``. Each batch's text
crosses from the JVM once; each view of it that an annotator needs (Python strings, fastText input
lines) is built at most once per batch and shared; fastText ``predict`` and the tokenizer get whole
batches. Annotator specs are plain dicts so the closure pickles small; models are loaded on the
worker (see :mod:`udfs.models`).

Hot path (see benchmarks/annotate_throughput.py): fastText's own C++ ``predict`` dominates. The
glue around it stays vectorised: fastText input lines are made as UTF-8 ``bytes`` straight from the
Arrow buffer (no ``str`` decode and re-encode, no per-line check in fastText's Python wrapper), the
Python ``str`` list is only built when an annotator reads it, and label/probability outputs avoid
per-row Python loops where they can.
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
    """The text of one Arrow batch, with views computed at most once and shared by annotators.

    Build it from the Python strings (``Batch(texts)``) or from the Arrow text column
    (``Batch(column=array)``); either way every view below is available.
    """

    def __init__(self, texts: list[str] | None = None, *, column: pa.Array | None = None) -> None:
        if texts is None and column is None:
            raise TypeError("Batch needs texts or column")
        self._texts = texts
        self._column = column
        self._single_line: list[str] | None = None
        self._fasttext_lines: list[bytes] | None = None

    @property
    def texts(self) -> list[str]:
        if self._texts is None:
            assert self._column is not None
            self._texts = self._column.to_pylist()
        return self._texts

    @property
    def single_line(self) -> list[str]:
        # fastText predicts one line at a time and rejects strings containing a newline.
        if self._single_line is None:
            self._single_line = [t.replace("\n", " ") for t in self.texts]
        return self._single_line

    @property
    def fasttext_lines(self) -> list[bytes]:
        """``single_line`` as the UTF-8 lines fastText's C++ ``predict`` reads (each ends in ``\\n``).

        Exactly what ``model.predict(batch.single_line)`` hands to fastText, made without decoding
        the text into ``str`` when the Arrow column is at hand.
        """
        if self._fasttext_lines is None:
            if self._column is not None and self._texts is None:
                raw = self._column.cast(pa.binary()).to_pylist()
            else:
                raw = [t.encode() for t in self.texts]
            self._fasttext_lines = [b.replace(b"\n", b" ") + b"\n" for b in raw]
        return self._fasttext_lines


def _predict(model: Any, batch: Batch, k: int) -> tuple[list[list[str]], list[Any]]:
    """``model.predict(batch.single_line, k=k)``, fed the batch's prepared UTF-8 lines."""
    multiline = getattr(getattr(model, "f", None), "multilinePredict", None)
    if multiline is None:  # a fastText build without the pybind object: the public API
        return model.predict(batch.single_line, k=k)
    return multiline(batch.fasttext_lines, k, 0.0, "strict")


def output_fields(spec: dict[str, Any]) -> list[pa.Field]:
    """Arrow fields that an annotator spec adds to each row."""
    kind, column = spec["kind"], spec.get("column", "")
    if kind in ("fasttext_domain", "language_id"):
        return [pa.field(column, pa.string()), pa.field(f"{column}_prob", pa.float32())]
    if kind == "fasttext_quality":
        return [pa.field(column, pa.float32())]
    if kind == "heuristics":
        return [pa.field(name, pa.float64()) for name in spec.get("signals") or SIGNALS]
    if kind == "tokens":
        return [pa.field(column, pa.int64())]
    raise ValueError(f"unknown annotator kind {kind!r}")


def _strip_labels(labels: Sequence[Sequence[str]]) -> list[str]:
    return [row[0].removeprefix("__label__") if row else "" for row in labels]


def _top_label(spec: dict[str, Any], model_path: str) -> Annotator:
    model = load_fasttext(model_path)
    column = spec["column"]
    # fastText returns labels as "__label__xx": strip each distinct label once, not once per row.
    stripped = {label: label.removeprefix("__label__") for label in model.get_labels()}

    def run(batch: Batch) -> Columns:
        labels, probs = _predict(model, batch, 1)
        try:
            names = [stripped[row[0]] if row else "" for row in labels]
        except KeyError:  # a label outside get_labels(): cannot happen, but keep the exact result
            names = _strip_labels(labels)
        top = np.fromiter((p[0] if len(p) else 0.0 for p in probs), np.float32, len(probs))
        return {column: pa.array(names, pa.string()), f"{column}_prob": pa.array(top)}

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
        labels, probs = _predict(model, batch, k)
        out = np.zeros(len(labels), np.float32)
        for i, (row_labels, row_probs) in enumerate(zip(labels, probs, strict=True)):
            if target in row_labels:  # C-level scans instead of a Python loop over the labels
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
        batch = Batch(column=record_batch.column(text_column))
        arrays = list(record_batch.columns)
        names = list(record_batch.schema.names)
        for annotate in annotators:
            for name, array in annotate(batch).items():
                names.append(name)
                arrays.append(array)
        yield pa.RecordBatch.from_arrays(arrays, names=names)
