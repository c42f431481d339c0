"""Selectors: how a document's expected copies depend on one scale c; one class each, found by name.

Every selector is the same machinery with a different rule; the budget calibration only sees
``expected(c)`` (non-decreasing in c), ``priority(k)`` (the c at which a document holding k
copies gains the next) and a starting bracket for c.

- ``quadmix``: e = c · S, S from θ (c = 1 without a budget);
- ``uniform``: e = c for every document (random selection to a budget, with repeats past 1);
- ``topk:<scorer>``: e = 1 when the oriented score (smaller = better) is ≤ c;
- ``union_topk``: e = 1 when the best σ over all scorers is ≤ c, the union of equal top-k
  shares of every scorer (the paper's Criteria Mix).

A name is ``<name>`` or ``<name>:<argument>`` (``topk:q_b``); :func:`parse` splits it and finds
the class in :data:`SELECTORS`, so no caller spells a selector's name. ``select.selector``
(:func:`check_selector`, run by the select job's checks before any Spark work) and
``experiment.baselines`` (:func:`baselines`) ask the registry.

Adding a selector: subclass :class:`Selector` in this module (set ``name``, ``pattern``,
``unbounded``, and ``argument`` when the name takes one), implement ``expected``, ``priority``
and ``brackets`` (a scale-type rule subclasses :class:`_ScaleRule` and gives its token mass), and
decorate it with :func:`register` (it files the class under its ``name`` in :data:`SELECTORS`, a
:class:`~quadmix_spark.core.registry.Registry`). Columns refer to the scored frame (``S``, ``u``,
``o__*``, ``sigma__*``); docs/extending.md walks through one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import ClassVar, TypeVar

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from quadmix_spark.config import ConfigError
from quadmix_spark.core.calibration import scale_bracket
from quadmix_spark.core.registry import Registry
from quadmix_spark.spark.budget import CopiesRule, per_group

Brackets = tuple[list[float], list[float]]


class Selector:
    """One selection rule over the scorers of θ (``scorers``), with its argument (``arg``).

    ``expected`` and ``priority`` take and return columns, so a scale may differ per row (one
    per domain when a mixture is composed with the rule).
    """

    name: ClassVar[str]  # the registry key: what precedes ``:`` in a selector's name
    pattern: ClassVar[str]  # how the config spells it, for messages (``topk:<scorer>``)
    argument: ClassVar[str | None] = None  # what the part after ``:`` names (None: no argument)
    uses_theta: ClassVar[bool] = False  # True: S from θ; False: a baseline that fills a budget
    unbounded: ClassVar[bool] = False  # True: c can grow past any bracket (scale-type rules)

    def __init__(self, scorers: Sequence[str] = (), arg: str | None = None):
        self.scorers = tuple(scorers)
        self.arg = arg

    @property
    def spelled(self) -> str:
        """The selector's full name, as ``select.selector`` holds it."""
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    @property
    def label(self) -> str:
        """The selector's row label in the experiment's comparison."""
        return self.spelled.replace("_", "-")

    @property
    def idle_scale(self) -> float:
        """The scale at which no document gets a copy."""
        return 0.0 if self.unbounded else float("-inf")

    def check(self, scorers: Collection[str], key: str) -> None:
        """Fail with a ConfigError naming ``key`` unless the argument fits the configured scorers."""

    def expected(self, c: Column) -> Column:
        """Expected copies of each document at scale(s) ``c``."""
        raise NotImplementedError

    def priority(self, k: Column) -> Column:
        """The scale at which a document holding ``k`` copies gains the next."""
        raise NotImplementedError

    def brackets(
        self, narrow: DataFrame, targets: Sequence[float], token_col: str, group_col: str | None = None
    ) -> Brackets:
        """A first interval for c per group: expected tokens at ``hi`` are near the target or above.

        At most one aggregate over ``narrow``, per value 0..G-1 of ``group_col`` (or once for the pool).
        """
        raise NotImplementedError

    def rule(self, cap: float | None = None) -> CopiesRule:
        """What the budget calibration needs of this selector; ``cap`` bounds the expected copies."""
        expected = self.expected
        if cap is not None:  # up-sampling capped at ``cap`` copies per document
            expected = lambda c: F.least(self.expected(c), F.lit(float(cap)))  # noqa: E731
        return CopiesRule(expected, self.priority, grow=self.unbounded, idle_scale=self.idle_scale)

    @classmethod
    def expand(cls, scorers: Sequence[str]) -> list[Selector]:
        """The selectors an ``experiment.baselines`` entry without an argument stands for."""
        return [cls(scorers)]


#: name (what precedes ``:``) → selector class, in registration order; :func:`register` adds one.
SELECTORS = Registry("selector")

S = TypeVar("S", bound=type[Selector])


def register(cls: S) -> S:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    return SELECTORS.register(cls.name, cls)


def _classes() -> list[type[Selector]]:
    return [SELECTORS.get(name) for name in SELECTORS]


