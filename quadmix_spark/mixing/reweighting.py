"""Online domain reweighting with tinylm proxies: the shared contract, machinery and ``Uniform``.

TANDEM (:mod:`.tandem`) and DoReMi (:mod:`.doremi`) learn a domain mixture α while training small
tinylm models (:mod:`quadmix_spark.proxy.tinylm`) on per-domain token streams; ``Uniform`` is the
trivial baseline with the same interface. Every method is a small estimator::

    method = Tandem(episodes=50, probe_steps=5, free_steps=20, seed=0)
    method.fit(train_streams, val_streams)
    method.mixture_          # core.Mixture: the final α (domain → share), with provenance
    method.history_          # one dict per episode (TANDEM) / step (DoReMi): α, signal, losses
    method.result()          # JSON-able summary for a runs table

Every method is registered by name in :data:`quadmix_spark.mixing.reweighters.REWEIGHTERS`
(``reweight.methods``), built from keyword arguments and called the same way by the reweight
job: ``cls(**shape, **params, seed=s, vocab=v).fit(train, val)``, then ``result()``.

Streams (the input contract)
----------------------------
``train_streams``: mapping domain name → 1-D int array of **tokenizer** ids (cl100k by default,
``source_vocab_size``): the domain's sampled documents concatenated, each followed by the
end-of-text id, in a fixed order (the ``domain_streams`` job writes them). ``val_streams``: mapping
evaluation-set name → 1-D int array, the same way: TANDEM's "additional" (target/validation) data;
DoReMi and Uniform accept and ignore it. Every stream needs at least 2 tokens (one prediction).
Domain order everywhere (α vectors, histories) is the sorted domain names.

Batches
-------
A stream is cut into non-overlapping windows of ``context + 1`` tokens (the tail padded), as tinylm
does. A step draws ``seqs_per_domain`` windows from *every* domain (val set) and weighs the
per-domain mean token losses ℓ_m by α: ``L_train(α, θ) = Σ_m α_m ℓ_m(θ)``, the form both papers
optimise (DoReMi divides α by the sampling weights when sampling is not uniform; equal windows per
domain make that factor 1). Each domain's windows are visited in a seeded random order, epoch after
epoch, so a small domain is repeated; ``epochs_`` reports how many passes each domain took
(the data-restricted setting of TANDEM).

Proxy vocabulary
----------------
``vocab="top:N"`` (default ``top:8192``) maps the streams through a :class:`ProxyVocab` built from
the training streams' token counts (N most frequent ids + UNK): the output layer is then ~12×
smaller at cl100k, which is most of the cost. Pass a built ``ProxyVocab`` instead so several runs
(seeds, hyperparameters, methods) share one mapping: their losses are comparable only then
(``vocab_key_``; :func:`quadmix_spark.proxy.vocab.check_comparable`). ``"full"`` keeps the tokenizer's
ids (slow). The mixture itself does not depend on comparing losses across runs.

Reproducibility: on the CPU, the same streams, parameters and seed give identical results
(deterministic algorithms, ``threads`` intra-op threads, seeded windows and initialisation; the
global torch RNG is left alone). CUDA runs use bf16 autocast and are seeded, not bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quadmix_spark.core.mixture import Mixture
from quadmix_spark.proxy.ngram import CL100K_N_VOCAB
from quadmix_spark.proxy.vocab import ProxyVocab, full_vocab_key, parse_vocab_spec

__all__ = ["OnlineReweighter", "Uniform", "check_streams"]


def _int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _positive(value: Any, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def check_streams(
    streams: Mapping[str, ArrayLike], source_size: int, what: str, min_streams: int = 1
) -> dict[str, NDArray[np.int64]]:
    """``streams`` as {name: int64 (T,)} sorted by name, each with ≥ 2 ids in [0, source_size)."""
    if not isinstance(streams, Mapping) or len(streams) < min_streams:
        raise ValueError(f"{what} must map at least {min_streams} name(s) to token arrays")
    out = {}
    for name in sorted(streams):
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what}: names must be non-empty strings, got {name!r}")
        arr = np.asarray(streams[name])
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{what}[{name!r}] must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        if arr.size < 2:
            raise ValueError(f"{what}[{name!r}] has {arr.size} token(s): at least 2 are needed")
        if arr.min() < 0 or arr.max() >= source_size:
            raise ValueError(
                f"{what}[{name!r}]: token ids must be in [0, {source_size}), got [{arr.min()}, {arr.max()}]"
            )
        out[name] = arr.astype(np.int64, copy=False)
    return out


def initial_alpha(init: str | Mapping[str, float], domains: list[str], streams: Mapping[str, Any]) -> NDArray:
    """α_0 in ``domains`` order: ``"uniform"``, ``"natural"`` (token shares) or a mapping."""
    if init == "uniform":
        return np.full(len(domains), 1.0 / len(domains))
    if init == "natural":
        sizes = np.array([len(streams[d]) for d in domains], dtype=np.float64)
        return sizes / sizes.sum()
    if isinstance(init, Mapping):
        return Mixture.from_shares(init).as_vector(domains)
    raise ValueError(
        f"initial weights must be 'uniform', 'natural' or a domain → share mapping, got {init!r}"
    )


class OnlineReweighter:
    """Shared parameters, stream checks and results of the online reweighting methods.

    Parameters (shared)
    -------------------
    d_model, n_layers, n_heads, d_ff, context : int
        The tinylm shape (defaults: tinylm's, ~1.3M non-embedding parameters).
    seqs_per_domain : int
        Windows of every domain (and of every val set) per optimizer step.
    vocab : "top:N" | "full" | ProxyVocab
        The proxy vocabulary (module docstring). Default ``top:8192``.
    source_vocab_size : int
        Tokenizer ids lie in [0, source_vocab_size); default cl100k's.
    init : "uniform" | "natural" | mapping
        α_0.
    final : "average" | "last"
        The mixture reported: the time average of α over the run (default) or the last α.
    seed : int
        Initialisation and window order.
    device : "cpu" | "cuda" | "cuda:N" | "auto";  threads : int (torch intra-op threads).

    Attributes (after fit)
    ----------------------
    domains_ : list of str (M,) sorted domain names.
    mixture_ : core.Mixture, the final α (``final``), provenance: method, parameters, vocab key.
    alpha_trajectory_ : float64 (n_records, M), α after each episode / step.
    history_ : list of dict, one per episode / step (method docstrings).
    vocab_ : ProxyVocab or None;  vocab_key_ : str (``"full:<V>"`` without a mapping).
    epochs_ : dict domain → passes over its windows taken by the trained proxy.
    n_train_tokens_ : int, tokens (targets) the main proxy was trained on.
    """

    method = ""
    #: True when ``fit`` trains on ``val_streams`` (TANDEM): the job then requires them. The
    #: others accept and ignore them (unchecked).
    uses_val = False
    #: the ``history_`` key of the per-domain signal that moves α (TANDEM's Δ ``"delta"``,
    #: DoReMi's excess loss ``"excess"``); None: no such signal.
    signal: str | None = None
    #: what one ``history_`` record is (an α plot's x axis): ``"episode"``, ``"step"``.
    record_unit = "record"

    def __init__(
        self,
        *,
        d_model: int = 256,
        n_layers: int = 2,
        n_heads: int = 8,
        d_ff: int = 512,
        context: int = 256,
        seqs_per_domain: int = 4,
        vocab: str | ProxyVocab = "top:8192",
        source_vocab_size: int = CL100K_N_VOCAB,
        init: str | Mapping[str, float] = "uniform",
        final: str = "average",
        seed: int = 0,
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        self.d_model = _int(d_model, "d_model", 2)
        self.n_layers = _int(n_layers, "n_layers", 1)
        self.n_heads = _int(n_heads, "n_heads", 1)
        self.d_ff = _int(d_ff, "d_ff", 1)
        self.context = _int(context, "context", 1)
        if self.d_model % (2 * self.n_heads):
            raise ValueError(
                f"d_model / n_heads must be an even int, got d_model={d_model}, n_heads={n_heads}"
            )
        self.seqs_per_domain = _int(seqs_per_domain, "seqs_per_domain", 1)
        self.source_vocab_size = _int(source_vocab_size, "source_vocab_size", 2)
        if isinstance(vocab, ProxyVocab):
            if vocab.source_size != self.source_vocab_size:
                raise ValueError(
                    f"vocab maps {vocab.source_size} tokenizer ids, "
                    f"source_vocab_size is {self.source_vocab_size}"
                )
        else:
            parse_vocab_spec(vocab, "vocab")
        self.vocab = vocab
        if not (init in ("uniform", "natural") or isinstance(init, Mapping)):
            raise ValueError(f"init must be 'uniform', 'natural' or a domain → share mapping, got {init!r}")
        self.init = init
        if final not in ("average", "last"):
            raise ValueError(f"final must be 'average' or 'last', got {final!r}")
        self.final = final
        self.seed = _int(seed, "seed", 0)
        if not isinstance(device, str) or not (
            device in ("cpu", "cuda", "auto") or device.startswith("cuda:")
        ):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
        self.device = device
        self.threads = _int(threads, "threads", 1)

    # -- shared pieces -------------------------------------------------------------------------

    @classmethod
    def identity_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """A hyperparameter set as a run's id sees it (the reweight job hashes it): ``params`` as
        given. A method whose default changed what a run computes adds that default here, so the
        runs recorded under the old default are not taken for the new ones."""
        return dict(params)

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-able (a ProxyVocab appears as its key)."""
        out = {}
        for name, value in vars(self).items():
            if name.endswith("_") or name.startswith("_"):
                continue
            out[name] = value.key() if isinstance(value, ProxyVocab) else value
        out["init"] = dict(self.init) if isinstance(self.init, Mapping) else self.init
        return out

    def _prepare(
        self,
        train_streams: Mapping[str, ArrayLike],
        val_streams: Mapping[str, ArrayLike] | None,
    ) -> tuple[dict[str, NDArray[np.int64]], dict[str, NDArray[np.int64]]]:
        """Checked streams mapped through the proxy vocabulary; sets ``domains_``, ``vocab_``."""
        train = check_streams(train_streams, self.source_vocab_size, "train_streams")
        # a method that ignores the validation streams neither checks nor maps them
        val = check_streams(val_streams, self.source_vocab_size, "val_streams") if self.uses_val else {}
        self.domains_ = list(train)
        if isinstance(self.vocab, ProxyVocab):
            vocab: ProxyVocab | None = self.vocab
        else:
            n = parse_vocab_spec(self.vocab, "vocab")
            vocab = None if n is None else ProxyVocab.from_streams(train.values(), n, self.source_vocab_size)
        self.vocab_ = vocab
        self.vocab_key_ = vocab.key() if vocab is not None else full_vocab_key(self.source_vocab_size)
        if vocab is not None:
            train = {d: vocab.encode(s) for d, s in train.items()}
            val = {d: vocab.encode(s) for d, s in val.items()}
        return train, val

    @property
    def model_vocab_size(self) -> int:
        return self.vocab_.size if getattr(self, "vocab_", None) is not None else self.source_vocab_size

    def _final_mixture(self, trajectory: NDArray[np.float64], extra: Mapping[str, Any]) -> Mixture:
        alpha = trajectory.mean(axis=0) if self.final == "average" else trajectory[-1]
        provenance = {
            "method": self.method,
            "final": self.final,
            "params": self.get_params(),
            "vocab_key": self.vocab_key_,
            **extra,
        }
        return Mixture.from_shares(
            dict(zip(self.domains_, (float(a) for a in alpha), strict=True)), provenance
        )

    def result(self) -> dict[str, Any]:
        """A JSON-able summary: method, params, domains, α trajectory, history, mixture, vocab, epochs."""
        return {
            "method": self.method,
            "params": self.get_params(),
            "domains": list(self.domains_),
            "alpha": self.alpha_trajectory_.tolist(),
            "history": self.history_,
            "mixture": dict(self.mixture_.shares),
            "final": self.final,
            "vocab_key": self.vocab_key_,
            "epochs": dict(self.epochs_),
            "n_train_tokens": int(self.n_train_tokens_),
        }


class Uniform(OnlineReweighter):
    """The trivial baseline: α = 1/M for every domain, nothing trained.

    Same interface as :class:`~quadmix_spark.mixing.tandem.Tandem`; ``history_`` is empty,
    ``alpha_trajectory_`` has the one row α_0, ``epochs_`` are 0 and ``n_train_tokens_`` is 0.
    ``val_streams`` is accepted and ignored.
    """

    method = "uniform"

    def fit(
        self, train_streams: Mapping[str, ArrayLike], val_streams: Mapping[str, ArrayLike] | None = None
    ) -> Uniform:
        self._prepare(train_streams, val_streams)
        m = len(self.domains_)
        self.alpha_trajectory_ = np.full((1, m), 1.0 / m)
        self.history_: list[dict[str, Any]] = []
        self.epochs_ = dict.fromkeys(self.domains_, 0.0)
        self.n_train_tokens_ = 0
        self.mixture_ = self._final_mixture(self.alpha_trajectory_, {})
        return self
