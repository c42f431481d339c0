"""σ: put raw quality scores on a common scale (quadmix.md §2, Eq.1).

Every scorer is mapped to a percentile in [0, 1] against a fixed *reference*: a sorted
1-D array of oriented sample values or of quantiles from a sketch (≥ 1000 points is
plenty). The reference is global (not per domain) and is built once per stats version,
so σ of a document depends only on its own score and the reference, never on the batch
it arrives in.

Orientation follows the paper: **smaller = better**. Scorers whose raw output is
"higher is better" (FineWeb-Edu, DCLM, AskLLM probabilities) are negated first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["build_reference", "orient", "percentile_against", "percentile_matrix"]


def orient(values: ArrayLike, higher_is_better: bool) -> NDArray[np.float64]:
    """Return ``values`` as float64 with smaller = better.

    Parameters
    ----------
    values : array-like of any shape
        Raw scores.
    higher_is_better : bool
        True if the scorer's raw output grows with quality; those values are negated.

    Returns
    -------
    ndarray of float64, same shape as ``values`` (always a new array).
    """
    v = np.asarray(values, dtype=np.float64)
    return -v if higher_is_better else v.copy()


def _raise_on_nan(v: NDArray[np.float64], name: str) -> None:
    nan = np.isnan(v)
    if nan.any():
        first = int(np.flatnonzero(nan.ravel())[0])
        raise ValueError(
            f"{name}: {int(nan.sum())} NaN score(s) (first at flat index {first}); "
            "quarantine rows with missing scores before normalisation"
        )


def build_reference(
    sample_values: ArrayLike, higher_is_better: bool, *, name: str = "reference"
) -> NDArray[np.float64]:
    """Build the reference for :func:`percentile_against` from raw values.

    Parameters
    ----------
    sample_values : array-like, any shape (flattened)
        Raw (un-oriented) scores of a random sample, or raw quantiles of a sketch.
    higher_is_better : bool
        Orientation of the scorer, as in :func:`orient`.
    name : str
        Used in error messages (e.g. the scorer name).

    Returns
    -------
    ndarray of float64, shape (k,)
        Oriented values sorted ascending. Pass it unchanged to :func:`percentile_against`
        together with the same ``higher_is_better``.
    """
    ref = orient(sample_values, higher_is_better).ravel()
    if ref.size == 0:
        raise ValueError(f"{name}: cannot build a reference from an empty sample")
    _raise_on_nan(ref, name)
    if not np.isfinite(ref).all():
        raise ValueError(f"{name}: reference values must be finite (found ±inf)")
    ref.sort(kind="stable")
    return ref


def _check_reference(reference: ArrayLike, name: str) -> NDArray[np.float64]:
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 1 or ref.size == 0:
        raise ValueError(f"{name}: reference must be a non-empty 1-D array, got shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError(f"{name}: reference values must be finite")
    if (np.diff(ref) < 0).any():
        raise ValueError(
            f"{name}: reference is not sorted ascending in oriented space; build it with build_reference()"
        )
    return ref


def percentile_against(
    values: ArrayLike,
    reference: ArrayLike,
    higher_is_better: bool,
    *,
    name: str = "values",
) -> NDArray[np.float64]:
    """σ(q): fraction of the reference that is at least as good as (≤) each value.

    σ(q) = |{ref ≤ orient(q)}| / len(ref), computed as
    ``np.searchsorted(reference, orient(q), side="right") / len(reference)``.

    Parameters
    ----------
    values : array-like of any shape
        Raw (un-oriented) scores.
    reference : array-like, shape (k,)
        Output of :func:`build_reference` (oriented, sorted ascending, finite).
    higher_is_better : bool
        Orientation of the scorer; must match the one used to build ``reference``.
    name : str
        Used in error messages (e.g. the scorer name).

    Returns
    -------
    ndarray of float64, same shape as ``values``, in [0, 1]; smaller = better.
    A value better than every reference point gets 0.

    Raises
    ------
    ValueError
        If ``values`` contains NaN (callers quarantine such rows first), or the reference
        is empty, non-finite or unsorted.
    """
    ref = _check_reference(reference, name)
    v = orient(values, higher_is_better)
    _raise_on_nan(v, name)
    return np.searchsorted(ref, v, side="right") / np.float64(ref.size)


def percentile_matrix(
    values: ArrayLike,
    references: Sequence[ArrayLike],
    higher_is_better: Sequence[bool],
    names: Sequence[str] | None = None,
) -> NDArray[np.float64]:
    """Apply :func:`percentile_against` column by column.

    Parameters
    ----------
    values : array-like, shape (n_docs, N)
        Raw scores, one column per scorer.
    references : sequence of N arrays
        One reference per scorer (from :func:`build_reference`).
    higher_is_better : sequence of N bools
    names : sequence of N str, optional
        Scorer names for error messages.

    Returns
    -------
    ndarray of float64, shape (n_docs, N): σ ready for :func:`merge_scores`.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D (n_docs, N), got shape {v.shape}")
    n_scorers = v.shape[1]
    if len(references) != n_scorers or len(higher_is_better) != n_scorers:
        raise ValueError(
            f"values has {n_scorers} columns but got {len(references)} references and "
            f"{len(higher_is_better)} orientations"
        )
    names = list(names) if names is not None else [f"scorer[{j}]" for j in range(n_scorers)]
    out = np.empty(v.shape, dtype=np.float64)
    for j in range(n_scorers):
        out[:, j] = percentile_against(v[:, j], references[j], higher_is_better[j], name=names[j])
    return out
