"""Selectors: how a document's expected copies depend on one scale c.

Every selector is the same machinery with a different rule; the budget calibration only sees
``expected(c)`` (non-decreasing in c), ``priority(k)`` (the c at which a document holding k
copies gains the next) and a starting bracket for c.

- ``quadmix``: e = c · S, S from θ (c = 1 without a budget);
- ``uniform``: e = c for every document (random selection to a budget, with repeats past 1);
- ``topk:<scorer>``: e = 1 when the oriented score (smaller = better) is ≤ c;
- ``union_topk``: e = 1 when the best σ over all scorers is ≤ c, the union of equal top-k
  shares of every scorer (the paper's Criteria Mix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from quadmix_spark.core.calibration import scale_bracket
from quadmix_spark.spark.budget import per_group


@dataclass(frozen=True)
class Selector:
    """One selection rule; columns refer to the scored frame (``S``, ``u``, ``o__*``, ``sigma__*``).

    ``expected`` and ``priority`` take and return columns, so a scale may differ per row (one
    per domain when a mixture is composed with the rule).
    """

    name: str
    expected: Callable[[Column], Column]
    priority: Callable[[Column], Column]
    unbounded: bool  # True: c can grow past any bracket (scale-type rules)

    @property
    def uses_theta(self) -> bool:
        return self.name == "quadmix"

    @property
    def idle_scale(self) -> float:
        """The scale at which no document gets a copy."""
        return 0.0 if self.unbounded else float("-inf")

    def brackets(
        self, narrow: DataFrame, targets: Sequence[float], token_col: str, group_col: str | None = None
    ) -> tuple[list[float], list[float]]:
        """A first interval for c per group: expected tokens at ``hi`` are near the target or above.

        One aggregate over ``narrow``, per value 0..G-1 of ``group_col`` (or once for the pool).
        """
        n = len(targets)
        if self.name == "union_topk":
            return [0.0] * n, [1.0] * n
        if self.name.startswith("topk:"):
            column = F.col(f"o__{self.name[5:]}")
            rows = per_group(narrow, group_col, n, F.min(column), F.max(column))
            return [(r[0] if r else 0.0) - 1.0 for r in rows], [r[1] if r else 0.0 for r in rows]
        mass = F.col(token_col) * F.col("S") if self.name == "quadmix" else F.col(token_col)
        rows = per_group(narrow, group_col, n, F.sum(mass))
        totals = [float(r[0] or 0.0) if r else 0.0 for r in rows]
        brackets = [scale_bracket(t, total) for t, total in zip(targets, totals, strict=True)]
        return [b[0] for b in brackets], [b[1] for b in brackets]


def make_selector(name: str, scorers: Sequence[str]) -> Selector:
    """The selector called ``name`` (validated by the config) over ``scorers``."""
    if name == "quadmix":
        return Selector(name, lambda c: c * F.col("S"), lambda k: (k + F.col("u")) / F.col("S"), True)
    if name == "uniform":
        return Selector(name, lambda c: c.cast("double"), lambda k: k + F.col("u"), True)
    if name.startswith("topk:"):
        oriented = F.col(f"o__{name[5:]}")
        return Selector(name, lambda c: F.when(oriented <= c, 1.0).otherwise(0.0), lambda k: oriented, False)
    best = F.least(*[F.col(f"sigma__{s}") for s in scorers])
    return Selector(name, lambda c: F.when(best <= c, 1.0).otherwise(0.0), lambda k: best, False)
