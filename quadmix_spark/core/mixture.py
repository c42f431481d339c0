"""Domain mixtures: domain → share of the selected tokens, the one format every method writes.

RegMix, BiMix, the entropy mixtures, TANDEM and DoReMi all produce a :class:`Mixture`; ``select``
composes it with θ: each domain gets ``budget × share`` tokens, and θ (Eq. 1–3) chooses which
documents of the domain fill them and how often (:func:`domain_targets`).

File format (YAML or JSON, chosen by the suffix; docs/mixtures.md)::

    mixture:            # domain → share, ≥ 0, summing to 1 within SUM_TOLERANCE
      code: 0.4
      prose: 0.6
    provenance:         # free-form: method, inputs, fit metrics, created_at, code_version
      method: regmix
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .identity import content_key
from .params import read_structured, write_structured

__all__ = ["SUM_TOLERANCE", "Mixture", "MixtureError", "domain_targets"]

#: |Σ shares − 1| up to which shares are renormalised (RegMix publishes 3 decimals: sums of
#: 0.996–1.003); beyond it a mixture is rejected.
SUM_TOLERANCE = 0.01


class MixtureError(ValueError):
    """An invalid mixture, or one a pool cannot satisfy."""


@dataclass(frozen=True)
class Mixture:
    """Domain → share of tokens; immutable, shares ≥ 0 summing to exactly 1 (up to rounding).

    Build with :meth:`from_shares` (validates and renormalises), :meth:`natural`, :meth:`uniform`
    or :meth:`from_file`. ``provenance`` says where the mixture came from (method, inputs, fit
    metrics, created_at, code_version) and records a renormalisation (``renormalised_from``).
    """

    shares: Mapping[str, float]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_shares(
        cls,
        shares: Mapping[str, float],
        provenance: Mapping[str, Any] | None = None,
        *,
        tolerance: float = SUM_TOLERANCE,
    ) -> Mixture:
        """Validate ``shares`` (finite, ≥ 0, summing to 1 ± ``tolerance``) and renormalise them."""
        if not isinstance(shares, Mapping) or not shares:
            raise MixtureError("a mixture needs at least one domain → share")
        bad = {}
        values = {}
        for domain, share in shares.items():
            if not isinstance(domain, str) or not domain:
                raise MixtureError(f"domain names must be non-empty strings, got {domain!r}")
            try:
                value = float(share)
            except (TypeError, ValueError):
                bad[domain] = share
                continue
            if not math.isfinite(value) or value < 0:
                bad[domain] = share
            values[domain] = value
        if bad:
            raise MixtureError(f"shares must be finite numbers ≥ 0; invalid: {bad}")
        total = math.fsum(values.values())
        if abs(total - 1.0) > tolerance:
            largest = sorted(values.items(), key=lambda kv: -kv[1])[:5]
            raise MixtureError(
                f"shares sum to {total:.6g}, not 1 (± {tolerance}); largest: "
                + ", ".join(f"{d}={v:.4g}" for d, v in largest)
            )
        prov = dict(provenance or {})
        if total != 1.0:
            prov.setdefault("renormalised_from", total)
        normalised = {d: values[d] / total for d in sorted(values)}
        return cls(MappingProxyType(normalised), MappingProxyType(prov))

    @classmethod
    def natural(cls, tokens: Mapping[str, float], **provenance: Any) -> Mixture:
        """The pool's own token shares (``tokens``: domain → tokens)."""
        total = math.fsum(float(t) for t in tokens.values())
        if total <= 0:
            raise MixtureError("the natural mixture needs a pool with tokens")
        shares = {d: float(t) / total for d, t in tokens.items()}
        return cls.from_shares(shares, {"method": "natural", **provenance})

    @classmethod
    def uniform(cls, domains: Sequence[str], **provenance: Any) -> Mixture:
        """Equal shares over ``domains``."""
        if not domains:
            raise MixtureError("the uniform mixture needs at least one domain")
        return cls.from_shares({d: 1.0 / len(domains) for d in domains}, {"method": "uniform", **provenance})

    @property
    def domains(self) -> list[str]:
        return list(self.shares)

    def as_vector(self, domains: Sequence[str]) -> NDArray[np.float64]:
        """Shares in ``domains`` order, shape (M,); every domain must be on both sides."""
        missing = [d for d in domains if d not in self.shares]
        extra = [d for d in self.shares if d not in set(domains)]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"the mixture lacks {missing}")
            if extra:
                parts.append(f"the mixture names {extra}, which the pool does not have")
            raise MixtureError("; ".join(parts))
        return np.array([self.shares[d] for d in domains], dtype=np.float64)

    def key(self) -> str:
        """Identity of the shares (provenance left out): 16 hex characters."""
        return content_key(dict(self.shares), 16)

    def to_dict(self) -> dict[str, Any]:
        return {"mixture": dict(self.shares), "provenance": dict(self.provenance)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, tolerance: float = SUM_TOLERANCE) -> Mixture:
        if not isinstance(data, Mapping) or "mixture" not in data:
            raise MixtureError("a mixture file needs a top-level 'mixture' mapping (domain → share)")
        unknown = set(data) - {"mixture", "provenance"}
        if unknown:
            raise MixtureError(f"unknown top-level keys {sorted(unknown)} (expected mixture, provenance)")
        provenance = data.get("provenance") or {}
        if not isinstance(provenance, Mapping):
            raise MixtureError("'provenance' must be a mapping")
        return cls.from_shares(data["mixture"], provenance, tolerance=tolerance)

    @classmethod
    def from_file(cls, path: str | Path, *, tolerance: float = SUM_TOLERANCE) -> Mixture:
        """Read a YAML (``.yaml``/``.yml``) or JSON mixture file."""
        try:
            return cls.from_dict(read_structured(path, "mixture", MixtureError), tolerance=tolerance)
        except MixtureError as err:
            raise MixtureError(f"{path}: {err}") from None

    def to_file(self, path: str | Path) -> Path:
        """Write as YAML or JSON (by the suffix); returns the path."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        plain = json.loads(json.dumps(self.to_dict(), default=str))  # provenance values as text
        return write_structured(path, plain, "mixture", MixtureError)


def domain_targets(
    shares: ArrayLike,
    budget: float,
    capacity: ArrayLike,
    shortfall: Literal["error", "redistribute"] = "error",
    domains: Sequence[str] | None = None,
) -> tuple[NDArray[np.float64], list[str]]:
    """Token targets per domain: ``budget × share``, checked against what each domain can give.

    Parameters
    ----------
    shares : (M,) mixture shares (sum 1)
    budget : total tokens
    capacity : (M,) the most tokens each domain can yield (available tokens × max repeats)
    shortfall : ``error`` raises :class:`MixtureError` naming every domain whose target exceeds
        its capacity; ``redistribute`` caps such domains and spreads the rest over the others in
        proportion to their shares, repeatedly, until every target fits.
    domains : (M,) names for messages

    Returns
    -------
    (targets (M,) in tokens, names of the domains that were capped)
    """
    s = np.asarray(shares, dtype=np.float64)
    cap = np.asarray(capacity, dtype=np.float64)
    names = list(domains) if domains is not None else [str(i) for i in range(len(s))]
    if s.shape != cap.shape or s.ndim != 1 or len(names) != len(s):
        raise ValueError(f"shares {s.shape}, capacity {cap.shape} and {len(names)} domains must agree")
    targets = budget * s
    over = targets > cap
    if not over.any():
        return targets, []
    if shortfall == "error":
        lines = [
            f"{names[i]}: target {targets[i]:.0f} tokens, at most {cap[i]:.0f} selectable"
            for i in np.flatnonzero(over)
        ]
        raise MixtureError(
            "the mixture asks more of some domains than they hold (raise select.max_repeats, lower "
            "the budget, or set select.mixture_shortfall: redistribute): " + "; ".join(lines)
        )
    if cap.sum() < budget:
        raise MixtureError(
            f"the budget {budget:.0f} exceeds all domains together ({cap.sum():.0f} selectable)"
        )
    capped = np.zeros(len(s), dtype=bool)
    while True:
        over = ~capped & (targets > cap)
        if not over.any():
            break
        capped |= over
        targets[capped] = cap[capped]
        free = ~capped
        rest = budget - targets[capped].sum()
        if not free.any():
            break
        weights = s[free]
        targets[free] = rest * weights / weights.sum() if weights.sum() > 0 else rest / free.sum()
    return targets, [names[i] for i in np.flatnonzero(capped)]
