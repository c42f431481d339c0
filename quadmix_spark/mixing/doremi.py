"""DoReMi: domain reweighting with minimax optimisation (Xie et al., NeurIPS 2023; mixing_laws.md §4).

1. A **reference** tinylm is trained for ``reference_steps`` on the reference weights α_ref
   (``reference_weights``: uniform by default) and frozen.
2. A **proxy** of the same shape (same initialisation) trains for ``steps`` with Group DRO. At
   each step, on a batch holding ``seqs_per_domain`` windows of every domain:

   * per-domain excess loss, clipped per token before averaging:
     ``λ_m = mean over tokens of domain m of max(ℓ_proxy(tok) − ℓ_ref(tok), 0)``;
   * exponentiated-gradient step and smoothing (:func:`doremi_update`):
     ``α' = softmax(log α_{t−1} + η λ)``, ``α_t = (1 − c) α' + c / M``;
   * the proxy takes an AdamW step on ``Σ_m α_t[m] ℓ_m(proxy)`` (equal windows per domain, so
     DoReMi's division by the sampling weights is a factor 1).
3. The output is the time average ``ᾱ = (1/T) Σ_t α_t`` (``final="average"``, DoReMi's
   ``avg_domain_weights``; ``"last"`` gives α_T).
4. ``rounds`` R repeats 1–3: round k's reference trains on round k − 1's ᾱ (the paper iterates
   DoReMi from a uniform reference, so R defaults to 2 then and to 1 for any other reference).
   Each round starts from the same initialisation, window order and α_0; only the reference
   changes. The output and ``history_`` are the last round's; ``rounds_`` holds every round's.

Both models use tinylm's schedule (warmup 5%, cosine to 10% of ``lr``) over their own steps.
Validation streams are accepted and ignored: DoReMi optimises the worst-case excess loss over
the training domains and never sees target data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from quadmix_spark.proxy.tinylm import make_optimizer, resolve_device, training_settings

from .proxy_training import DomainWindows, domain_losses, new_model, sgd_step
from .reweighting import OnlineReweighter, _int, _positive, initial_alpha

__all__ = ["DoReMi", "default_rounds", "doremi_update"]

_REFERENCE, _PROXY = 11, 12  # window-order purposes
_IGNORE = -100


def default_rounds(reference_weights: Any) -> int:
    """DoReMi's rounds when none are given: 2 from a uniform reference (the paper's iterated
    DoReMi), 1 from any other (it already encodes a prior mixture)."""
    return 2 if isinstance(reference_weights, str) and reference_weights == "uniform" else 1


def doremi_update(alpha: ArrayLike, excess: ArrayLike, eta: float, smoothing: float) -> NDArray[np.float64]:
    """DoReMi's weight update: ``(1 − c)·softmax(log α + η λ) + c/M`` (float64, (M,))."""
    a = np.asarray(alpha, dtype=np.float64)
    logits = np.log(a) + eta * np.asarray(excess, dtype=np.float64)
    logits -= logits.max()
    updated = np.exp(logits) / np.exp(logits).sum()
    return (1.0 - smoothing) * updated + smoothing / a.size