def _one_of(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def parse(spelled: str, key: str) -> tuple[type[Selector], str | None]:
    """(class, argument) of a selector name; an unknown name is a ConfigError naming ``key``."""
    name, sep, arg = spelled.partition(":")
    cls = SELECTORS.get(name) if name in SELECTORS else None
    if cls is None or bool(sep) != (cls.argument is not None) or (sep and not arg):
        known = _one_of([c.pattern for c in _classes()])
        raise ConfigError(f"{key}: {spelled!r} is not {known}")
    return cls, arg if sep else None


def make_selector(spelled: str, scorers: Sequence[str], key: str = "select.selector") -> Selector:
    """The selector called ``spelled`` over θ's ``scorers`` (its argument unchecked)."""
    cls, arg = parse(spelled, key)
    return cls(scorers, arg)


def check_selector(spelled: str, scorers: Collection[str], key: str = "select.selector") -> Selector:
    """The selector called ``spelled``, its argument checked against the configured ``scorers``."""
    selector = make_selector(spelled, list(scorers), key)
    selector.check(scorers, key)
    return selector


def baselines(
    names: Sequence[str], scorers: Sequence[str], key: str = "experiment.baselines"
) -> list[Selector]:
    """The selectors of ``experiment.baselines``: a name without its argument stands for every
    scorer (``topk``: the top-k of each); a rule that needs θ is no baseline."""
    out: list[Selector] = []
    for entry in names:
        name, _, arg = entry.partition(":")
        cls = SELECTORS.get(name) if name in SELECTORS else None
        if cls is None or cls.uses_theta or (arg and cls.argument is None):
            known = _one_of([c.name for c in _classes() if not c.uses_theta])
            raise ConfigError(f"{key}: {entry!r} is not {known}")
        if arg:
            selector = cls(scorers, arg)
            selector.check(scorers, key)
            out.append(selector)
        else:
            out += cls.expand(scorers)
    return out


class _ScaleRule(Selector):
    """A rule whose expected copies are c × a per-document weight: brackets from the token mass."""

    unbounded = True

    def mass(self, token_col: str) -> Column:
        """Each document's expected tokens at c = 1."""
        raise NotImplementedError

    def brackets(
        self, narrow: DataFrame, targets: Sequence[float], token_col: str, group_col: str | None = None
    ) -> Brackets:
        rows = per_group(narrow, group_col, len(targets), F.sum(self.mass(token_col)))
        totals = [float(r[0] or 0.0) if r else 0.0 for r in rows]
        found = [scale_bracket(t, total) for t, total in zip(targets, totals, strict=True)]
        return [b[0] for b in found], [b[1] for b in found]


@register
class QuadMix(_ScaleRule):
    """θ's sampling function: e = c · S."""

    name = pattern = "quadmix"
    uses_theta = True

    @property
    def label(self) -> str:
        return "θ*"

    def expected(self, c: Column) -> Column:
        return c * F.col("S")

    def priority(self, k: Column) -> Column:
        return (k + F.col("u")) / F.col("S")

    def mass(self, token_col: str) -> Column:
        return F.col(token_col) * F.col("S")


@register
class Uniform(_ScaleRule):
    """Random selection to a budget: e = c for every document."""

    name = pattern = "uniform"

    def expected(self, c: Column) -> Column:
        return c.cast("double")

    def priority(self, k: Column) -> Column:
        return k + F.col("u")

    def mass(self, token_col: str) -> Column:
        return F.col(token_col)


class _Threshold(Selector):
    """e = 1 when a per-document score (smaller = better) is ≤ c: at most one copy."""

    def score(self) -> Column:
        raise NotImplementedError

    def expected(self, c: Column) -> Column:
        return F.when(self.score() <= c, 1.0).otherwise(0.0)

    def priority(self, k: Column) -> Column:
        return self.score()


@register
class TopK(_Threshold):
    """The top of one scorer: its oriented score ≤ c."""

    name = "topk"
    pattern = "topk:<scorer>"
    argument = "scorer"

    @property
    def label(self) -> str:
        return f"top-k {self.arg}"

    def check(self, scorers: Collection[str], key: str) -> None:
        if self.arg not in scorers:
            raise ConfigError(f"{key}: {self.arg!r} is not one of the scorers {sorted(scorers)}")

    def score(self) -> Column:
        return F.col(f"o__{self.arg}")

    def brackets(
        self, narrow: DataFrame, targets: Sequence[float], token_col: str, group_col: str | None = None
    ) -> Brackets:
        rows = per_group(narrow, group_col, len(targets), F.min(self.score()), F.max(self.score()))
        return [(r[0] if r else 0.0) - 1.0 for r in rows], [r[1] if r else 0.0 for r in rows]

    @classmethod
    def expand(cls, scorers: Sequence[str]) -> list[Selector]:
        return [cls(scorers, s) for s in scorers]


@register
class UnionTopK(_Threshold):
    """The union of equal top-k shares of every scorer: the best σ over the scorers ≤ c."""

    name = pattern = "union_topk"

    def score(self) -> Column:
        return F.least(*[F.col(f"sigma__{s}") for s in self.scorers])

    def brackets(
        self, narrow: DataFrame, targets: Sequence[float], token_col: str, group_col: str | None = None
    ) -> Brackets:
        return [0.0] * len(targets), [1.0] * len(targets)
