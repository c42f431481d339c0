"""Token-budget calibration: find the selector's scale c whose realised tokens meet the budget.

Every selector maps a scale c to each document's expected copies e(c), non-decreasing in c, and
copies = floor(e) + 1[u < frac(e)] with a fixed per-document uniform u, so realised tokens are
non-decreasing in c too. Bisection on c needs only one aggregate per step over a narrow, cached
frame (key, tokens, score columns, u): no sort, nothing collected but a single number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from quadmix_spark.spark.scoring import copies_column

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """The chosen scale and how close the realised tokens came to the budget.

    ``extra`` holds the doc keys that get one copy more than ``scale`` gives them: when one
    document's step in realised tokens is wider than the tolerance, the margin is filled in
    priority order, skipping documents that would overshoot (see :func:`fill_margin`).
    """

    scale: float
    budget: int
    achieved: int
    steps: int
    extra: tuple[int, ...] = ()

    @property
    def relative_error(self) -> float:
        return (self.achieved - self.budget) / self.budget


def realised_tokens(narrow: DataFrame, expected: Column, token_col: str) -> int:
    """Σ tokens · copies for one expected-copies column (one Spark aggregate)."""
    total = narrow.select(F.sum(F.col(token_col) * copies_column(expected, F.col("u")))).first()[0]
    return int(total or 0)


def calibrate(
    narrow: DataFrame,
    expected: Callable[[float], Column],
    priority: Callable[[Column], Column],
    budget: int,
    token_col: str,
    lo: float,
    hi: float,
    tolerance: float,
    grow: bool = False,
    max_steps: int = 60,
) -> Calibration:
    """Bisection on c in [lo, hi] until realised tokens are within ``tolerance`` of ``budget``.

    With ``grow`` (scale-type selectors, unbounded above), ``hi`` doubles until it overshoots.
    Realised tokens jump by a whole document at a time; when one jump is wider than the
    tolerance (long documents in a small pool), the margin is filled by :func:`fill_margin`.
    """
    measured: dict[float, int] = {}

    def measure(c: float) -> int:
        measured[c] = realised_tokens(narrow, expected(c), token_col)
        log.info("budget calibration: c=%.10g → %d tokens (budget %d)", c, measured[c], budget)
        return measured[c]

    measure(lo)
    while measure(hi) < budget and grow and len(measured) < max_steps:
        lo, hi = hi, hi * 2
    stalled = 0  # steps in which the bracket kept the same two token totals: one document's jump
    while len(measured) < max_steps and abs(measured[hi] - budget) > tolerance * budget and stalled < 6:
        mid = (lo + hi) / 2
        if mid in (lo, hi):  # the float interval is exhausted
            break
        gap = (measured[lo], measured[hi])
        if measure(mid) < budget:
            lo = mid
        else:
            hi = mid
        stalled = stalled + 1 if (measured[lo], measured[hi]) == gap else 0
    best = min(measured, key=lambda c: (abs(measured[c] - budget), c))
    result = Calibration(scale=best, budget=budget, achieved=measured[best], steps=len(measured))
    if abs(result.relative_error) <= tolerance or measured[hi] < budget:
        return result
    # Candidates lie between lo and a scale whose extra mass is a few times the last jump, so
    # documents after the oversized one are among them.
    enough = measured[lo] + 3 * (measured[hi] - measured[lo])
    wide = min((c for c, t in measured.items() if t >= enough), default=None)
    width = hi - lo
    while wide is None and len(measured) < 2 * max_steps:
        width *= 4
        if measure(lo + width) >= enough:
            wide = lo + width
    wide = max(measured) if wide is None else wide
    extra, added = fill_margin(narrow, expected, priority, lo, budget, token_col, tolerance, wide)
    return Calibration(
        scale=lo, budget=budget, achieved=measured[lo] + added, steps=len(measured), extra=extra
    )


def fill_margin(
    narrow: DataFrame,
    expected: Callable[[float], Column],
    priority: Callable[[Column], Column],
    lo: float,
    budget: int,
    token_col: str,
    tolerance: float,
    hi: float,
    max_candidates: int = 100_000,
) -> tuple[tuple[int, ...], int]:
    """Add one copy to marginal documents, in priority order, until the budget is met.

    Marginal documents gain a copy between scale ``lo`` (under budget) and ``hi``; ``priority``
    gives, from a document's copies at ``lo``, the scale at which it gains the next one. The
    candidates are few (the bracket is narrow) and are collected to the driver with their tokens;
    a candidate whose tokens would overshoot ``budget · (1 + tolerance)`` is skipped.
    Returns the chosen doc keys and the tokens they add.
    """
    copies_lo = copies_column(expected(lo), F.col("u"))
    gains = copies_column(expected(hi), F.col("u")) > copies_lo
    candidates = (
        narrow.where(gains)
        .select("doc_key", F.col(token_col).alias("tokens"), priority(copies_lo).alias("priority"))
        .orderBy("priority", "doc_key")
        .limit(max_candidates)
        .collect()
    )
    room = budget - realised_tokens(narrow, expected(lo), token_col)  # > 0: lo is under budget
    ceiling = room + tolerance * budget
    chosen, added = [], 0
    for row in candidates:
        if added >= room - tolerance * budget:
            break
        if added + row["tokens"] <= ceiling:
            chosen.append(int(row["doc_key"]))
            added += int(row["tokens"])
    return tuple(chosen), added
