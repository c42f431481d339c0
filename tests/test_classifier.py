"""train-classifier: the held-out evaluation runs in Spark and only confusion counts reach the driver."""

from __future__ import annotations

import json
import random
import tempfile
from collections import Counter
from pathlib import Path

import fasttext
import pytest

from quadmix_spark.pipeline.classifier import heldout_confusion, label_metrics, metrics_from_confusion

SPORTS = ["match", "goal", "team", "coach", "player", "season", "league", "win", "stadium", "referee"]
FINANCE = ["bank", "loan", "interest", "rates", "market", "stock", "bond", "credit", "investor", "profit"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = random.Random(0)
    lines = []
    for _ in range(200):
        lines.append("__label__sports " + " ".join(rng.choice(SPORTS) for _ in range(8)))
        lines.append("__label__finance " + " ".join(rng.choice(FINANCE) for _ in range(8)))
    path = tmp_path_factory.mktemp("clf")
    (path / "train.txt").write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(
        str(path / "train.txt"),
        epoch=10,
        lr=0.5,
        dim=32,
        wordNgrams=2,
        minCount=2,
        verbose=0,
        thread=1,
        seed=0,
    )
    model.save_model(str(path / "topic.bin"))
    return str(path / "topic.bin")


def _held(spark, n: int, seed: int):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        # Mixed texts so that some are misclassified: the confusion has off-diagonal cells.
        words = SPORTS if i % 2 else FINANCE
        mixed = [rng.choice(words) for _ in range(3)] + [rng.choice(SPORTS + FINANCE) for _ in range(4)]
        rows.append((" ".join(mixed), "sports" if i % 2 else "finance"))
    return spark.createDataFrame(rows, "text string, label string").repartition(3)


@pytest.mark.parametrize("n", [60, 600])
def test_heldout_scores_in_spark_match_the_driver_and_collect_only_counts(spark, model_file, n):
    held = _held(spark, n, seed=n)
    copies = set(Path(tempfile.gettempdir()).glob("quadmix-eval-*"))
    counts = heldout_confusion(held, model_file, "label")
    assert set(Path(tempfile.gettempdir()).glob("quadmix-eval-*")) == copies  # its model copy is removed
    # The same model on the driver, document by document: the specification.
    model = fasttext.load_model(model_file)
    docs = held.collect()
    predicted = [lab[0].removeprefix("__label__") for lab in model.predict([r["text"] for r in docs], k=1)[0]]
    truth = [r["label"] for r in docs]
    assert counts == dict(Counter(zip(truth, predicted, strict=True)))
    assert sum(counts.values()) == n
    assert len(counts) <= 4  # 2 labels: at most 2 × 2 rows reach the driver, whatever n
    labels = ["finance", "sports"]
    assert metrics_from_confusion(counts, labels) == label_metrics(truth, predicted, labels)


def test_metrics_from_confusion_is_label_metrics():
    truth = ["a", "a", "b", "c", "c", "c"]
    predicted = ["a", "b", "b", "c", "a", "c"]
    counts = dict(Counter(zip(truth, predicted, strict=True)))
    expected = label_metrics(truth, predicted, ["a", "b", "c"])
    assert metrics_from_confusion(counts, ["a", "b", "c"]) == expected
    assert json.dumps(expected)  # plain numbers
    assert expected["accuracy"] == 4 / 6
