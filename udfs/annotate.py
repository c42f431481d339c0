"""One pass over the text: every configured annotator scores the same Arrow batch.

The Spark side calls :func:`annotate_batches` through ``DataFrame.mapInArrow``. Each batch's text
crosses from the JVM once, is turned into a Python list once, and every annotator reads that list;
fastText ``predict`` and the tokenizer get whole batches. The annotators (:mod:`udfs.annotators`)
arrive in the closure as small configured objects; each builds its batch function once per task,
with its models from the per-process caches of :mod:`udfs.models`.

Where the time goes (benchmarks/annotate_throughput.py prints a per-annotator cost table): fastText's
C++ ``predict`` (language ID the most), the heuristics and the tokenizer. The heuristics score a
whole batch at once and the tokenizer counts in Rust without building token lists, so no annotator
runs Python per word and little per document. The Python glue around them (``to_pylist``, the
newline replace, building the output batch) costs well under 1% of the pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa

from udfs.annotators import Annotator, Batch


def output_schema(input_schema: pa.Schema, annotators: Sequence[Annotator]) -> pa.Schema:
    """The input columns followed by every annotator's output columns."""
    fields = list(input_schema)
    for annotator in annotators:
        fields.extend(annotator.output_fields())
    return pa.schema(fields)


def annotate_batches(
    batches: Iterator[pa.RecordBatch], annotators: Sequence[Annotator], text_column: str
) -> Iterator[pa.RecordBatch]:
    """Add every annotator's columns to each batch (the body of a ``mapInArrow`` call)."""
    functions = [annotator.batch_function() for annotator in annotators]
    for record_batch in batches:
        batch = Batch(record_batch.column(text_column).to_pylist())
        arrays = list(record_batch.columns)
        names = list(record_batch.schema.names)
        for annotate in functions:
            for name, array in annotate(batch).items():
                names.append(name)
                arrays.append(array)
        yield pa.RecordBatch.from_arrays(arrays, names=names)
