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


@dataclass(frozen=True)
class Selector:
    """One selection rule; columns refer to the scored frame (``S``, ``u``, ``o__*``, ``sigma__*``)."""

    name: str
    expected: Callable[[float], Column]
    priority: Callable[[Column], Column]
    unbounded: bool  # True: c can grow past any bracket (scale-type rules)

    @property
    def uses_theta(self) -> bool:
        return self.name == "quadmix"

    def bracket(self, narrow: DataFrame, budget: int, token_col: str) -> tuple[float, float]:
        """A first interval for c: expected tokens at ``hi`` are near the budget or above."""
        if self.name == "quadmix":
            total = narrow.select(F.sum(F.col(token_col) * F.col("S"))).first()[0]
            return 0.0, 1.05 * budget / total
        if self.name == "uniform":
            return 0.0, 1.05 * budget / narrow.select(F.sum(token_col)).first()[0]
        if self.name.startswith("topk:"):
            column = f"o__{self.name[5:]}"
            lo, hi = narrow.select(F.min(column), F.max(column)).first()
            return lo - 1.0, hi
        return 0.0, 1.0


def make_selector(name: str, scorers: Sequence[str]) -> Selector:
    """The selector called ``name`` (validated by the config) over ``scorers``."""
    if name == "quadmix":
        return Selector(name, lambda c: F.lit(c) * F.col("S"), lambda k: (k + F.col("u")) / F.col("S"), True)
    if name == "uniform":
        return Selector(name, lambda c: F.lit(float(c)), lambda k: k + F.col("u"), True)
    if name.startswith("topk:"):
        oriented = F.col(f"o__{name[5:]}")
        return Selector(
            name, lambda c: F.when(oriented <= F.lit(c), 1.0).otherwise(0.0), lambda k: oriented, False
        )
    best = F.least(*[F.col(f"sigma__{s}") for s in scorers])
    return Selector(name, lambda c: F.when(best <= F.lit(c), 1.0).otherwise(0.0), lambda k: best, False)
