"""Token-budget calibration on Spark: the scale c of every group (the pool, or each domain).

The search itself is the core's (:func:`quadmix_spark.core.calibration.calibrate_scales`); this
module measures for it: one aggregate per round over a narrow, cached frame (key, tokens, score
columns, u, and the group column), no sort, nothing collected but one number per group. Margin
candidates (see the core) are the only rows collected, a page of ``MARGIN_PAGE`` at a time in
priority order, and the documents chosen among them reach the selection as a cut in that order
(a predicate, whatever their number), not as a list of keys.
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

MARGIN_PAGE = 10_000  # margin candidates on the driver at once
MAX_MARGIN_SKIPS = 1_000  # candidates passed over (too long to add) before the fill stops
MARGIN_TRIES = 8


@dataclass(frozen=True)
class MarginCut:
    """The marginal documents of one group that get one copy more than the group's scale gives.

    They are the documents of ``group`` (None: the pool) that gain a copy between the scales
    ``lo`` and ``wide``, up to the cut (``priority``, ``doc_key``) in that order, less
    ``skipped`` (passed over as too long); ``documents`` of them in all.
    """

    group: int | None
    lo: float
    wide: float
    priority: float
    doc_key: int
    skipped: tuple[int, ...]
    documents: int


@dataclass(frozen=True)
class Calibration:
    """The chosen scale of every group and how close each came to its target.

    ``margins`` say which documents get one copy more than their group's scale gives them
    (the margin fill of groups whose target lies inside one document's jump).
    """

    fits: tuple[ScaleFit, ...]
    margins: tuple[MarginCut, ...] = ()
    rounds: int = 0

    @property
    def margin_documents(self) -> int:
        return sum(m.documents for m in self.margins)

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


@dataclass(frozen=True)
class CopiesRule:
    """A selector as the calibration sees it.

    ``expected(c)`` maps a scale column to expected copies (non-decreasing in c);
    ``priority(k)`` gives, from a document's copies k, the scale at which it gains the next.
    ``grow``: c may grow past any bracket (scale-type rules); ``idle_scale``: the scale at which
    the rule gives no copies.
    """

    expected: Callable[[Column], Column]
    priority: Callable[[Column], Column]
    grow: bool = False
    idle_scale: float = 0.0


@dataclass(frozen=True)
class BudgetTargets:
    """What to calibrate for: one entry per group in ``targets``, ``lo``, ``hi`` (and ``capacity``).

    One group for the whole pool (``group_col`` None) or one per value 0..G-1 of ``group_col``.
    ``targets`` are tokens; ``lo``/``hi`` a first bracket of each group's scale; ``capacity`` the
    tokens at an unbounded scale (None when they grow without bound), which ends the margin search.
    """

    targets: Sequence[float]
    lo: Sequence[float]
    hi: Sequence[float]
    tolerance: float
    token_col: str
    group_col: str | None = None
    capacity: Sequence[float] | None = None
    max_steps: int = 60


def calibrate(narrow: DataFrame, rule: CopiesRule, goal: BudgetTargets) -> Calibration:
    """Scales that bring each group's realised tokens within ``goal.tolerance`` of its target.

    Groups with a zero target are not searched: they get ``rule.idle_scale``.
    """
    targets, group_col, token_col = goal.targets, goal.group_col, goal.token_col
    n = len(targets)
    live = [g for g in range(n) if targets[g] > 0]
    rounds = 0

    def measure(scales: np.ndarray) -> np.ndarray:
        nonlocal rounds
        rounds += 1
        full = np.full(n, rule.idle_scale)
        full[live] = scales
        totals = realised_tokens(
            narrow, rule.expected(scale_column(full, group_col)), token_col, n, group_col
        )
        achieved, wanted = int(totals[live].sum()), int(sum(targets))
        log.debug("budget calibration round %d: %d tokens (targets %d)", rounds, achieved, wanted)
        return totals[live]

    fits = dict.fromkeys(range(n), ScaleFit(scale=rule.idle_scale, target=0.0, achieved=0, steps=0))
    if live:
        found = calibrate_scales(
            measure,
            [targets[g] for g in live],
            [goal.lo[g] for g in live],
            [goal.hi[g] for g in live],
            goal.tolerance,
            grow=rule.grow,
            max_steps=goal.max_steps,
            capacity=None if goal.capacity is None else [goal.capacity[g] for g in live],
        )
        fits.update(zip(live, found, strict=True))
    margins: list[MarginCut] = []
    for g, fit in fits.items():
        if fit.margin is None:
            continue
        rows = narrow if group_col is None else narrow.where(F.col(group_col) == g)
        cut, added = fill_margin(rows, rule, fit, token_col, goal.tolerance)
        if cut is not None:
            margins.append(dataclasses.replace(cut, group=None if group_col is None else g))
        fits[g] = dataclasses.replace(fit, achieved=fit.achieved + added)
    return Calibration(tuple(fits[g] for g in range(n)), tuple(margins), rounds)


def _gains(expected: Callable[[Column], Column], lo: float, wide: float) -> tuple[Column, Column]:
    """(copies at ``lo``, whether a document gains a copy between ``lo`` and ``wide``)."""
    copies_lo = copies_column(expected(F.lit(lo)), F.col("u"))
    return copies_lo, copies_column(expected(F.lit(wide)), F.col("u")) > copies_lo


def fill_margin(
    rows: DataFrame, rule: CopiesRule, fit: ScaleFit, token_col: str, tolerance: float
) -> tuple[MarginCut | None, int]:
    """One more copy for marginal documents of one group, in priority order (the core's rule).

    Marginal documents gain a copy between the fit's ``lo`` (under the target) and ``wide``;
    they are read in pages of ``MARGIN_PAGE``, ordered by priority and then doc key (a top-k in
    Spark: the driver never holds more than a page), and fed to the core's rule until it is
    satisfied. When they cannot fill the margin (other long documents among them are skipped),
    the bracket is widened fourfold and the candidates read again, up to ``MARGIN_TRIES`` times.
    Returns the cut (None when no document was chosen) and the tokens it adds.
    """
    lo, wide = fit.margin
    room, slack = fit.target - fit.achieved, tolerance * fit.target
    cut, added = None, 0
    for _ in range(MARGIN_TRIES):
        copies_lo, gains = _gains(rule.expected, lo, wide)
        candidates = rows.where(gains).select(
            "doc_key", F.col(token_col).alias("tokens"), rule.priority(copies_lo).alias("priority")
        )
        added, chosen, skipped, last = 0, 0, [], None
        full = False
        while not full and len(skipped) < MAX_MARGIN_SKIPS:
            page_rows = candidates
            if last is not None:
                after = (F.col("priority") > last[0]) | (
                    (F.col("priority") == last[0]) & (F.col("doc_key") > last[1])
                )
                page_rows = candidates.where(after)
            page = page_rows.orderBy("priority", "doc_key").limit(MARGIN_PAGE).collect()
            for row in page:
                if added >= room - slack:
                    full = True
                    break
                # The core's rule (margin_fill), one candidate at a time.
                picked, gained = margin_fill([int(row["tokens"])], room - added, slack)
                if picked:
                    added, chosen = added + gained, chosen + 1
                else:
                    skipped.append(int(row["doc_key"]))
                last = (float(row["priority"]), int(row["doc_key"]))
            if len(page) < MARGIN_PAGE:
                break
        cut = None
        if chosen:
            cut = MarginCut(None, lo, wide, last[0], last[1], tuple(skipped), chosen)
        if added >= room - slack or wide >= UNBOUNDED:
            break
        wide = lo + 4 * (wide - lo)
    return cut, added


def margin_column(margins: Sequence[MarginCut], rule: CopiesRule, group_col: str | None) -> Column:
    """1 for the documents the margin fill chose, else 0: a predicate per cut, no list of keys."""
    chosen = F.lit(False)
    for m in margins:
        copies_lo, gains = _gains(rule.expected, m.lo, m.wide)
        p = rule.priority(copies_lo)
        here = gains & ((p < m.priority) | ((p == m.priority) & (F.col("doc_key") <= m.doc_key)))
        if m.skipped:
            here = here & ~F.col("doc_key").isin(list(m.skipped))
        if m.group is not None:
            here = here & (F.col(group_col) == m.group)
        chosen = chosen | here
    return F.when(chosen, 1).otherwise(0).cast("long")