class DoReMi(OnlineReweighter):
    """DoReMi's Group-DRO proxy against a frozen reference (module docstring); shared parameters
    in :class:`~quadmix_spark.mixing.reweighting.OnlineReweighter` (``init`` is the proxy's α_0).

    Parameters
    ----------
    eta : float
        η, the exponentiated-gradient step size (paper: 1).
    smoothing : float
        c ∈ [0, 1), mixed-in uniform weight (paper's run scripts: 1e-3).
    steps : int
        Proxy steps T.
    reference_steps : int, optional
        Reference training steps; default ``steps``.
    reference_weights : "uniform" | "natural" | mapping
        α_ref, the reference's mixture.
    lr : float
        Peak AdamW learning rate of both models.
    rounds : int, optional
        R ≥ 1 (step 4); default 2 with a uniform reference, else 1.

    Attributes (after fit; see also OnlineReweighter)
    -------------------------------------------------
    history_ : list of dict, one per proxy step::

        {"step": t (1-based), "alpha": α_t (M,), "excess": λ_t (M,),
         "loss_proxy": ℓ_m(proxy) (M,), "loss_reference": ℓ_m(ref) (M,), "train_loss": Σ α_t ℓ}

      per-domain losses are the batch means before the step (nats/token).
    alpha_trajectory_ : (T, M) α_t.
    reference_ : the frozen reference model;  model_ : the proxy.
    reference_alpha_ : (M,) α_ref of the last round.
    rounds_ : list of dict, one per round::

        {"round": k (1-based), "reference_alpha": α_ref (M,), "alpha_avg": ᾱ (M,), "alpha_last": α_T (M,)}
    """

    method = "doremi"
    signal = "excess"
    record_unit = "step"

    def __init__(
        self,
        eta: float = 1.0,
        smoothing: float = 1e-3,
        steps: int = 1000,
        reference_steps: int | None = None,
        reference_weights: str | Mapping[str, float] = "uniform",
        lr: float = 3e-3,
        rounds: int | None = None,
        **shared: Any,
    ) -> None:
        super().__init__(**shared)
        self.eta = _positive(eta, "eta")
        smoothing = _positive(smoothing, "smoothing", allow_zero=True)
        if smoothing >= 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.smoothing = smoothing
        self.steps = _int(steps, "steps", 1)
        self.reference_steps = (
            self.steps if reference_steps is None else _int(reference_steps, "reference_steps", 0)
        )
        if not (reference_weights in ("uniform", "natural") or isinstance(reference_weights, Mapping)):
            raise ValueError(
                "reference_weights must be 'uniform', 'natural' or a domain → share mapping, "
                f"got {reference_weights!r}"
            )
        self.reference_weights = reference_weights
        self.lr = _positive(lr, "lr")
        self.rounds = default_rounds(reference_weights) if rounds is None else _int(rounds, "rounds", 1)

    @classmethod
    def identity_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with ``rounds`` filled in where its default is not the one round runs once
        had: a uniform reference now iterates, so its runs get ids of their own."""
        rounds = default_rounds(params.get("reference_weights", "uniform"))
        return dict(params) if "rounds" in params or rounds == 1 else {**params, "rounds": rounds}

    def get_params(self) -> dict[str, Any]:
        out = super().get_params()
        rw = self.reference_weights
        out["reference_weights"] = dict(rw) if isinstance(rw, Mapping) else rw
        return out

    def fit(
        self, train_streams: Mapping[str, ArrayLike], val_streams: Mapping[str, ArrayLike] | None = None
    ) -> DoReMi:
        """Train the reference, then the Group-DRO proxy, on ``train_streams`` (domain → ids).

        Streams follow :mod:`quadmix_spark.mixing.reweighting`; ≥ 2 domains. Returns ``self``.
        """
        if not isinstance(train_streams, Mapping) or len(train_streams) < 2:
            raise ValueError("train_streams must hold at least 2 domains to reweight")
        train, _ = self._prepare(train_streams, val_streams)
        device = resolve_device(self.device)
        with training_settings(device, self.threads):
            self._run(train, device)
        return self

    def _run(self, train: dict, device: torch.device) -> None:
        reference_alpha = initial_alpha(self.reference_weights, self.domains_, train)
        self.rounds_: list[dict[str, Any]] = []
        for k in range(1, self.rounds + 1):
            reference = self._train_reference(train, device, reference_alpha)
            proxy, batches, history = self._train_proxy(train, device, reference)
            trajectory = np.array([h["alpha"] for h in history], dtype=np.float64)
            self.rounds_.append(
                {
                    "round": k,
                    "reference_alpha": reference_alpha.tolist(),
                    "alpha_avg": trajectory.mean(axis=0).tolist(),
                    "alpha_last": trajectory[-1].tolist(),
                }
            )
            self.reference_alpha_ = reference_alpha
            reference_alpha = trajectory.mean(axis=0)
        self.history_ = history
        self.alpha_trajectory_ = trajectory
        self.epochs_ = batches.epochs()
        self.n_train_tokens_ = batches.tokens_drawn()
        self.reference_ = reference
        self.model_ = proxy
        self.mixture_ = self._final_mixture(
            self.alpha_trajectory_,
            {"steps": self.steps, "reference_steps": self.reference_steps, "rounds": self.rounds_},
        )

    def result(self) -> dict[str, Any]:
        """:meth:`OnlineReweighter.result` and ``rounds`` (``rounds_``)."""
        return {**super().result(), "rounds": self.rounds_}

    def _train_reference(self, train: dict, device: torch.device, alpha: np.ndarray) -> torch.nn.Module:
        """A fresh tinylm trained ``reference_steps`` on Σ α_ref[m] ℓ_m, frozen."""
        m = len(train)
        reference = new_model(self).to(device)
        a_ref = torch.tensor(alpha, dtype=torch.float32, device=device)
        ref_batches = DomainWindows(train, self.context, self.seqs_per_domain, self.seed, _REFERENCE, device)
        opt = make_optimizer(reference, self.lr)
        for step in range(1, self.reference_steps + 1):
            x, y = ref_batches.next()
            sgd_step(
                reference,
                opt,
                a_ref @ domain_losses(reference, x, y, m)[0],
                step,
                self.reference_steps,
                self.lr,
            )
        reference.eval()
        reference.requires_grad_(False)
        return reference

    def _train_proxy(self, train: dict, device: torch.device, reference: torch.nn.Module):
        """The Group-DRO proxy against ``reference``: (proxy, its batches, history)."""
        m = len(train)
        proxy = new_model(self).to(device)
        opt = make_optimizer(proxy, self.lr)
        batches = DomainWindows(train, self.context, self.seqs_per_domain, self.seed, _PROXY, device)
        alpha = initial_alpha(self.init, self.domains_, train)
        history: list[dict[str, Any]] = []
        for step in range(1, self.steps + 1):
            x, y = batches.next()
            with torch.no_grad():
                ref_losses, ref_nll = domain_losses(reference, x, y, m)
            losses, nll = domain_losses(proxy, x, y, m)
            keep = (y != _IGNORE).view(m, -1)
            clipped = (nll.detach() - ref_nll).clamp(min=0).view(m, -1)
            excess = (clipped.double().sum(dim=1) / keep.sum(dim=1).clamp(min=1)).cpu().numpy()
            alpha = doremi_update(alpha, excess, self.eta, self.smoothing)
            loss = torch.tensor(alpha, dtype=torch.float32, device=device) @ losses
            history.append(
                {
                    "step": step,
                    "alpha": alpha.tolist(),
                    "excess": excess.tolist(),
                    "loss_proxy": losses.detach().double().cpu().tolist(),
                    "loss_reference": ref_losses.double().cpu().tolist(),
                    "train_loss": float(loss.detach()),
                }
            )
            sgd_step(proxy, opt, loss, step, self.steps, self.lr)
        return proxy, batches, history
