"""TANDEM: twin networks for bi-level data-mixture optimisation (NeurIPS 2025; mixing_laws.md §2).

The bi-level problem ``min_α L_val(w*(α))``, ``w*(α) ∈ argmin_w L_train(α, w)`` is relaxed to
``min_{α, w} L_val(w) + γ (L_train(α, w) − min_u L_train(α, u))`` and solved with two live tinylm
models: the **proxy** u trains on the training domains under α; the **reference** w, re-synced
from u every episode, trains on the validation ("additional") data plus γ × the training loss.
Algorithm 1, per episode t = 1..T:

1. sync: ``w ← u`` (weights and AdamW state: both twins then take the same kind of step, so Δ
   measures what the validation data changed, not a fresh optimizer's first steps);
2. K probe steps of both twins on the same training batches:
   ``u ← u − η_u ∇L_train(α, u)``, ``w ← w − η_w ∇(L_val(w) + γ L_train(α, w))``;
3. α update: ``Δ = ℓ_{1:M}(w_K) − ℓ_{1:M}(u_K)`` (per-domain training losses of both twins on one
   fresh batch of every domain), ``α ← Π_simplex(α − η_α γ Δ)``;
4. E free steps of u under the new α.

u is trained for T·(K + E) steps in all with tinylm's schedule (linear warmup over 5%, cosine
decay to 10% of ``lr_u``); w's learning rate follows the same factor times ``lr_w``.

Final mixture: the **time average** ᾱ = (1/T) Σ_t α_t of the α after each update (``final=
"average"``, the default; ``"last"`` gives α_T). Δ is an estimate from K steps on a few windows,
so α_t moves with its noise; averaging the iterates damps that noise, is what the O(T^{-1/4})
stationarity guarantee is stated for in stochastic settings of this kind, and is what DoReMi
reports (ᾱ), so the two methods' outputs are directly comparable. The paper does not say which
it used, so the reweight job writes both from the α history (``reweight.final`` picks).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from quadmix_spark.proxy.tinylm import make_optimizer, resolve_device, training_settings

from .proxy_training import DomainWindows, domain_losses, new_model, param_distance, sgd_step
from .reweighting import OnlineReweighter, _int, _positive, initial_alpha
from .simplex import project_simplex

__all__ = ["Tandem"]

# Window-order purposes (DomainWindows): each sampler draws its own seeded order.
_TRAIN, _VAL, _PROBE = 1, 2, 3


class Tandem(OnlineReweighter):
    """TANDEM's Algorithm 1 on tinylm twins (module docstring); shared parameters in
    :class:`~quadmix_spark.mixing.reweighting.OnlineReweighter` (shape, vocab, init, final, seed,
    device, threads).

    Parameters
    ----------
    gamma : float
        γ, the penalty weight of the training loss in w's objective (paper: 1).
    episodes : int
        T.
    probe_steps : int
        K, steps of both twins per episode before the α update.
    free_steps : int
        E, steps of u alone per episode after the update (≥ 0).
    lr_u, lr_w : float
        Peak AdamW learning rates of the proxy and the reference.
    lr_alpha : float
        η_α; Δ is in nats/token, so α moves by about η_α·γ·|Δ| per episode.

    Attributes (after fit; see also OnlineReweighter)
    -------------------------------------------------
    history_ : list of dict, one per episode::

        {"episode": t (1-based), "alpha": α_t (M,) after the update, "alpha_before": α_{t-1},
         "delta": Δ (M,), "loss_u": ℓ(u_K) (M,), "loss_w": ℓ(w_K) (M,),
         "val_loss_w": L_val of w at the last probe step, "train_loss": mean α-weighted
         training loss of u over the episode's steps, "dist_start": Dist(u, w) right after the
         sync (0 by construction), "dist_end": Dist(u, w) after the K probe steps}

      losses in nats/token (under the proxy vocabulary); Dist = Σ ‖θ_u − θ_w‖².
    alpha_trajectory_ : (T, M) the α_t above.
    """

    method = "tandem"
    uses_val = True
    signal = "delta"
    record_unit = "episode"

    def __init__(
        self,
        gamma: float = 1.0,
        episodes: int = 50,
        probe_steps: int = 5,
        free_steps: int = 20,
        lr_u: float = 3e-3,
        lr_w: float = 3e-3,
        lr_alpha: float = 1.0,
        **shared: Any,
    ) -> None:
        super().__init__(**shared)
        self.gamma = _positive(gamma, "gamma")
        self.episodes = _int(episodes, "episodes", 1)
        self.probe_steps = _int(probe_steps, "probe_steps", 1)
        self.free_steps = _int(free_steps, "free_steps", 0)
        self.lr_u = _positive(lr_u, "lr_u")
        self.lr_w = _positive(lr_w, "lr_w")
        self.lr_alpha = _positive(lr_alpha, "lr_alpha")

    def fit(
        self, train_streams: Mapping[str, ArrayLike], val_streams: Mapping[str, ArrayLike] | None = None
    ) -> Tandem:
        """Run T episodes on ``train_streams`` (domain → ids) and ``val_streams`` (set → ids).

        Streams follow the contract of :mod:`quadmix_spark.mixing.reweighting`; needs ≥ 2 domains
        and ≥ 1 validation set (``None`` is refused like ``{}``: the signature is every method's).
        Returns ``self``.
        """
        if not isinstance(val_streams, Mapping) or not val_streams:
            raise ValueError("val_streams must map at least one set name to token ids (TANDEM's extra data)")
        if not isinstance(train_streams, Mapping) or len(train_streams) < 2:
            raise ValueError("train_streams must hold at least 2 domains to reweight")
        train, val = self._prepare(train_streams, val_streams)
        device = resolve_device(self.device)
        with training_settings(device, self.threads):
            self._run(train, val, device)
        return self

    def _run(self, train: dict, val: dict, device: torch.device) -> None:
        m, n_val = len(train), len(val)
        alpha = initial_alpha(self.init, self.domains_, train)
        batches = DomainWindows(train, self.context, self.seqs_per_domain, self.seed, _TRAIN, device)
        val_batches = DomainWindows(val, self.context, self.seqs_per_domain, self.seed, _VAL, device)
        probes = DomainWindows(train, self.context, self.seqs_per_domain, self.seed, _PROBE, device)
        u = new_model(self).to(device)
        w = new_model(self).to(device)
        opt_u, opt_w = make_optimizer(u, self.lr_u), make_optimizer(w, self.lr_w)
        n_steps = self.episodes * (self.probe_steps + self.free_steps)
        step = 0
        history: list[dict[str, Any]] = []

        def train_u(weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            nonlocal step
            step += 1
            loss = weights @ domain_losses(u, x, y, m)[0]
            sgd_step(u, opt_u, loss, step, n_steps, self.lr_u)
            return loss.detach()  # read once per episode: no device sync per step

        for episode in range(1, self.episodes + 1):
            w.load_state_dict(u.state_dict())
            opt_w.load_state_dict(copy.deepcopy(opt_u.state_dict()))
            dist_start = param_distance(u, w)
            a = torch.tensor(alpha, dtype=torch.float32, device=device)
            losses_u = []
            for _ in range(self.probe_steps):
                x, y = batches.next()
                losses_u.append(train_u(a, x, y))
                xv, yv = val_batches.next()
                val_loss = domain_losses(w, xv, yv, n_val)[0].mean()
                loss_w = val_loss + self.gamma * (a @ domain_losses(w, x, y, m)[0])
                sgd_step(w, opt_w, loss_w, step, n_steps, self.lr_w)  # w at u's schedule position
            dist_end = param_distance(u, w)
            with torch.no_grad():
                xp, yp = probes.next()
                ell_u = domain_losses(u, xp, yp, m)[0].double().cpu().numpy()
                ell_w = domain_losses(w, xp, yp, m)[0].double().cpu().numpy()
            delta = ell_w - ell_u
            alpha_before = alpha
            alpha = project_simplex(alpha - self.lr_alpha * self.gamma * delta)
            a = torch.tensor(alpha, dtype=torch.float32, device=device)
            for _ in range(self.free_steps):
                losses_u.append(train_u(a, *batches.next()))
            history.append(
                {
                    "episode": episode,
                    "alpha": alpha.tolist(),
                    "alpha_before": alpha_before.tolist(),
                    "delta": delta.tolist(),
                    "loss_u": ell_u.tolist(),
                    "loss_w": ell_w.tolist(),
                    "val_loss_w": float(val_loss.detach()),
                    "train_loss": float(torch.stack(losses_u).double().mean()),
                    "dist_start": dist_start,
                    "dist_end": dist_end,
                }
            )
        self.history_ = history
        self.alpha_trajectory_ = np.array([h["alpha"] for h in history], dtype=np.float64)
        self.epochs_ = batches.epochs()
        self.n_train_tokens_ = batches.tokens_drawn()
        self.model_ = u
        self.mixture_ = self._final_mixture(
            self.alpha_trajectory_, {"episodes": self.episodes, "val_sets": sorted(val)}
        )
