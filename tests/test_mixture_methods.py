"""Driver-side pieces of the reweighting jobs that need no Spark: the experiment's registry of
mixture methods and the streams job's choice of documents from a hash-thresholded sample."""

from __future__ import annotations

import numpy as np
import pandas as pd

from quadmix_spark import core
from quadmix_spark.config import PipelineConfig
from quadmix_spark.mixing.sources import SOURCES
from quadmix_spark.pipeline.mixture_methods import POOL_MIXTURES, mixture_source
from quadmix_spark.pipeline.streams import choose_documents


def test_mixture_registry_names_and_files(tmp_path):
    assert {"natural", "uniform", "tandem", "doremi"} <= set(SOURCES)
    assert set(POOL_MIXTURES) == {"tandem", "doremi"}  # made on the experiment's pool
    config = PipelineConfig()
    assert mixture_source(None, config, "uniform", tmp_path) == ("uniform", "uniform")
    assert mixture_source(None, config, "natural", tmp_path) == ("natural", "natural")
    path = str(core.Mixture.uniform(["a", "b"]).to_file(tmp_path / "mine.yaml"))
    assert mixture_source(None, config, path, tmp_path) == ("mine", path)
    assert mixture_source(None, config, "entropy:se", tmp_path) == ("entropy:se", "entropy:se")


def test_choose_documents_takes_the_stream_order_prefix_and_asks_for_more():
    rng = np.random.default_rng(0)
    keys = rng.integers(-(2**62), 2**62, size=200)
    tokens = rng.integers(1, 50, size=200)
    frame = pd.DataFrame({"doc_key": keys, "tokens": tokens})
    chosen, enough = choose_documents(frame, need=1000, seed=3, complete=False)
    order = core.stream_order(keys, 3)
    lengths = tokens[order] + 1
    before = np.cumsum(lengths) - lengths
    expected = keys[order][before < 1100]  # need × 1.1 in annotated tokens (+ one end-of-text each)
    assert enough and np.array_equal(chosen, expected)
    # the same documents in another row order choose the same keys
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert np.array_equal(choose_documents(shuffled, 1000, 3, False)[0], expected)
    # a sample holding fewer tokens than asked is not enough, unless it is the whole domain
    assert not choose_documents(frame.head(10), 1000, 3, complete=False)[1]
    keys10, enough10 = choose_documents(frame.head(10), 1000, 3, complete=True)
    assert enough10 and len(keys10) == 10
