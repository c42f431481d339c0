"""The torch pieces TANDEM and DoReMi share: per-domain window batches and per-domain losses."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from quadmix_spark.proxy.tinylm import build_model, lr_at, token_nll, windows

from .reweighting import OnlineReweighter

__all__ = ["DomainWindows", "domain_losses", "new_model", "param_distance", "sgd_step"]

_IGNORE = -100


def new_model(r: OnlineReweighter) -> nn.Module:
    """A fresh tinylm of a reweighter's shape (its ``model_vocab_size``, d_model, ... and seed)."""
    return build_model(r.model_vocab_size, r.d_model, r.n_layers, r.n_heads, r.d_ff, r.context, r.seed)


class DomainWindows:
    """Each stream's ``context + 1``-token windows, drawn ``per_domain`` at a time per stream.

    Windows of a stream are visited in a random order drawn from ``(seed, purpose, stream index,
    epoch)``, one epoch after the other, so a short stream repeats and the order depends on nothing
    else. :meth:`next` returns inputs and targets (M·per_domain, context), stream-major (rows
    ``m·per_domain … (m+1)·per_domain − 1`` come from stream m), on ``device``.
    """

    def __init__(
        self,
        streams: Mapping[str, NDArray[np.int64]],
        context: int,
        per_domain: int,
        seed: int,
        purpose: int,
        device: torch.device,
    ) -> None:
        self.names = list(streams)
        self.per_domain = per_domain
        self.seed, self.purpose = seed, purpose
        self.device = device
        # Windows stay in host memory (a stream can be large); only each batch goes to the device.
        self._windows = [windows(streams[name], context + 1) for name in self.names]
        self._orders: list[NDArray[np.int64]] = [np.zeros(0, np.int64)] * len(self.names)
        self._drawn = [0] * len(self.names)  # windows drawn so far per stream

    def _take(self, m: int) -> NDArray[np.int64]:
        n = self._windows[m][0].shape[0]
        out = []
        while len(out) < self.per_domain:
            pos = self._drawn[m] % n
            if pos == 0:
                rng = np.random.default_rng([self.seed, self.purpose, m, self._drawn[m] // n])
                self._orders[m] = rng.permutation(n)
            out.append(int(self._orders[m][pos]))
            self._drawn[m] += 1
        return np.asarray(out)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for m in range(len(self.names)):
            idx = torch.from_numpy(self._take(m))
            xs.append(self._windows[m][0][idx])
            ys.append(self._windows[m][1][idx])
        return torch.cat(xs).to(self.device), torch.cat(ys).to(self.device)

    def epochs(self) -> dict[str, float]:
        """Passes over each stream's windows drawn so far."""
        return {name: self._drawn[m] / self._windows[m][0].shape[0] for m, name in enumerate(self.names)}

    def tokens_drawn(self) -> int:
        """Predicted positions in the windows drawn so far (each window counted per draw)."""
        total = 0
        for m in range(len(self.names)):
            n = self._windows[m][0].shape[0]
            per_window = (self._windows[m][1] != _IGNORE).sum(dim=1).numpy()
            full, part = divmod(self._drawn[m], n)
            total += full * int(per_window.sum())
            if part:
                total += int(per_window[self._orders[m][:part]].sum())
        return total


def domain_losses(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_domains: int
) -> tuple[torch.Tensor, ...]:
    """Per-domain mean token NLL (M,) of a stream-major batch, and the per-token NLL (B, L).

    Differentiable; padded positions count neither in the sums nor in the token counts.
    """
    nll = token_nll(model, x, y)
    per_domain = nll.view(n_domains, -1).sum(dim=1)
    counts = (y != _IGNORE).view(n_domains, -1).sum(dim=1).clamp(min=1)
    return per_domain / counts, nll


def param_distance(a: nn.Module, b: nn.Module) -> float:
    """Dist(a, b) = Σ over parameters of ‖θ_a − θ_b‖² (same architecture)."""
    with torch.no_grad():
        total = torch.zeros((), dtype=torch.float64, device=next(a.parameters()).device)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            total += (pa.double() - pb.double()).pow(2).sum()
    return float(total)


def sgd_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, step: int, n_steps: int, lr: float
) -> None:
    """One optimizer step on ``loss``: lr from tinylm's schedule, gradients clipped at norm 1."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, n_steps, lr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
