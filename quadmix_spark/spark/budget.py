"""Token-budget calibration on Spark: the scale c of every group (the pool, or each domain).

The search itself is the core's (:func:`quadmix_spark.core.calibration.calibrate_scales`); this
module measures for it: one aggregate per round over a narrow, cached frame (key, tokens, score
columns, u, and the group column), no sort, nothing collected but one number per group. Margin
candidates (see the core) are the only rows collected, and they are few.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from quadmix_spark.core.calibration import UNBOUNDED, ScaleFit, calibrate_scales, margin_fill
from quadmix_spark.spark.scoring import copies_column

log = logging.getLogger(__name__)

MAX_MARGIN_CANDIDATES = 100_000
MARGIN_TRIES = 8


@dataclass(frozen=True)
class Calibration:
    """The chosen scale of every group and how close each came to its target.

    ``extra`` holds the doc keys that get one copy more than their group's scale gives them
    (the margin fill of groups whose target lies inside one document's jump).
    """

    fits: tuple[ScaleFit, ...]
    extra: tuple[int, ...] = ()
    rounds: int = 0

    @property
    def scales(self) -> list[float]:
        return [f.scale for f in self.fits]

    @property
    def scale(self) -> float:
        """The one scale of a whole-pool calibration."""
        if len(self.fits) != 1:
            raise ValueError(f"{len(self.fits)} groups have a scale each; use scales")
        return self.fits[0].scale

    @property
    def budget(self) -> float:
        return float(sum(f.target for f in self.fits))

    @property
    def achieved(self) -> int:
        return int(sum(f.achieved for f in self.fits))

    @property
    def relative_error(self) -> float:
        return (self.achieved - self.budget) / self.budget if self.budget else 0.0


def scale_column(scales: Sequence[float], group_col: str | None) -> Column:
    """Each row's scale: one literal, or its group's entry (``group_col`` holds 0..G-1)."""
    if group_col is None:
        return F.lit(float(scales[0]))
    return F.element_at(F.array(*[F.lit(float(c)) for c in scales]), F.col(group_col) + 1)


def per_group(narrow: DataFrame, group_col: str | None, n: int, *aggs: Column) -> list[tuple | None]:
    """The aggregates once for the pool, or per group 0..n-1 (None for a group without rows)."""
    if group_col is None:
        return [tuple(narrow.select(*aggs).first())]
    out: list[tuple | None] = [None] * n
    for row in narrow.groupBy(group_col).agg(*aggs).collect():
        if row[0] is not None and 0 <= row[0] < n:
            out[row[0]] = tuple(row[1:])
    return out


def realised_tokens(
    narrow: DataFrame, expected: Column, token_col: str, n_groups: int = 1, group_col: str | None = None
) -> np.ndarray:
    """Σ tokens · copies per group, shape (n_groups,), int64 (one Spark aggregate)."""
    realised = F.sum(F.col(token_col) * copies_column(expected, F.col("u")))
    rows = per_group(narrow, group_col, n_groups, realised)
    return np.array([int(r[0] or 0) if r else 0 for r in rows], dtype=np.int64)


def calibrate(
    narrow: DataFrame,
    expected: Callable[[Column], Column],
    priority: Callable[[Column], Column],
    targets: Sequence[float],
    token_col: str,
    lo: Sequence[float],
    hi: Sequence[float],
    tolerance: float,
    *,
    grow: bool = False,
    group_col: str | None = None,
    idle_scale: float = 0.0,
    capacity: Sequence[float] | None = None,
    max_steps: int = 60,
) -> Calibration:
    """Scales that bring each group's realised tokens within ``tolerance`` of its target.

    ``expected(c)`` maps a scale column to expected copies; ``priority(k)`` gives, from a
    document's copies k, the scale at which it gains the next one. ``targets``, ``lo`` and ``hi``
    have one entry per group: one for the whole pool (``group_col`` None) or one per value
    0..G-1 of ``group_col``. Groups with a zero target are not searched: they get
    ``idle_scale``, the scale at which the selector gives no copies. ``capacity`` (per group, the
    tokens at an unbounded scale; None when they grow without bound) ends the margin search.
    """
    n = len(targets)
    live = [g for g in range(n) if targets[g] > 0]
    rounds = 0

    def measure(scales: np.ndarray) -> np.ndarray:
        nonlocal rounds
        rounds += 1
        full = np.full(n, idle_scale)
        full[live] = scales
        totals = realised_tokens(narrow, expected(scale_column(full, group_col)), token_col, n, group_col)
        achieved, wanted = int(totals[live].sum()), int(sum(targets))
        log.debug("budget calibration round %d: %d tokens (targets %d)", rounds, achieved, wanted)
        return totals[live]

    fits = dict.fromkeys(range(n), ScaleFit(scale=idle_scale, target=0.0, achieved=0, steps=0))
    if live:
        found = calibrate_scales(
            measure,
            [targets[g] for g in live],
            [lo[g] for g in live],
            [hi[g] for g in live],
            tolerance,
            grow=grow,
            max_steps=max_steps,
            capacity=None if capacity is None else [capacity[g] for g in live],
        )
        fits.update(zip(live, found, strict=True))
    extra: list[int] = []
    for g, fit in fits.items():
        if fit.margin is None:
            continue
        rows = narrow if group_col is None else narrow.where(F.col(group_col) == g)
        keys, added = fill_margin(rows, expected, priority, fit, token_col, tolerance)
        extra += keys
        fits[g] = dataclasses.replace(fit, achieved=fit.achieved + added)
    return Calibration(tuple(fits[g] for g in range(n)), tuple(extra), rounds)


def fill_margin(
    rows: DataFrame,
    expected: Callable[[Column], Column],
    priority: Callable[[Column], Column],
    fit: ScaleFit,
    token_col: str,
    tolerance: float,
) -> tuple[list[int], int]:
    """One more copy for marginal documents of one group, in priority order (the core's rule).

    Marginal documents gain a copy between the fit's ``lo`` (under the target) and ``wide``;
    they are few (the bracket is narrow) and are collected with their tokens, ordered by
    priority and then doc key. When they cannot fill the margin (other long documents among
    them are skipped), the bracket is widened fourfold and the candidates collected again, up to
    ``MARGIN_TRIES`` times. Returns the chosen doc keys and the tokens they add.
    """
    lo, wide = fit.margin
    room, slack = fit.target - fit.achieved, tolerance * fit.target
    copies_lo = copies_column(expected(F.lit(lo)), F.col("u"))
    for _ in range(MARGIN_TRIES):
        gains = copies_column(expected(F.lit(wide)), F.col("u")) > copies_lo
        candidates = (
            rows.where(gains)
            .select("doc_key", F.col(token_col).alias("tokens"), priority(copies_lo).alias("priority"))
            .orderBy("priority", "doc_key")
            .limit(MAX_MARGIN_CANDIDATES)
            .collect()
        )
        chosen, added = margin_fill([int(r["tokens"]) for r in candidates], room, slack)
        if added >= room - slack or wide >= UNBOUNDED or len(candidates) == MAX_MARGIN_CANDIDATES:
            break
        wide = lo + 4 * (wide - lo)
    return [int(candidates[i]["doc_key"]) for i in chosen], added
