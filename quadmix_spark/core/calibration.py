"""Budget calibration: the scale c of each group (the whole pool, or each domain) that meets its target.

A selector maps a scale c to each document's expected copies e(c), non-decreasing in c, and
copies = floor(e) + 1[u < frac(e)] with a fixed uniform u, so a group's realised tokens
T(c) = Σ tokens · copies are non-decreasing in c too. Each group's c is found by bisection, all
groups in lockstep: every round asks ``measure`` for T at one c per group, so the caller pays one
aggregate per round whatever the number of groups (Spark: one ``groupBy``; numpy: one
``bincount``). The search depends only on the integer totals, so the Spark path and the numpy
specification visit the same scales and end at the same c.

When one document's step in T is wider than the tolerance (long documents, small groups), no c
lands inside it; the group then ends at the ``lo`` under its target with a ``margin`` bracket
(lo, wide) in which the caller adds single copies in priority order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["UNBOUNDED", "ScaleFit", "calibrate_scales", "margin_fill", "scale_bracket"]

_STALL_ROUNDS = 6  # bisection rounds in which both ends keep their totals: one document's jump
#: A scale past every document's bound (finite, so that 0 · scale stays 0): where a capped or
#: threshold rule gives every document all the copies it can have.
UNBOUNDED = 1e300


@dataclass(frozen=True)
class ScaleFit:
    """One group's calibration.

    ``scale`` is the c to use; ``achieved`` its realised tokens; ``steps`` the distinct scales
    measured; ``margin`` is None, or (lo, wide) when the target lies inside one document's jump:
    ``scale`` = lo is under the target and documents gaining a copy between lo and wide are the
    candidates to fill the margin.
    """

    scale: float
    target: float
    achieved: int
    steps: int
    margin: tuple[float, float] | None = None

    @property
    def relative_error(self) -> float:
        return (self.achieved - self.target) / self.target if self.target else 0.0


def scale_bracket(target: float, mass: float) -> tuple[float, float]:
    """A first bracket (0, hi) for a scale-type rule whose expected tokens are ``scale × mass``.

    ``hi`` is the power of two at or above 1.05 · target / mass: a float sum of ``mass`` that
    differs in its last bits between partitionings (or between Spark and numpy) gives the same
    bracket, so the same search and the same scale.
    """
    if mass <= 0 or target <= 0:
        return 0.0, 1.0
    return 0.0, float(2.0 ** math.ceil(math.log2(1.05 * target / mass)))


def _search(
    target: float, lo: float, hi: float, tolerance: float, grow: bool, max_steps: int, capacity: float | None
) -> Generator[float, int, ScaleFit]:
    """One group's bisection as a coroutine: yields a scale, receives its realised tokens."""
    measured: dict[float, int] = {}
    measured[lo] = yield lo
    measured[hi] = yield hi
    while measured[hi] < target and grow and len(measured) < max_steps:
        lo, hi = hi, hi * 2
        measured[hi] = yield hi
    stalled = 0
    slack = tolerance * target
    while len(measured) < max_steps and abs(measured[hi] - target) > slack and stalled < _STALL_ROUNDS:
        mid = (lo + hi) / 2
        if mid in (lo, hi):  # the float interval is exhausted
            break
        gap = (measured[lo], measured[hi])
        measured[mid] = yield mid
        if measured[mid] < target:
            lo = mid
        else:
            hi = mid
        stalled = stalled + 1 if (measured[lo], measured[hi]) == gap else 0
    best = min(measured, key=lambda c: (abs(measured[c] - target), c))
    fit = ScaleFit(scale=best, target=target, achieved=measured[best], steps=len(measured))
    if abs(fit.relative_error) <= tolerance or measured[hi] < target:
        return fit
    # Margin candidates lie between lo and a scale whose extra mass is a few times the last
    # jump, so documents after the oversized one are among them.
    enough = measured[lo] + 3 * (measured[hi] - measured[lo])
    wide = min((c for c, t in measured.items() if t >= enough), default=None)
    if capacity is not None and capacity < enough:
        wide = UNBOUNDED  # every document that can still gain a copy is a candidate
    width = hi - lo
    while wide is None and len(measured) < 2 * max_steps:
        width *= 4
        measured[lo + width] = yield lo + width
        if measured[lo + width] >= min(enough, np.inf if capacity is None else capacity):
            wide = lo + width
    wide = max(measured) if wide is None else wide
    return ScaleFit(scale=lo, target=target, achieved=measured[lo], steps=len(measured), margin=(lo, wide))


def calibrate_scales(
    measure: Callable[[NDArray[np.float64]], ArrayLike],
    targets: ArrayLike,
    lo: ArrayLike,
    hi: ArrayLike,
    tolerance: float,
    grow: bool = False,
    max_steps: int = 60,
    capacity: ArrayLike | None = None,
) -> list[ScaleFit]:
    """Bisection on c for every group at once until realised tokens are within ``tolerance``.

    Parameters
    ----------
    measure : scales (G,) → realised tokens (G,) (integers), one call per round
    targets : (G,) tokens per group
    lo, hi : (G,) a first bracket per group (T(lo) ≤ target is not required)
    tolerance : relative; a group stops once |T(c) − target| ≤ tolerance · target
    grow : scale-type selectors (unbounded above): ``hi`` doubles until it reaches the target
    max_steps : distinct scales per group before the search stops at its best
    capacity : (G,) the most tokens each group can reach (T at an unbounded scale), or None when
        T grows without bound; it ends the margin bracket's widening once nothing more can join

    Returns
    -------
    one :class:`ScaleFit` per group, in order
    """
    t = np.asarray(targets, dtype=np.float64)
    lows = np.broadcast_to(np.asarray(lo, dtype=np.float64), t.shape)
    highs = np.broadcast_to(np.asarray(hi, dtype=np.float64), t.shape)
    caps = [None] * len(t) if capacity is None else [float(c) for c in np.broadcast_to(capacity, t.shape)]
    searches = [
        _search(float(target), float(low), float(high), tolerance, grow, max_steps, cap)
        for target, low, high, cap in zip(t, lows, highs, caps, strict=True)
    ]
    scales = np.array([next(s) for s in searches], dtype=np.float64)
    done: dict[int, ScaleFit] = {}
    while len(done) < len(searches):
        totals = np.asarray(measure(scales.copy()))
        for g, search in enumerate(searches):
            if g in done:
                continue
            try:
                scales[g] = search.send(int(totals[g]))
            except StopIteration as stop:
                done[g] = stop.value
                scales[g] = stop.value.scale
    return [done[g] for g in range(len(searches))]


def margin_fill(tokens: Sequence[int], room: float, slack: float) -> tuple[list[int], int]:
    """Which margin candidates get one more copy: indices into ``tokens``, and the tokens added.

    ``tokens`` are the candidates' tokens in priority order; ``room`` = target − T(lo) > 0;
    ``slack`` = tolerance · target. Candidates are taken in order until the added tokens reach
    ``room − slack``; one that would push them past ``room + slack`` is skipped.
    """
    chosen, added = [], 0
    for i, n in enumerate(tokens):
        if added >= room - slack:
            break
        if added + n <= room + slack:
            chosen.append(i)
            added += int(n)
    return chosen, added
