"""θ: the QuaDMix parameters (α per domain and scorer, β = (λ, ω, η, ε) per domain).

Flat vector layout (the regressor's features; quadmix.md §3), length (N + 4)·M::

    θ = (α[d1, s1..sN], λ[d1], ω[d1], η[d1], ε[d1], α[d2, s1..sN], λ[d2], …)

File format (YAML or JSON, chosen by suffix)::

    version: 1
    scorers: [fineweb_edu, dclm]
    domains:
      News:
        alpha: {fineweb_edu: 0.4, dclm: 0.6}
        lambda: 10.0
        omega: 0.5
        eta: 1.0
        epsilon: 0.001

Every problem raises :class:`ParamsError` (a ``ValueError``) whose message names the key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import ArrayLike, NDArray

from .identity import content_key

__all__ = [
    "BETA_KEYS",
    "BETA_MAX",
    "ParamsError",
    "QuadMixParams",
    "check_against",
    "load_params",
    "param_names",
    "params_hash",
    "save_params",
    "uniform",
]

#: File keys of β in vector order; attributes are ``lam, omega, eta, eps``.
BETA_KEYS = ("lambda", "omega", "eta", "epsilon")
_BETA_ATTRS = ("lam", "omega", "eta", "eps")
_ALPHA_TOL = 1e-6
#: Upper ends of the β entries that are shares or rates (λ and η have none).
BETA_MAX = {
    "omega": (1.0, "ω is the share of a domain's tokens kept at least once"),
    "epsilon": (1.0, "ε is the keep rate past the cut-off"),
}
FORMAT_VERSION = 1


class ParamsError(ValueError):
    """Invalid parameters, parameter file, or parameters that do not fit the data."""


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ParamsError(f"{what} must be a list of names, got {type(value).__name__}")
    names = tuple(value)
    if not names:
        raise ParamsError(f"{what} must not be empty")
    for x in names:
        if not isinstance(x, str) or not x:
            raise ParamsError(f"{what}: every name must be a non-empty string, got {x!r}")
    seen: set[str] = set()
    for x in names:
        if x in seen:
            raise ParamsError(f"duplicate {what[:-1]} name {x!r}")
        seen.add(x)
    return names


def _float_array(value: Any, key: str, shape: tuple[int, ...]) -> NDArray[np.float64]:
    arr = np.asarray(value)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ParamsError(f"{key} must be numeric, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ParamsError(f"{key} has shape {arr.shape}, expected {shape}")
    out = arr.astype(np.float64)  # always a private copy
    out.setflags(write=False)
    return out


def param_names(domains: Sequence[str], scorers: Sequence[str]) -> list[str]:
    """Names of the flat vector entries, e.g. ``alpha[News,dclm]``, ``lambda[News]``."""
    out: list[str] = []
    for d in domains:
        out += [f"alpha[{d},{s}]" for s in scorers]
        out += [f"{b}[{d}]" for b in BETA_KEYS]
    return out


@dataclass(frozen=True, eq=False)
class QuadMixParams:
    """Validated, immutable θ.

    Attributes
    ----------
    domains : tuple of M str
    scorers : tuple of N str
    alpha : ndarray (M, N), rows ≥ 0 summing to 1
    lam, omega, eta, eps : ndarray (M,), each ≥ 0 and finite
    """

    domains: tuple[str, ...]
    scorers: tuple[str, ...]
    alpha: NDArray[np.float64]
    lam: NDArray[np.float64]
    omega: NDArray[np.float64]
    eta: NDArray[np.float64]
    eps: NDArray[np.float64]

    def __post_init__(self) -> None:
        domains = _names(self.domains, "domains")
        scorers = _names(self.scorers, "scorers")
        m, n = len(domains), len(scorers)
        object.__setattr__(self, "domains", domains)
        object.__setattr__(self, "scorers", scorers)
        alpha = _float_array(self.alpha, "alpha", (m, n))
        object.__setattr__(self, "alpha", alpha)
        for i, d in enumerate(domains):
            for j, s in enumerate(scorers):
                v = alpha[i, j]
                if not math.isfinite(v):
                    raise ParamsError(f"alpha[domain={d}, scorer={s}] = {v} is not finite")
                if v < 0:
                    raise ParamsError(f"alpha[domain={d}, scorer={s}] = {v} is negative")
            total = float(alpha[i].sum())
            if abs(total - 1.0) > _ALPHA_TOL:
                raise ParamsError(f"alpha[domain={d}] sums to {total:.6g}, must sum to 1 (±{_ALPHA_TOL:g})")
        for key, attr in zip(BETA_KEYS, _BETA_ATTRS, strict=True):
            arr = _float_array(getattr(self, attr), key, (m,))
            for i, d in enumerate(domains):
                if not math.isfinite(arr[i]):
                    raise ParamsError(f"{key}[domain={d}] = {arr[i]} is not finite")
                if arr[i] < 0:
                    raise ParamsError(f"{key}[domain={d}] = {arr[i]} is negative")
                if key in BETA_MAX and arr[i] > BETA_MAX[key][0]:
                    top, meaning = BETA_MAX[key]
                    raise ParamsError(
                        f"{key}[domain={d}] = {arr[i]} is above {top:g} ({meaning}, in [0, {top:g}])"
                    )
            object.__setattr__(self, attr, arr)

    # -- shape helpers -------------------------------------------------------------------
    @property
    def n_domains(self) -> int:
        return len(self.domains)

    @property
    def n_scorers(self) -> int:
        return len(self.scorers)

    @property
    def beta(self) -> NDArray[np.float64]:
        """(M, 4) array of (λ, ω, η, ε) per domain."""
        return np.stack([self.lam, self.omega, self.eta, self.eps], axis=1)

    def domain_index(self, labels: ArrayLike) -> NDArray[np.int64]:
        """Map domain labels (strings) to row indices of ``alpha``; unknown labels raise."""
        arr = np.asarray(labels, dtype=object)
        uniq, inverse = np.unique(arr, return_inverse=True)
        lookup = {d: i for i, d in enumerate(self.domains)}
        unknown = [u for u in uniq if u not in lookup]
        if unknown:
            raise ParamsError(f"unknown domain label(s) {unknown[:5]!r} not in params")
        return np.array([lookup[u] for u in uniq], dtype=np.int64)[inverse].reshape(arr.shape)

    # -- flat vector -------------------------------------------------------------------
    def to_vector(self) -> NDArray[np.float64]:
        """θ as a float64 vector of length (N + 4)·M in the module's layout."""
        return np.concatenate([self.alpha, self.beta], axis=1).ravel()

    @classmethod
    def from_vector(cls, vec: ArrayLike, domains: Sequence[str], scorers: Sequence[str]) -> QuadMixParams:
        """Inverse of :meth:`to_vector` (exact)."""
        v = np.asarray(vec, dtype=np.float64)
        m, n = len(domains), len(scorers)
        if v.ndim != 1 or v.size != (n + 4) * m:
            raise ParamsError(
                f"vector has shape {v.shape}, expected ({(n + 4) * m},) = (N+4)·M "
                f"for N={n} scorers and M={m} domains"
            )
        block = v.reshape(m, n + 4)
        return cls(
            tuple(domains),
            tuple(scorers),
            block[:, :n],
            block[:, n],
            block[:, n + 1],
            block[:, n + 2],
            block[:, n + 3],
        )

    # -- plain-data form ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        domains: dict[str, Any] = {}
        for i, d in enumerate(self.domains):
            block: dict[str, Any] = {
                "alpha": {s: float(self.alpha[i, j]) for j, s in enumerate(self.scorers)}
            }
            for key, attr in zip(BETA_KEYS, _BETA_ATTRS, strict=True):
                block[key] = float(getattr(self, attr)[i])
            domains[d] = block
        return {"version": FORMAT_VERSION, "scorers": list(self.scorers), "domains": domains}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "params") -> QuadMixParams:
        """Parse the file structure strictly; ``source`` prefixes error messages."""

        def fail(msg: str) -> ParamsError:
            return ParamsError(f"{source}: {msg}")

        if not isinstance(data, Mapping):
            raise fail(f"top level must be a mapping, got {type(data).__name__}")
        expected = ("version", "scorers", "domains")
        for key in data:
            if key not in expected:
                raise fail(f"unknown top-level key {key!r} (expected {', '.join(expected)})")
        for key in expected:
            if key not in data:
                raise fail(f"missing top-level key {key!r}")
        version = data["version"]
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise fail(f"version must be {FORMAT_VERSION}, got {version!r}")
        try:
            scorers = _names(data["scorers"], "scorers")
        except ParamsError as e:
            raise fail(str(e)) from None
        blocks = data["domains"]
        if not isinstance(blocks, Mapping) or not blocks:
            raise fail("domains must be a non-empty mapping of domain name -> settings")

        def number(value: Any, key: str) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise fail(f"{key} must be a number, got {type(value).__name__} {value!r}")
            return float(value)

        domains, alpha, beta = [], [], []
        for name, block in blocks.items():
            if not isinstance(name, str):
                raise fail(f"domain names must be strings, got {name!r}")
            where = f"domains.{name}"
            if not isinstance(block, Mapping):
                raise fail(f"{where} must be a mapping, got {type(block).__name__}")
            allowed = ("alpha", *BETA_KEYS)
            for key in block:
                if key not in allowed:
                    raise fail(f"unknown key {where}.{key} (expected {', '.join(allowed)})")
            for key in allowed:
                if key not in block:
                    raise fail(f"{where}: missing {key!r}")
            weights = block["alpha"]
            if not isinstance(weights, Mapping):
                raise fail(f"{where}.alpha must be a mapping scorer -> weight")
            for s in weights:
                if s not in scorers:
                    raise fail(f"{where}.alpha: unknown scorer {s!r} (scorers: {list(scorers)})")
            for s in scorers:
                if s not in weights:
                    raise fail(f"{where}.alpha: missing scorer {s!r}")
            domains.append(name)
            alpha.append([number(weights[s], f"{where}.alpha.{s}") for s in scorers])
            beta.append([number(block[k], f"{where}.{k}") for k in BETA_KEYS])
        b = np.array(beta, dtype=np.float64)
        try:
            return cls(tuple(domains), scorers, np.array(alpha), b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        except ParamsError as e:
            raise fail(str(e)) from None

    # -- identity ----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuadMixParams):
            return NotImplemented
        return (
            self.domains == other.domains
            and self.scorers == other.scorers
            and np.array_equal(self.to_vector(), other.to_vector())
        )

    def __hash__(self) -> int:
        return hash(params_hash(self))


def uniform(
    domains: Sequence[str],
    scorers: Sequence[str],
    *,
    lam: float = 10.0,
    omega: float = 0.5,
    eta: float = 1.0,
    eps: float = 1e-3,
) -> QuadMixParams:
    """Equal α = 1/N for every domain and the same β everywhere.

    Defaults keep the better half of each domain's tokens (ω = 0.5), ramp the top docs
    smoothly to ~2 copies (λ = 10, η = 1: S(0) = 2·sigmoid(5) ≈ 1.99) and keep ε = 0.1%
    of the rest, i.e. ≈ 0.86·T_m expected tokens per domain. The paper's Alg. 1 ranges are
    much more selective (ω ≤ 0.1).
    """
    domains = _names(domains, "domains")
    scorers = _names(scorers, "scorers")
    m, n = len(domains), len(scorers)
    return QuadMixParams(
        domains,
        scorers,
        np.full((m, n), 1.0 / n),
        np.full(m, float(lam)),
        np.full(m, float(omega)),
        np.full(m, float(eta)),
        np.full(m, float(eps)),
    )


def params_hash(params: QuadMixParams) -> str:
    """sha256 (first 16 hex chars) of the canonical JSON of the params.

    Canonical: keys sorted, scorer list sorted, -0.0 written as 0.0, floats by repr, so
    the hash identifies the selection and not the order in which names are listed.
    """
    data = params.to_dict()
    data["scorers"] = sorted(data["scorers"])
    for block in data["domains"].values():
        for key in BETA_KEYS:
            block[key] += 0.0
        block["alpha"] = {s: w + 0.0 for s, w in block["alpha"].items()}
    return content_key(data, 16)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 would make it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """The project's one YAML reader (params files, config files, ``--set`` values): safe, and
    ``1e-3`` is a float (YAML 1.1 would make it a string)."""
    return yaml.load(text, Loader=_Loader)


def _format(path: Path, what: str, error: type[Exception]) -> str:
    fmt = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}.get(path.suffix.lower())
    if fmt is None:
        raise error(f"{path}: unknown {what} file suffix {path.suffix!r} (use .yaml, .yml or .json)")
    return fmt


