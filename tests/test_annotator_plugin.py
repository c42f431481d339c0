"""A new annotator kind from this module alone: one class, one registration, run end to end.

``CharEntropy`` is defined and registered here and nowhere else; config validation, the driver's
checks, the annotator hash, the output schema and Spark's Python workers (which cannot import this
module: it is pickled by value) all find it through the registry in ``udfs/annotators.py``.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.pipeline import annotate as annotate_job
from udfs import models
from udfs.annotators import Annotator, Batch, BatchFunction, Columns, OptionError, register


@register
class CharEntropy(Annotator):
    """Shannon entropy of a text's characters (float64), in units of log ``base``.

    ``ignore_file``: a UTF-8 text file whose characters are left out of the count (a file that
    travels to the workers, and is not a fastText model).
    """

    kind = "char_entropy"
    base: float = 2.0
    ignore_file: str | None = None

    def output_fields(self) -> list[pa.Field]:
        return [pa.field(self.column, pa.float64())]

    def files(self) -> dict[str, str]:
        return {"ignore_file": self.ignore_file} if self.ignore_file else {}

    def check(self) -> CharEntropy:
        if self.base <= 1:
            raise OptionError("base", f"must be greater than 1, got {self.base}")
        if self.ignore_file:
            try:
                with open(self.ignore_file, encoding="utf-8") as fh:
                    fh.read()
            except UnicodeDecodeError as err:
                raise OptionError("ignore_file", f"{self.ignore_file} is not UTF-8 text: {err}") from err
        return self

    def batch_function(self) -> BatchFunction:
        ignored = np.array([], np.uint32)
        if self.ignore_file:  # the worker's shipped copy
            with open(models.resolve_model_path(self.ignore_file), encoding="utf-8") as fh:
                ignored = np.frombuffer(fh.read().encode("utf-32-le"), np.uint32)
        column, log_base = self.column, math.log(self.base)

        def run(batch: Batch) -> Columns:
            out = np.empty(len(batch.texts), np.float64)
            for i, text in enumerate(batch.texts):
                codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
                _, counts = np.unique(codes[~np.isin(codes, ignored)], return_counts=True)
                p = counts / max(counts.sum(), 1)
                out[i] = float(-(p * np.log(p)).sum() / log_base) + 0.0  # + 0.0: no -0.0
            return {column: pa.array(out, pa.float64())}

        return run


def entropy_bits(text: str, ignore: str = "") -> float:
    """The same quantity, written independently: -Σ p log2 p over character frequencies."""
    counts = Counter(c for c in text if c not in ignore)
    total = sum(counts.values())
    return -sum(n / total * math.log2(n / total) for n in counts.values())


DOCS = {
    "one_char": "aaaaaaaa",  # 0 bits
    "two_even": "abababab",  # 1 bit
    "four_even": "abcd" * 5,  # 2 bits
    "skewed": "aaab",  # -(3/4 log 3/4 + 1/4 log 1/4) = 0.8112781244591328
    "prose": "The committee approved the budget after a long debate about schools.",
    "unicode": "caf\u00e9 \u00fcber na\u00efve \u6f22\u5b57 \U0001f642\U0001f642",
}


def make_config(tmp_path, annotators, **annotate) -> PipelineConfig:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in DOCS.items())
    (folder / "part-0.jsonl").write_text(lines)
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "warehouse"),
            "annotate": {"input": {"path": str(folder)}, "annotators": annotators, **annotate},
        },
    )


def test_a_registered_annotator_runs_end_to_end_into_the_table(spark, tmp_path):
    annotators = [
        {"kind": "tokens", "column": "n_words", "tokenizer": "whitespace"},
        {"kind": "char_entropy", "name": "entropy", "column": "char_entropy"},
    ]
    config = make_config(tmp_path, annotators)
    summary = annotate_job.run_annotate(spark, config)
    assert (summary.input_rows, summary.annotated, summary.quarantined) == (len(DOCS), len(DOCS), 0)

    table = spark.read.format("delta").load(config.table_path("annotated"))
    assert dict(table.dtypes)["char_entropy"] == "double"
    rows = {r["id"]: r for r in table.collect()}
    assert rows["one_char"]["char_entropy"] == 0.0
    assert rows["two_even"]["char_entropy"] == pytest.approx(1.0, abs=1e-12)
    assert rows["four_even"]["char_entropy"] == pytest.approx(2.0, abs=1e-12)
    assert rows["skewed"]["char_entropy"] == pytest.approx(0.8112781244591328, abs=1e-12)
    for doc_id, text in DOCS.items():
        assert rows[doc_id]["char_entropy"] == pytest.approx(entropy_bits(text), abs=1e-12), doc_id
        assert rows[doc_id]["n_words"] == len(text.split())
    # The annotator's settings are its provenance and part of the annotator hash.
    (specs,) = {json.dumps(c["annotators"]) for c in _commit_metadata(spark, config)}
    assert {"kind": "char_entropy", "name": "entropy", "column": "char_entropy", "base": 2.0}.items() <= (
        json.loads(specs)[1].items()
    )


def test_its_keys_are_validated_and_its_file_is_shipped_checked_and_hashed(spark, tmp_path):
    with pytest.raises(ConfigError, match=r"annotate.annotators\[0\].base: expected float, got str 'two'"):
        make_config(tmp_path, [{"kind": "char_entropy", "column": "e", "base": "two"}])
    with pytest.raises(
        ConfigError, match=r"unknown config key annotate.annotators\[0\].bse \(allowed .*base"
    ):
        make_config(tmp_path, [{"kind": "char_entropy", "column": "e", "bse": 10}])
    with pytest.raises(ConfigError, match=r"annotate.annotators\[0\].base: must be greater than 1, got 1.0"):
        annotate_job.run_annotate(
            spark, make_config(tmp_path, [{"kind": "char_entropy", "column": "e", "base": 1}])
        )

    ignore = tmp_path / "ignore.txt"
    ignore.write_bytes(b"\xff\xfe not text")
    annotators = [{"kind": "char_entropy", "column": "e", "ignore_file": str(ignore)}]
    config = make_config(tmp_path, annotators)
    with pytest.raises(ConfigError, match=r"annotate.annotators\[0\].ignore_file: .*ignore.txt is not UTF-8"):
        annotate_job.run_annotate(spark, config)  # the class's own check, not a fastText load
    assert not (tmp_path / "warehouse").exists()

    ignore.write_text("a ")  # spaces and the letter a are not counted
    hash_before = annotate_job.annotator_hash(annotate_job.annotator_specs(config))
    annotate_job.run_annotate(spark, config)
    rows = {
        r["id"]: r["e"] for r in spark.read.format("delta").load(config.table_path("annotated")).collect()
    }
    for doc_id, text in DOCS.items():
        assert rows[doc_id] == pytest.approx(entropy_bits(text, ignore="a "), abs=1e-12), doc_id
    assert rows["two_even"] == 0.0 and rows["four_even"] == pytest.approx(math.log2(3), abs=1e-12)

    ignore.write_text("b")  # another file content: another annotator hash
    assert annotate_job.annotator_hash(annotate_job.annotator_specs(config)) != hash_before
    with pytest.raises(annotate_job.AnnotatorsChanged):
        annotate_job.run_annotate(spark, config)


def _commit_metadata(spark, config) -> list[dict]:
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, config.table_path("annotated")).history().collect()
    metadata = [json.loads(r["userMetadata"]) for r in history if r["userMetadata"]]
    return [m for m in metadata if "annotators" in m]
