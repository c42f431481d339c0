"""The annotate job on real Spark, Delta, fastText and tokenizer: values, quarantine, reruns."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from quadmix_spark.cli import main
from quadmix_spark.config import ConfigError, PipelineConfig, from_dict
from quadmix_spark.pipeline import annotate as annotate_job
from quadmix_spark.pipeline.annotate import (
    AnnotatorsChanged,
    CountsDoNotReconcile,
    QuarantineShareExceeded,
    annotate_frame,
    run_annotate,
)
from quadmix_spark.spark import tables
from udfs import models
from udfs.annotators import FastTextDomain, FastTextQuality

HANDMADE = [
    b'{"id": "en1", "text": "The committee approved the budget after a long debate about schools."}',
    '{"id": "fr1", "text": "Le conseil municipal a voté le budget après un long débat."}'.encode(),
    b'{"id": "de1", "text": "Der Gemeinderat hat nach langer Diskussion den Haushalt beschlossen."}',
    b"this line is not json",
    b'{"id": "bad8", "text": "caf\xe9 au lait"}',
    b'{"id": "nulltext", "text": null}',
    b'{"id": "notext"}',
    b'{"id": "num", "text": 12345}',
    b'{"id": "empty", "text": "   "}',
    b'{"text": "a document without an id"}',
    b'{"id": "big", "text": "' + b"x" * 600 + b'"}',
    b'{"id": "dup", "text": "first copy of a duplicated id"}',
    b'{"id": "dup", "text": "second copy of a duplicated id"}',
]
EXPECTED_REASONS = {
    "malformed_json": 1,
    "invalid_utf8": 1,
    "missing_text": 2,
    "non_string_text": 1,
    "empty_text": 1,
    "missing_id": 1,
    "too_large": 1,
    "duplicate_id": 1,
}


def make_config(
    tmp_path, input_path, annotators, fmt="jsonl", id_column="id", **input_keys
) -> PipelineConfig:
    return from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "warehouse"),
            "annotate": {
                "input": {"path": str(input_path), "format": fmt, "id_column": id_column, **input_keys},
                "max_text_bytes": 500,
                # HANDMADE is mostly bad records on purpose: 9 of its 13 are quarantined.
                "max_quarantine_fraction": 0.75,
                "annotators": annotators,
            },
        },
    )


LANG_AND_TOKENS = [
    {"kind": "language_id", "column": "language"},
    {"kind": "tokens", "column": "n_tokens", "tokenizer": "cl100k_base"},
    {"kind": "heuristics", "signals": ["word_count", "dup_line_frac"]},
]


@pytest.fixture()
def handmade(tmp_path):
    path = tmp_path / "in"
    path.mkdir()
    (path / "part-0.jsonl").write_bytes(b"\n".join(HANDMADE) + b"\n")
    return path


def test_quarantine_reasons_and_reconciliation(spark, tmp_path, handmade):
    config = make_config(tmp_path, handmade, LANG_AND_TOKENS)
    summary = run_annotate(spark, config)
    assert summary.input_rows == len(HANDMADE)
    assert summary.quarantined_by_reason == EXPECTED_REASONS
    assert summary.annotated == 4  # en1, fr1, de1 and one of the two "dup" records
    assert summary.skipped_existing == 0
    assert summary.quarantined == sum(EXPECTED_REASONS.values())

    quarantine = spark.read.format("delta").load(config.table_path("quarantine"))
    assert quarantine.count() == sum(EXPECTED_REASONS.values())
    raw_bad = quarantine.where("reason = 'invalid_utf8'").select("raw").first()[0]
    assert "caf" in raw_bad  # the raw record is kept, not just the reason


def test_annotator_values(spark, tmp_path, handmade):
    config = make_config(tmp_path, handmade, LANG_AND_TOKENS)
    run_annotate(spark, config)
    rows = {r["id"]: r for r in spark.read.format("delta").load(config.table_path("annotated")).collect()}
    assert rows["en1"]["language"] == "en" and rows["en1"]["language_prob"] > 0.5
    assert rows["fr1"]["language"] == "fr"
    assert rows["de1"]["language"] == "de"
    assert rows["en1"]["word_count"] == 11
    assert rows["en1"]["dup_line_frac"] == 0.0
    # cl100k_base: "The committee approved the budget after a long debate about schools." = 12 tokens
    assert rows["en1"]["n_tokens"] == 12
    # Of two records with one id, the kept one does not depend on file order.
    assert rows["dup"]["text"] in {
        "first copy of a duplicated id",
        "second copy of a duplicated id",
    }
    assert rows["en1"]["doc_key"] == spark.range(1).select(F.xxhash64(F.lit("en1"))).first()[0]


def test_rerun_is_idempotent(spark, tmp_path, handmade):
    config = make_config(tmp_path, handmade, LANG_AND_TOKENS)
    first = run_annotate(spark, config)
    table = spark.read.format("delta").load(config.table_path("annotated"))
    before = sorted((r["id"], r["text"], r["n_tokens"]) for r in table.collect())

    second = run_annotate(spark, config)
    after_table = spark.read.format("delta").load(config.table_path("annotated"))
    after = sorted((r["id"], r["text"], r["n_tokens"]) for r in after_table.collect())
    assert after == before
    assert second.annotated == 0 and second.skipped_existing == first.annotated == 4
    assert second.input_rows == len(HANDMADE)
    assert second.quarantined_by_reason == EXPECTED_REASONS  # merged, not re-added, but counted
    quarantine = spark.read.format("delta").load(config.table_path("quarantine"))
    assert quarantine.count() == sum(EXPECTED_REASONS.values())

    # A nightly refresh with one new document scores only that document.
    (handmade / "part-1.jsonl").write_text(json.dumps({"id": "new", "text": "A new page."}) + "\n")
    third = run_annotate(spark, config)
    assert third.input_rows == len(HANDMADE) + 1
    assert third.annotated == 1 and third.skipped_existing == first.annotated
    ids = [r["id"] for r in spark.read.format("delta").load(config.table_path("annotated")).collect()]
    assert len(ids) == len(set(ids)) == first.annotated + 1


def test_parquet_input_with_content_hash_ids(spark, tmp_path):
    path = str(tmp_path / "pq")
    spark.createDataFrame(
        [("alpha beta gamma",), ("alpha beta gamma",), ("delta epsilon",)], "body string"
    ).write.parquet(path)
    config = from_dict(
        PipelineConfig,
        {
            "warehouse": str(tmp_path / "wh"),
            "annotate": {
                "input": {
                    "path": path,
                    "format": "parquet",
                    "id_column": None,
                    "text_column": "body",
                },
                "annotators": [{"kind": "tokens", "column": "n", "tokenizer": "whitespace"}],
            },
        },
    )
    summary = run_annotate(spark, config)
    assert summary.annotated == 2 and summary.quarantined_by_reason == {"duplicate_id": 1}
    rows = spark.read.format("delta").load(config.table_path("annotated")).orderBy("n").collect()
    assert [r["n"] for r in rows] == [2, 3]
    assert len(rows[0]["id"]) == 64  # SHA-256 hex of the text


SPORTS = [
    "team",
    "goal",
    "match",
    "player",
    "coach",
    "score",
    "league",
    "season",
    "win",
    "stadium",
    "referee",
]
FINANCE = ["bank", "loan", "interest", "rates", "market", "stock", "bond", "credit", "investor", "profit"]


def train_topic_model(path, dim=32, seed=0) -> str:
    """A small fastText sports/finance classifier saved at ``path``."""
    import fasttext

    rng = random.Random(seed)
    lines = []
    for _ in range(300):
        lines.append("__label__sports " + " ".join(rng.choice(SPORTS) for _ in range(12)))
        lines.append("__label__finance " + " ".join(rng.choice(FINANCE) for _ in range(12)))
    train = path.parent / f"{path.name}.train.txt"
    train.write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(
        str(train), epoch=10, lr=0.5, dim=dim, wordNgrams=2, minCount=2, verbose=0, thread=1, seed=seed
    )
    model.save_model(str(path))
    return str(path)


def test_fasttext_annotators_in_one_pass(spark, tmp_path):
    model_path = train_topic_model(tmp_path / "topic.bin")

    df = spark.createDataFrame(
        [("a", "the team scored a late goal"), ("b", "the bank cut interest rates\nagain")],
        "id string, text string",
    )
    annotators = [
        FastTextDomain(name="domain", column="domain", model=model_path),
        FastTextQuality(name="q", column="p_fin", model=model_path, label="finance"),
    ]
    rows = {r["id"]: r for r in annotate_frame(df, annotators).collect()}
    assert rows["a"]["domain"] == "sports" and rows["b"]["domain"] == "finance"
    assert rows["a"]["p_fin"] < 0.5 < rows["b"]["p_fin"]
    assert rows["b"]["domain_prob"] == pytest.approx(rows["b"]["p_fin"], abs=1e-6)


def test_missing_model_fails_before_spark_work(spark, tmp_path, handmade):
    config = make_config(
        tmp_path, handmade, [{"kind": "fasttext_domain", "column": "d", "model": "nope/model.bin"}]
    )
    with pytest.raises(ConfigError, match=r"annotate.annotators\[0\].model: model file not found"):
        run_annotate(spark, config)


def test_missing_input_and_column_fail_fast(spark, tmp_path):
    config = make_config(tmp_path, tmp_path / "absent", LANG_AND_TOKENS)
    with pytest.raises(ConfigError, match="annotate.input.path: .* does not exist"):
        run_annotate(spark, config)
    path = str(tmp_path / "pq")
    spark.createDataFrame([("x",)], "body string").write.parquet(path)
    config = make_config(tmp_path, path, LANG_AND_TOKENS, fmt="parquet")
    with pytest.raises(ConfigError, match="annotate.input.text_column: column 'text' not in"):
        run_annotate(spark, config)


def _drop_en1(df, specs):
    """An annotation step that loses a row, as a buggy annotator would."""
    return annotate_frame(df, specs).where(F.col("id") != "en1")


def test_a_lost_row_fails_the_run(spark, tmp_path, handmade, monkeypatch, capsys):
    # Each term is counted from the data, so a row lost between the split and the write shows up.
    config = make_config(tmp_path, handmade, LANG_AND_TOKENS)
    lost = r"13 input rows != 3 annotated \+ 0 already annotated \+ 9 quarantined"
    with pytest.raises(CountsDoNotReconcile, match=lost):
        run_annotate(spark, config, annotate_step=_drop_en1)

    # The command line exits non-zero with the same message (the same step, swapped in the module).
    monkeypatch.setattr(annotate_job, "annotate_frame", _drop_en1)
    conf_file = tmp_path / "lossy.yaml"
    raw = {
        "warehouse": str(tmp_path / "warehouse2"),
        "spark": {"shuffle_partitions": 4},
        "annotate": {
            "input": {"path": str(handmade), "format": "jsonl"},
            "max_text_bytes": 500,
            "max_quarantine_fraction": 0.75,
            "annotators": LANG_AND_TOKENS,
        },
    }
    conf_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as exit_info:
        main(["annotate", "--config", str(conf_file)])
    assert "counts do not reconcile: 13 input rows != 3 annotated" in str(exit_info.value.code)
    assert "DOES NOT RECONCILE" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("input_keys", "message"),
    [
        ({"text_column": "txt"}, r"text_column: no record .* the key 'txt' \(keys seen: id, text, url\)"),
        ({"id_column": "ID"}, r"annotate.input.id_column: no record .* has the key 'ID'"),
        ({"keep_columns": ["url", "langauge"]}, r"annotate.input.keep_columns: .* has the key 'langauge'"),
    ],
)
def test_a_misspelt_jsonl_column_fails_before_the_job(spark, tmp_path, input_keys, message):
    path = tmp_path / "in"
    path.mkdir()
    docs = [{"id": f"d{i}", "text": f"document number {i}", "url": f"https://x/{i}"} for i in range(20)]
    (path / "part-0.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    config = make_config(tmp_path, path, LANG_AND_TOKENS, **input_keys)
    with pytest.raises(ConfigError, match=message):
        run_annotate(spark, config)
    assert not (tmp_path / "warehouse").exists()  # nothing was written


def test_a_run_quarantining_too_much_fails_before_annotating(spark, tmp_path, handmade):
    # 9 of HANDMADE's 13 records (69%) are quarantined: more than the default share of 0.5.
    config = make_config(tmp_path, handmade, LANG_AND_TOKENS)
    config.annotate.max_quarantine_fraction = 0.5
    with pytest.raises(QuarantineShareExceeded, match=r"9 of 13 input records \(69.2%\) were quarantined"):
        run_annotate(spark, config)
    assert not (tmp_path / "warehouse" / "annotated").exists()


def test_unicode_blank_text_is_empty(spark, tmp_path):
    blank = {
        "tabs_newlines": "\t\n\r\n \t",
        "nbsp_ideographic": "\u00a0\u3000\u2028\u2009",
        "zero_width": "\u200b\u200c\u200d\u2060\ufeff\u00ad",
        "mixed": " \u00a0\t\u200b\n\u3000",
        "long_blank": " \u200b" * 200,  # longer than the prefix searched first
    }
    kept = {
        "padded": "\u00a0word\u3000",
        "late_word": " \u3000" * 100 + "word",  # blank beyond the prefix: the whole text decides
        "64th": " " * 63 + "x",
        "65th": " " * 64 + "x",
        "emoji": "\U0001f642",
        "plain": "ok text",
        "cjk": "\u3000\u6f22\u5b57",
    }
    path = tmp_path / "in"
    path.mkdir()
    records = [{"id": k, "text": v} for k, v in {**blank, **kept}.items()]
    (path / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = make_config(tmp_path, path, [{"kind": "tokens", "column": "n", "tokenizer": "whitespace"}])
    summary = run_annotate(spark, config)
    assert summary.quarantined_by_reason == {"empty_text": len(blank)}
    quarantine = spark.read.format("delta").load(config.table_path("quarantine"))
    assert sorted(r["id"] for r in quarantine.collect()) == sorted(blank)
    annotated = spark.read.format("delta").load(config.table_path("annotated"))
    assert sorted(r["id"] for r in annotated.collect()) == sorted(kept)


def test_subfolders_are_read_and_hidden_files_fail_or_are_counted(spark, tmp_path):
    path = tmp_path / "in"
    for rel in ("a.jsonl", "sub/b.jsonl", "sub/deeper/c.jsonl", "_x.jsonl", ".y.jsonl", "_tmp/d.jsonl"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        doc = {"id": rel, "text": f"the document in {rel}"}
        (path / rel).write_text(json.dumps(doc) + "\n")
    (path / "_SUCCESS").write_text("")  # Spark's own marker: neither read nor reported
    tokens = [{"kind": "tokens", "column": "n", "tokenizer": "whitespace"}]
    config = make_config(tmp_path, path, tokens)
    with pytest.raises(
        ConfigError, match=r"annotate.input.path: 3 file\(s\) under .* would never be read"
    ) as err:
        run_annotate(spark, config)
    for rel in ("_x.jsonl", ".y.jsonl", "_tmp/d.jsonl"):
        assert str(path / rel) in str(err.value)
    assert "_SUCCESS" not in str(err.value)

    config.annotate.input.skip_hidden_files = True
    summary = run_annotate(spark, config)
    assert summary.skipped_hidden_files == 3 and summary.input_rows == 3
    ids = {r["id"] for r in spark.read.format("delta").load(config.table_path("annotated")).collect()}
    assert ids == {"a.jsonl", "sub/b.jsonl", "sub/deeper/c.jsonl"}


def test_parquet_in_plain_subfolders_is_read_and_partitions_still_are(spark, tmp_path):
    tokens = [{"kind": "tokens", "column": "n", "tokenizer": "whitespace"}]
    schema = "id string, text string, lang string"
    plain = tmp_path / "plain"
    spark.createDataFrame([("a", "alpha beta", "en")], schema).write.parquet(str(plain / "x" / "y"))
    spark.createDataFrame([("b", "gamma", "de")], schema).write.parquet(str(plain / "z"))
    summary = run_annotate(spark, make_config(tmp_path / "1", plain, tokens, "parquet"))
    assert summary.input_rows == 2 and summary.annotated == 2

    # key=value folders stay partitions: their column is inferred and can be kept.
    parted = tmp_path / "parted"
    rows = [("c", "delta", "en"), ("d", "epsilon zeta", "de")]
    spark.createDataFrame(rows, schema).write.partitionBy("lang").parquet(str(parted))
    config = make_config(tmp_path / "2", parted, tokens, "parquet", keep_columns=["lang"])
    assert run_annotate(spark, config).annotated == 2
    table = spark.read.format("delta").load(config.table_path("annotated"))
    assert {(r["id"], r["lang"]) for r in table.collect()} == {("c", "en"), ("d", "de")}


TOKENS = [{"kind": "tokens", "column": "n", "tokenizer": "whitespace"}]


def _jsonl(path, docs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in docs))


def _tables(spark, config):
    annotated = spark.read.format("delta").load(config.table_path("annotated"))
    quarantine = spark.read.format("delta").load(config.table_path("quarantine"))
    return (
        sorted((r["id"], r["text"]) for r in annotated.collect()),
        sorted((r["id"], r["reason"], json.loads(r["raw"])["text"]) for r in quarantine.collect()),
    )


ORIGINAL = [(f"d{i}", f"document {i} as first published") for i in range(40)]
CHANGED = [(f"d{i}", f"document {i} revised later") for i in range(20)]
NEW = [(f"n{i}", f"a new document {i}") for i in range(10)]


@pytest.mark.parametrize("names", [("a_orig", "b_new"), ("b_orig", "a_new")])
def test_a_changed_text_keeps_the_annotated_row_whatever_the_file_order(spark, tmp_path, names):
    # A refresh over the original file and a new one holding 20 of its ids with another text, 10 of
    # them unchanged and 10 new ids: the table keeps its rows (first seen wins), the new texts are
    # quarantined as duplicates, the unchanged copies too, and no quarantined record is annotated.
    orig, new = (tmp_path / "in" / f"{n}.jsonl" for n in names)
    _jsonl(orig, ORIGINAL)
    config = make_config(tmp_path, tmp_path / "in", TOKENS)
    assert run_annotate(spark, config).annotated == 40
    _jsonl(new, CHANGED + ORIGINAL[20:30] + NEW)

    summary = run_annotate(spark, config)
    assert summary.input_rows == 80
    assert (summary.annotated, summary.skipped_existing, summary.quarantined) == (10, 40, 30)
    assert summary.quarantined_by_reason == {"duplicate_id": 30}
    annotated, quarantined = _tables(spark, config)
    assert annotated == sorted(ORIGINAL + NEW)
    assert sorted((i, t) for i, _, t in quarantined) == sorted(CHANGED + ORIGINAL[20:30])
    # The same tables whatever the files are called (their order), checked by the other parameter.
    assert quarantined == sorted((i, "duplicate_id", t) for i, t in CHANGED + ORIGINAL[20:30])


@pytest.mark.parametrize(
    ("policy", "summary_counts", "table", "reasons"),
    [
        ("keep", (10, 40, 0, 20, 0), ORIGINAL + NEW, {}),
        ("replace", (30, 20, 0, 0, 20), CHANGED + ORIGINAL[20:] + NEW, {}),
        ("quarantine", (10, 20, 20, 0, 0), ORIGINAL + NEW, {"changed_text": 20}),
    ],
)
def test_on_changed_text_decides_what_a_rewritten_record_does(
    spark, tmp_path, policy, summary_counts, table, reasons, capsys
):
    # The source file is rewritten in place: 20 of its 40 texts changed, 10 ids added.
    path = tmp_path / "in" / "part-0.jsonl"
    _jsonl(path, ORIGINAL)
    config = make_config(tmp_path, path.parent, TOKENS)
    config.annotate.on_changed_text = policy
    run_annotate(spark, config)
    _jsonl(path, CHANGED + ORIGINAL[20:] + NEW)

    summary = run_annotate(spark, config)
    counts = (summary.annotated, summary.skipped_existing, summary.quarantined)
    assert counts + (summary.changed_text_kept, summary.replaced) == summary_counts
    assert summary.input_rows == 50 and summary.quarantined_by_reason == reasons
    annotated, quarantined = _tables(spark, config)
    assert annotated == sorted(table)
    assert [(i, t) for i, r, t in quarantined] == (sorted(CHANGED) if reasons else [])
    if policy == "keep":
        assert "already annotated with another text, kept the table's: 20" in annotate_job.format_summary(
            summary
        )

    # A rerun changes nothing: the table now holds each id's chosen text.
    again = run_annotate(spark, config)
    assert again.annotated == 0 and again.quarantined == summary.quarantined
    assert _tables(spark, config) == (annotated, quarantined)


def test_the_quarantine_key_does_not_depend_on_how_the_path_is_spelled(spark, tmp_path, monkeypatch):
    folder = tmp_path / "corpus"
    docs = [("ok1", "a fine document"), ("ok2", "another fine one"), ("blank", "  "), ("big", "x" * 600)]
    _jsonl(folder / "part-0.jsonl", docs)
    (tmp_path / "link").symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    spellings = [str(tmp_path / "link"), str(folder / "part-0.jsonl"), "link/part-0.jsonl", "corpus/"]
    keys = set()
    for spelling in spellings:
        config = make_config(tmp_path, spelling, TOKENS)
        assert run_annotate(spark, config).quarantined == 2
        quarantine = spark.read.format("delta").load(config.table_path("quarantine")).collect()
        keys |= {r["record_key"] for r in quarantine}
        assert len(quarantine) == 2, spelling  # the same two records, never added again

    # Parquet: a partitioned folder, then one of its files (read alone: no partition column).
    parted = tmp_path / "parted"
    rows = [("p1", "a parquet document", "de"), ("p2", "", "de")]
    frame = spark.createDataFrame(rows, "id string, text string, lang string").coalesce(1)
    frame.write.partitionBy("lang").parquet(str(parted))
    (file,) = (parted / "lang=de").glob("*.parquet")
    for spelling in (parted, file):
        config = make_config(tmp_path / "pq", spelling, TOKENS, "parquet")
        assert run_annotate(spark, config).quarantined_by_reason == {"empty_text": 1}
        assert spark.read.format("delta").load(config.table_path("quarantine")).count() == 1


def test_an_incremental_run_refuses_a_table_scored_by_other_annotators(spark, tmp_path, handmade):
    model = train_topic_model(tmp_path / "topic_v.bin")
    annotators = [*TOKENS, {"kind": "fasttext_domain", "column": "domain", "model": model}]
    config = make_config(tmp_path, handmade, annotators)
    run_annotate(spark, config)
    table = spark.read.format("delta").load(config.table_path("annotated"))
    (old_hash,) = {r["annotator_hash"] for r in table.collect()}
    written = tables.version(spark, config.table_path("annotated"))

    train_topic_model(tmp_path / "topic_v.bin", dim=16, seed=1)  # a retrained model, same file name
    new_hash = annotate_job.annotator_hash(annotate_job.annotator_specs(config))
    assert new_hash != old_hash
    with pytest.raises(
        AnnotatorsChanged, match=rf"hash {old_hash}, but .* hash to {new_hash}.*--mode overwrite"
    ):
        run_annotate(spark, config)
    assert tables.version(spark, config.table_path("annotated")) == written  # nothing was written

    assert run_annotate(spark, config, mode="overwrite").annotated == 4
    table = spark.read.format("delta").load(config.table_path("annotated"))
    assert {r["annotator_hash"] for r in table.collect()} == {new_hash}


def test_low_confidence_domains_are_counted_and_routed_to_unknown(spark, tmp_path, monkeypatch):
    docs = [
        ("s1", "the team scored a late goal"),
        ("s2", "the coach praised the player after the match"),
        ("f1", "the bank cut interest rates"),
        ("c1", "copyright notice permission is hereby granted"),
        ("c2", "lorem ipsum dolor sit amet"),
    ]
    _jsonl(tmp_path / "in" / "part-0.jsonl", docs)
    model = train_topic_model(tmp_path / "topic_low.bin")
    annotators = [*TOKENS, {"kind": "fasttext_domain", "column": "domain", "model": model}]
    config = make_config(tmp_path, tmp_path / "in", annotators)
    config.annotate.min_domain_confidence = 0.8
    loads = Counter()

    real = models.fasttext_probe

    def counted(path):  # the real loader, counted: a domain model can be hundreds of MB
        loads[path] += 1
        return real(path)

    monkeypatch.setattr(models, "fasttext_probe", counted)
    summary = run_annotate(spark, config)
    assert loads == {model: 1}  # the driver loads it once: the check, the summary's labels

    rows = {r["id"]: r for r in spark.read.format("delta").load(config.table_path("annotated")).collect()}
    assert {i: r["domain"] for i, r in rows.items()} == {
        "s1": "sports",
        "s2": "sports",
        "f1": "finance",
        "c1": "unknown",
        "c2": "unknown",
    }
    assert rows["c1"]["domain_prob"] < 0.8 <= rows["s1"]["domain_prob"]
    assert rows["s1"]["domain_label"] == "sports"  # the model's label stays beside the routed one
    assert summary.docs_by_domain == {"finance": 1, "sports": 2, "unknown": 2}
    # Counted by the model's label: both fall under the label it gave them.
    assert summary.low_confidence_by_domain == Counter(rows[i]["domain_label"] for i in ("c1", "c2"))
    assert "low-confidence" in annotate_job.format_summary(summary)


BIG_1 = "12345678901234567890123456789012345678901"  # 41 digits: beyond DECIMAL(38), a double to Spark
BIG_2 = "12345678901234567890123456789012345678902"


def test_ids_keep_their_exact_text(spark, tmp_path):
    lines = [
        f'{{"id": {BIG_1}, "text": "the first long id"}}',
        f'{{"id": {BIG_2}, "text": "the second long id"}}',
        '{"id": 7, "text": "seven as a number"}',
        '{"id": "7", "text": "seven as a string"}',  # the same id: one of the two is a duplicate
        '{"id": "x", "text": "a plain string id"}',
        '{"id": 1.5, "text": "a fraction"}',
        '{"id": 1e3, "text": "an exponent"}',
        '{"id": true, "text": "a boolean"}',
        '{"id": {"a": 1}, "text": "an object"}',
    ]
    path = tmp_path / "in" / "part-0.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    config = make_config(tmp_path, path.parent, TOKENS)
    summary = run_annotate(spark, config)
    assert summary.quarantined_by_reason == {"invalid_id": 4, "duplicate_id": 1}
    annotated = spark.read.format("delta").load(config.table_path("annotated"))
    assert sorted(r["id"] for r in annotated.collect()) == sorted([BIG_1, BIG_2, "7", "x"])

    # Parquet ids are typed: a floating-point id column is refused before any Spark job.
    pq = str(tmp_path / "pq")
    spark.createDataFrame([(1.0, "text")], "id double, text string").write.parquet(pq)
    with pytest.raises(ConfigError, match="annotate.input.id_column 'id' has type double"):
        run_annotate(spark, make_config(tmp_path / "2", pq, TOKENS, "parquet"))


def test_a_record_too_large_to_parse_is_too_large(spark, tmp_path):
    # Spark parses a JSON line into a variant of at most 16 MiB: a longer one used to be malformed_json.
    path = tmp_path / "in" / "part-0.jsonl"
    _jsonl(path, [("small", "a small document"), ("huge", "word " * (17 * 2**20 // 5))])
    summary = run_annotate(spark, make_config(tmp_path, path.parent, TOKENS))
    assert summary.quarantined_by_reason == {"too_large": 1}
    assert summary.annotated == 1


def test_invalid_utf8_is_kept_as_bytes_and_the_quarantine_reads_in_arrow(spark, tmp_path, handmade):
    import pyarrow.parquet as pq

    config = make_config(tmp_path, handmade, LANG_AND_TOKENS)
    run_annotate(spark, config)
    path = config.table_path("quarantine")
    rows = spark.read.format("delta").load(path).toPandas()  # Arrow: refuses invalid UTF-8 strings
    bad = rows[rows["reason"] == "invalid_utf8"].iloc[0]
    assert bytes(bad["raw_bytes"]) == HANDMADE[4]  # the exact bytes
    assert bad["raw"] == HANDMADE[4].decode("utf-8", "replace")
    assert rows[rows["reason"] != "invalid_utf8"]["raw_bytes"].isna().all()
    # pyarrow reads every data file (one commit here) to Python strings without an error.
    for part in (tmp_path / "warehouse" / "quarantine").glob("*.parquet"):
        assert pq.read_table(part).to_pylist()


def test_models_are_loaded_and_checked_on_the_driver_before_spark_work(spark, tmp_path, handmade):
    model = train_topic_model(tmp_path / "topic_check.bin")
    quality = {"kind": "fasttext_quality", "column": "q", "model": model, "label": "hq"}
    with pytest.raises(ConfigError, match=r"annotate.annotators\[1\].label: 'hq' is not one of the labels"):
        run_annotate(spark, make_config(tmp_path, handmade, [*TOKENS, quality]))
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(b"not a fastText model" * 100)
    domain = {"kind": "fasttext_domain", "column": "d", "model": str(corrupt)}
    with pytest.raises(
        ConfigError, match=r"annotate.annotators\[1\].model: .*corrupt.bin is not a fastText model"
    ):
        run_annotate(spark, make_config(tmp_path, handmade, [*TOKENS, domain]))
    assert not (tmp_path / "warehouse").exists()  # nothing was read or written


def test_unreadable_files_are_quarantined_whole_and_the_run_goes_on(spark, tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    # A truncated .jsonl.gz beside a good file: Spark aborted the whole job on it (EOFException).
    folder = tmp_path / "in"
    _jsonl(folder / "a.jsonl", [("a1", "a first good document"), ("a2", "a second good document")])
    lines = "".join(json.dumps({"id": f"b{i}", "text": "x " * 50}) + "\n" for i in range(200))
    packed = gzip.compress(lines.encode())
    (folder / "b.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    config = make_config(tmp_path, folder, TOKENS)
    summary = run_annotate(spark, config)
    assert (summary.input_rows, summary.annotated, summary.quarantined) == (3, 2, 1)
    assert summary.quarantined_by_reason == {"unreadable_file": 1}
    (row,) = spark.read.format("delta").load(config.table_path("quarantine")).collect()
    assert row["source_file"].endswith("/in/b.jsonl.gz") and "EOFError" in row["raw"]
    assert run_annotate(spark, config).quarantined == 1  # a rerun merges it, never adds it again
    assert spark.read.format("delta").load(config.table_path("quarantine")).count() == 1

    # Parquet files whose id is a string in two and an int64 in one (PARQUET_COLUMN_DATA_TYPE_MISMATCH).
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    for name, ids in (("p1", ["x1", "x2"]), ("p2", [7, 8]), ("p3", ["x3"])):
        table = pa.table({"id": ids, "text": [f"parquet text {i}" for i in ids]})
        pq.write_table(table, pq_dir / f"{name}.parquet")
    config = make_config(tmp_path / "2", pq_dir, TOKENS, "parquet")
    summary = run_annotate(spark, config)
    assert (summary.input_rows, summary.annotated) == (4, 3)
    assert summary.quarantined_by_reason == {"unreadable_file": 1}
    (row,) = spark.read.format("delta").load(config.table_path("quarantine")).collect()
    assert row["source_file"].endswith("/p2.parquet")
    assert row["raw"] == "column 'id' is int64 here, string in most files"


def test_parquet_record_without_the_text_column_is_quarantined_whole(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(
        pa.table({"id": ["t1", "t2"], "text": ["one good text", "two good texts"]}), folder / "a.parquet"
    )
    # No text column: its record must reach the quarantine with all of its own fields.
    pq.write_table(
        pa.table({"id": ["b1"], "body": ["the text under another name"], "lang": ["en"]}),
        folder / "b.parquet",
    )
    # A column no config names, with another type than in most files: Spark cannot merge the schemas.
    pq.write_table(pa.table({"id": ["c1"], "text": ["c text"], "lang": [3]}), folder / "c.parquet")
    pq.write_table(pa.table({"id": ["d1"], "text": ["d text"], "lang": ["de"]}), folder / "d.parquet")
    config = make_config(tmp_path, folder, TOKENS, "parquet")
    summary = run_annotate(spark, config)
    assert (summary.input_rows, summary.annotated, summary.quarantined) == (5, 3, 2)
    assert summary.quarantined_by_reason == {"missing_text": 1, "unreadable_file": 1}
    rows = {
        r["reason"]: r for r in spark.read.format("delta").load(config.table_path("quarantine")).collect()
    }
    assert json.loads(rows["missing_text"]["raw"]) == {
        "id": "b1",
        "body": "the text under another name",
        "lang": "en",
    }
    assert rows["unreadable_file"]["source_file"].endswith("/c.parquet")
    assert rows["unreadable_file"]["raw"] == "column 'lang' is int64 here, string in most files"
    annotated = spark.read.format("delta").load(config.table_path("annotated"))
    assert sorted(r["id"] for r in annotated.collect()) == ["d1", "t1", "t2"]


def _plans_seen(plans: list[str]):
    """An annotate step that records the optimized plan of the documents it is given."""

    def step(df, specs):
        plans.append(df._jdf.queryExecution().optimizedPlan().toString())
        return annotate_job.annotate_frame(df, specs)

    return step


def test_a_parquet_input_is_split_and_quarantined_without_a_cached_copy(spark, tmp_path):
    # Parquet is read again by each query instead of cached (JSON lines are cached): duplicated
    # ids and rejected records are still found by the census and quarantined, and a clean input
    # leaves the quarantine table created and never written.
    import pyarrow as pa
    import pyarrow.parquet as pq

    dirty = tmp_path / "dirty"
    dirty.mkdir()
    rows = {"a": "first text", "b": "second text", "c": "  "}
    pq.write_table(pa.table({"id": list(rows), "text": list(rows.values())}), dirty / "1.parquet")
    pq.write_table(pa.table({"id": ["a", "d"], "text": ["another text", "fourth text"]}), dirty / "2.parquet")
    config = make_config(tmp_path / "1", dirty, TOKENS, "parquet")
    plans: list[str] = []
    summary = run_annotate(spark, config, annotate_step=_plans_seen(plans))
    assert (summary.input_rows, summary.annotated, summary.quarantined) == (5, 3, 2)
    assert summary.quarantined_by_reason == {"empty_text": 1, "duplicate_id": 1}
    assert "InMemoryRelation" not in plans[0] and "Relation" in plans[0]
    quarantine = spark.read.format("delta").load(config.table_path("quarantine")).collect()
    assert sorted((r["id"], r["reason"]) for r in quarantine) == [("a", "duplicate_id"), ("c", "empty_text")]

    _jsonl(tmp_path / "jsonl" / "1.jsonl", [("a", "first text"), ("a", "another text"), ("d", "x y")])
    plans.clear()
    config = make_config(tmp_path / "3", tmp_path / "jsonl", TOKENS)
    summary = run_annotate(spark, config, annotate_step=_plans_seen(plans))
    assert (summary.annotated, summary.quarantined_by_reason) == (2, {"duplicate_id": 1})
    assert "InMemoryRelation" in plans[0]

    clean = tmp_path / "clean"
    clean.mkdir()
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["one clean text", "two texts"]}), clean / "1.parquet")
    config = make_config(tmp_path / "2", clean, TOKENS, "parquet")
    summary = run_annotate(spark, config)
    assert (summary.input_rows, summary.annotated, summary.quarantined) == (2, 2, 0)
    assert summary.quarantine_version == 0  # created (version 0), no write after it
    q_path = config.table_path("quarantine")
    assert spark.read.format("delta").load(q_path).count() == 0
    assert [r[0] for r in DeltaTable.forPath(spark, q_path).history().select("version").collect()] == [0]


def test_models_sharing_a_name_or_retrained_in_place_run_in_one_session(spark, tmp_path, handmade):
    # Workers find a shipped file by its name, and an executor refuses a name it holds with other
    # contents for every later task of the session: each model is shipped under a name unique to
    # it, so one session annotates with two topic.bin files and with one retrained in place.
    import fasttext

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = train_topic_model(tmp_path / "a" / "topic.bin", dim=32)
    second = train_topic_model(tmp_path / "b" / "topic.bin", dim=8, seed=1)
    scores = []
    for run, model in enumerate([first, second, first]):
        if run == 2:  # the first model, retrained in place with other settings
            train_topic_model(tmp_path / "a" / "topic.bin", dim=16, seed=2)
        annotators = [*TOKENS, {"kind": "fasttext_domain", "column": "domain", "model": model}]
        config = make_config(tmp_path / f"run{run}", handmade, annotators)
        run_annotate(spark, config)
        rows = spark.read.format("delta").load(config.table_path("annotated")).collect()
        ft = fasttext.load_model(model)  # the file as it is now: what the run must have used
        for row in rows:
            labels, probs = ft.predict([row["text"]], k=1)
            assert row["domain"] == labels[0][0].removeprefix("__label__")
            assert row["domain_prob"] == pytest.approx(float(probs[0][0]), abs=1e-5)
        scores.append(sorted((r["id"], r["domain_prob"]) for r in rows))
    assert scores[0] != scores[1] and scores[0] != scores[2]  # three models, three sets of scores


def test_token_counts_equal_the_length_of_encode_ordinary():
    from quadmix_spark.demo.corpus import generate_documents

    encoding = models.load_tokenizer("cl100k_base")
    texts = [
        "",
        " ",
        "\r\n\t",
        "<|endoftext|> is ordinary text here",
        "日本語 😀🎉 a\u0301 ﬁ ½",
        "a" * 20_000,
        "don't  stop   12345678901234  ",
        *(doc["text"] for doc in generate_documents(200, seed=7)),
    ]
    expected = [len(encoding.encode_ordinary(t)) for t in texts]
    assert models.token_counts(encoding, texts) == expected
    # A lone surrogate: the batch goes through encode_ordinary, which replaces it, as before.
    with_surrogate = [*texts[:5], "x \ud800 y"]
    assert models.token_counts(encoding, with_surrogate) == [
        len(encoding.encode_ordinary(t)) for t in with_surrogate
    ]
    # A text the tokenizer refuses is still refused, with its own error.
    with pytest.raises(ValueError, match="too long"):
        models.token_counts(encoding, ["fine", "y " * 500_000])