def read_structured(path: str | Path, what: str = "params", error: type[Exception] = ParamsError) -> Any:
    """The content of a YAML or JSON ``what`` file (by suffix); failures raise ``error`` naming it."""
    path = Path(path)
    fmt = _format(path, what, error)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"{path}: cannot read {what} file ({e.strerror})") from e
    try:
        return load_yaml(text) if fmt == "yaml" else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise error(f"{path}: not valid {fmt.upper()}: {e}") from e


def load_params(path: str | Path) -> QuadMixParams:
    """Read a params file (YAML or JSON by suffix); errors name the file and key."""
    return QuadMixParams.from_dict(read_structured(path), source=str(path))


def write_structured(
    path: str | Path, data: Any, what: str = "params", error: type[Exception] = ParamsError
) -> Path:
    """Write plain data (dicts, lists, str, finite floats) as YAML or JSON by suffix; returns the path."""
    path = Path(path)
    if _format(path, what, error) == "yaml":
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    else:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def save_params(params: QuadMixParams, path: str | Path) -> None:
    """Write ``params`` (YAML or JSON by suffix); floats round-trip exactly."""
    write_structured(path, params.to_dict())


def check_against(
    params: QuadMixParams,
    domains_in_data: Iterable[str],
    scorers_in_data: Iterable[str],
    *,
    allow_unused_domains: bool = False,
) -> None:
    """Check that ``params`` fit the data before any Spark work starts.

    Errors (all listed in one message): a scorer of the params the data lacks; a domain of
    the data the params lack; a domain of the params the data does not know (a typo),
    unless ``allow_unused_domains``. Extra scorers in the data are fine (unused).
    """
    data_domains, data_scorers = set(domains_in_data), set(scorers_in_data)
    problems = []
    missing_scorers = [s for s in params.scorers if s not in data_scorers]
    if missing_scorers:
        problems.append(f"unknown scorer(s) {missing_scorers} (data has {sorted(data_scorers)})")
    missing_domains = sorted(data_domains - set(params.domains))
    if missing_domains:
        problems.append(f"domain(s) {missing_domains} of the data are missing from params")
    unknown_domains = [d for d in params.domains if d not in data_domains]
    if unknown_domains and not allow_unused_domains:
        problems.append(f"unknown domain(s) {unknown_domains} not present in the data")
    if problems:
        raise ParamsError("params do not match the data: " + "; ".join(problems))
