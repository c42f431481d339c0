"""The budget calibration of the core: per-group bisection in lockstep, and the margin fill."""

from __future__ import annotations

import numpy as np

from quadmix_spark.core import calibrate_scales, expected_copies_to_copies, hash_uniform, margin_fill
from quadmix_spark.core.calibration import UNBOUNDED


def pool(n: int = 5000, groups: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, groups, n),
        np.maximum(1, rng.lognormal(4, 1, n).astype(np.int64)),
        rng.gamma(2.0, 0.5, n),  # S, expected copies at scale 1
        hash_uniform(np.arange(n), 9),
    )


def measure_for(group, tokens, S, u, n_groups):
    calls = []

    def measure(scales):
        calls.append(scales.copy())
        copies = expected_copies_to_copies(scales[group] * S, u)
        return np.bincount(group, weights=tokens * copies, minlength=n_groups).astype(np.int64)

    return measure, calls


def test_every_group_meets_its_target_in_one_measure_per_round():
    group, tokens, S, u = pool()
    targets = np.array([0.2, 1.5, 0.7]) * np.bincount(group, weights=tokens)
    measure, calls = measure_for(group, tokens, S, u, 3)
    fits = calibrate_scales(measure, targets, 0.0, 1.0, 0.002, grow=True)
    for fit, target, g in zip(fits, targets, range(3), strict=True):
        copies = expected_copies_to_copies(fit.scale * S[group == g], u[group == g])
        achieved = int((tokens[group == g] * copies).sum())
        assert achieved == fit.achieved
        assert abs(achieved - target) <= 0.002 * target
        assert fit.margin is None
    assert len(calls) == max(f.steps for f in fits)  # rounds = the longest group's search


def test_lockstep_groups_end_where_each_group_alone_ends():
    group, tokens, S, u = pool(seed=1)
    targets = np.array([0.4, 0.9, 2.2]) * np.bincount(group, weights=tokens)
    together = calibrate_scales(measure_for(group, tokens, S, u, 3)[0], targets, 0.0, 1.0, 1e-3, grow=True)
    for g in range(3):
        mine = group == g
        alone_measure = measure_for(np.zeros(mine.sum(), np.int64), tokens[mine], S[mine], u[mine], 1)[0]
        (alone,) = calibrate_scales(alone_measure, [targets[g]], 0.0, 1.0, 1e-3, grow=True)
        assert alone == together[g]


def test_a_target_inside_one_documents_jump_ends_under_it_with_a_margin():
    tokens = np.array([10, 10, 10, 5000])  # the big document's jump is far wider than the tolerance
    S = np.array([1.0, 1.0, 1.0, 1.0])
    u = np.array([0.1, 0.2, 0.3, 0.4])
    group = np.zeros(4, np.int64)
    measure, _ = measure_for(group, tokens, S, u, 1)
    (fit,) = calibrate_scales(measure, [1000], 0.0, 1.0, 0.01)
    assert fit.margin is not None
    lo, wide = fit.margin
    assert fit.scale == lo and fit.achieved < 1000
    assert measure(np.array([wide]))[0] >= 1000


def test_margin_fill_takes_candidates_in_order_and_skips_overshooters():
    chosen, added = margin_fill([50, 400, 30, 20, 10], room=100, slack=5)
    assert chosen == [0, 2, 3]  # 400 would overshoot 105; stop once 95 is reached
    assert added == 100
    assert margin_fill([], 100, 5) == ([], 0)


def test_an_unreachable_target_stops_within_the_step_budget():
    group, tokens, S, u = pool(n=200, groups=1, seed=2)
    measure, calls = measure_for(group, tokens, S, u, 1)
    target = tokens.sum() * 0.5 + 0.5  # no integer total equals it: tolerance 0 is never met
    (fit,) = calibrate_scales(measure, [target], 0.0, 1.0, 0.0, max_steps=10)
    assert fit.steps <= 2 * 10 and len(calls) == fit.steps
    assert fit.margin is not None and fit.achieved < target


def test_the_margin_search_stops_widening_once_nothing_more_can_be_selected():
    # A threshold rule (each document 0 or 1 copy): past the largest score every document is in,
    # so widening the bracket further cannot add tokens; the search must stop there.
    tokens = np.array([10, 10, 10, 5000])
    score = np.array([0.1, 0.2, 0.3, 0.4])
    calls = []

    def measure(scales):
        calls.append(float(scales[0]))
        return np.array([int(tokens[score <= scales[0]].sum())])

    (fit,) = calibrate_scales(measure, [1000], 0.0, 0.5, 0.01, capacity=[5030])
    lo, wide = fit.margin
    assert 0.3 <= lo < 0.4 and fit.achieved == 30  # under the target, below the big document
    assert wide == UNBOUNDED  # every document that can join is a candidate
    assert len(calls) < 15 and max(calls) <= 0.5  # no widening run up towards 1e64


def test_a_target_inside_a_huge_documents_jump_is_met_by_the_margin_fill():
    group, tokens, S, u = pool(n=2000, groups=1, seed=4)
    huge = int(np.argmax(S))
    tokens[huge] = 50_000
    measure, _ = measure_for(group, tokens, S, u, 1)
    jump_at = u[huge] / S[huge]  # the scale at which the huge document gets its first copy
    below = measure(np.array([np.nextafter(jump_at, 0)]))[0]
    target, tolerance = below + 25_000, 1e-3  # in the middle of its jump
    (fit,) = calibrate_scales(measure, [target], 0.0, 1.0, tolerance, grow=True)
    assert fit.margin is not None
    lo, wide = fit.margin
    copies_lo = expected_copies_to_copies(lo * S, u)
    gains = np.flatnonzero(expected_copies_to_copies(wide * S, u) > copies_lo)
    order = gains[np.lexsort((gains, (copies_lo[gains] + u[gains]) / S[gains]))]  # priority, then key
    chosen, added = margin_fill(tokens[order], target - fit.achieved, tolerance * target)
    assert huge not in order[chosen]  # it would overshoot
    assert abs(fit.achieved + added - target) <= tolerance * target
