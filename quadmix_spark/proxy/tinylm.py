"""A tiny decoder-only transformer LM trained from scratch: the ``tinylm`` proxy trainer.

Architecture (defaults follow RegMix's ``tinyllama_1M`` proxy): token embedding → ``n_layers`` ×
[RMSNorm → causal multi-head attention with RoPE → residual; RMSNorm → SwiGLU MLP → residual] →
RMSNorm → logits through the tied embedding matrix. No biases, no dropout. A layer holds
``4·d²`` attention, ``3·d·d_ff`` SwiGLU and ``2·d`` norm weights, so the defaults (d = 256,
2 layers, d_ff = 512) have 1,312,000 non-embedding parameters, plus ``V·d`` in the embedding
(25.7M at V = 100,277, which dominates the compute).

Training is one pass over the token stream:

* The stream is cut into consecutive non-overlapping windows of ``context + 1`` tokens; a window
  is one sequence whose first ``context`` tokens are the input and last ``context`` the targets,
  so every token is seen once and all but the first of each window is predicted. The stream's
  tail is a shorter last window, padded with positions that carry no loss; a stream shorter than
  one window is therefore a single short sequence. (A 1-token stream has nothing to predict: the
  model stays at its initialisation.)
* ``batch_size`` windows per AdamW step (betas 0.9/0.95, weight decay 0.1 on matrices, gradients
  clipped at norm 1). Learning rate: linear warmup over the first 5% of steps (at least one), then
  cosine decay to 10% of ``lr`` at the last step of the stream.
* Checkpoint ``k`` (a training-token count) is evaluated after the optimizer step holding token
  ``k``: the model has seen at least ``k`` tokens and fewer than ``k + batch_size·(context+1)``.
  Records carry the requested ``k``. Training stops after the last checkpoint's step.
* Evaluation scores the first ``eval_tokens`` tokens of each set, windowed the same way: the loss
  is the mean negative log-likelihood in nats over every predicted token (NaN if none).

Cost and speed. The output layer is about ``V/(V + 6,100)`` of a step's FLOPs at the default
shape (94% at cl100k). A proxy vocabulary (``vocab``, :mod:`quadmix_spark.proxy.vocab`) maps
the tokenizer's ids to the pool's N most frequent + UNK, so the model has N + 1 outputs. The
hot path has no Python loop per chunk when a batch's logits fit in ``_DIRECT_LOGIT_FLOATS``: on
the CPU the output layer runs by hand in one fp32 piece, on CUDA autograd runs the whole model
under bf16 autocast; the windows go to the device once, the predicted-token counts are taken on
the host (no sync per step), and evaluation uses batches of ``_EVAL_ROWS`` positions whatever
``batch_size`` is. Only a full-size vocabulary falls back to the chunked output layer. On a
GPU, raise ``batch_size``.

Reproducibility: parameters are initialised from ``seed`` on the CPU inside a forked RNG (the
global torch RNG is left alone), and ``fit`` runs with ``threads`` intra-op threads and, on the
CPU, deterministic algorithms in fp32 (both restored afterwards): the same seed and ``threads``
give identical losses on the CPU. GPU runs are seeded but not bit-reproducible.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from torch import nn

from .estimator import EstimatorTrainer
from .inputs import fit_inputs
from .ngram import CL100K_N_VOCAB
from .vocab import ProxyVocab, full_vocab_key, parse_vocab_spec

__all__ = [
    "TinyLMProxy",
    "TinyLMTrainer",
    "build_model",
    "lr_at",
    "make_optimizer",
    "resolve_device",
    "token_nll",
    "training_settings",
    "windows",
]

_IGNORE = -100  # target id of padded positions (F.cross_entropy's default ignore_index)
_LOGIT_FLOATS = 1 << 24  # logits computed per chunk (64 MB); a full batch at V=100k is 0.8 GB
# Up to this many logits per step (512 MB in fp32) the output layer runs in one piece through
# autograd (no Python loop; bf16 on CUDA); beyond it, in _LOGIT_FLOATS chunks by hand.
_DIRECT_LOGIT_FLOATS = 1 << 27
_EVAL_ROWS = 1 << 14  # predicted positions per evaluation forward pass
_WARMUP_FRACTION, _MIN_LR_FRACTION = 0.05, 0.1
_ROPE_THETA = 10_000.0


class _RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x`` (B, H, L, hd); ``cos``/``sin`` (L, hd/2)."""
    x1, x2 = x.chunk(2, dim=-1)  # rotate-half pairing (dim i with dim i + hd/2), as in LLaMA
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class _Block(nn.Module):
    def __init__(self, d: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_norm, self.mlp_norm = _RMSNorm(d), _RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.gate, self.up = nn.Linear(d, d_ff, bias=False), nn.Linear(d, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(_rope(q, cos, sin), _rope(k, cos, sin), v, is_causal=True)
        x = x + self.attn_out(y.transpose(1, 2).reshape(b, length, d))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class _TinyLM(nn.Module):
    """Decoder-only LM; :meth:`hidden` gives final states, logits are ``hidden @ embed.weight.T``."""

    def __init__(self, vocab: int, d: int, n_layers: int, n_heads: int, d_ff: int, context: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(_Block(d, n_heads, d_ff) for _ in range(n_layers))
        self.norm = _RMSNorm(d)
        half = d // n_heads // 2
        angles = torch.outer(torch.arange(context).float(), _ROPE_THETA ** (-torch.arange(half) / half))
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        # GPT-2 init: N(0, 0.02), residual output projections shrunk by sqrt(2 · n_layers).
        for name, p in self.named_parameters():
            if p.dim() == 2:
                residual_out = name.endswith(("attn_out.weight", "down.weight"))
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layers) if residual_out else 0.02)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Final normalised states (B, L, d) of input ids ``x`` (B, L), L ≤ context."""
        length = x.shape[1]
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, self.cos[:length], self.sin[:length])
        return self.norm(h)


@torch.no_grad()
def _output_layer(
    h: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    scale: float | None = None,
    max_floats: int | None = None,
) -> tuple[float, torch.Tensor | None, torch.Tensor | None]:
    """Summed NLL (nats) of ``targets`` (N,) under logits ``h @ weight.T``; with ``scale``, its gradient.

    ``h`` (N, d) are final states, ``weight`` (V, d) the tied embedding, targets ``_IGNORE`` are
    skipped. Returns ``(nll_sum, grad_h, grad_weight)``: the gradients of ``scale · nll_sum``, shapes
    (N, d) and (V, d), or None without ``scale``. Logits are formed ``max_floats // V`` rows at a
    time (default ``_LOGIT_FLOATS``) in one reused buffer and differentiated by hand (softmax −
    one-hot): at V ≈ 100k the full logits of a batch (0.8 GB) and autograd's per-chunk (V, d)
    temporaries would dominate memory and time. On the CPU this in-place form is also faster than
    autograd's cross-entropy at small V (no zero-filled one-hot gradient, no saved log-softmax),
    so a proxy vocabulary's whole batch goes through it in one piece.
    """
    n, v = targets.shape[0], weight.shape[0]
    rows = max(1, min(n, (_LOGIT_FLOATS if max_floats is None else max_floats) // v))
    buffer = torch.empty(rows, v, dtype=h.dtype, device=h.device)
    total = torch.zeros((), dtype=torch.float64, device=h.device)
    grad_h = torch.empty_like(h) if scale is not None else None
    grad_w = torch.zeros_like(weight) if scale is not None else None
    for start in range(0, n, rows):
        hc, tc = h[start : start + rows], targets[start : start + rows]
        keep, safe = tc != _IGNORE, tc.clamp(min=0)
        logp = torch.mm(hc, weight.T, out=buffer[: len(tc)])
        logp -= logp.logsumexp(dim=1, keepdim=True)  # log-softmax in place
        total -= (logp.gather(1, safe[:, None]).squeeze(1) * keep).sum(dtype=torch.float64)
        if scale is not None:
            g = logp.exp_()  # d(scale · nll)/d logits = scale · (softmax − one_hot), 0 where ignored
            g[torch.arange(len(tc), device=g.device), safe] -= 1.0
            g *= (keep * scale)[:, None]
            torch.mm(g, weight, out=grad_h[start : start + rows])
            grad_w.addmm_(g.T, hc)
    return float(total), grad_h, grad_w


def _autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA; nothing on the CPU, which stays fp32 and deterministic."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → cuda if available else cpu; a cuda device without CUDA is an error."""
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(auto if device == "auto" else device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but CUDA is not available")
    return resolved


@contextlib.contextmanager
def training_settings(device: torch.device, threads: int) -> Iterator[None]:
    """``threads`` intra-op threads and, on the CPU, deterministic algorithms; both restored after."""
    old_threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    if device.type == "cpu":  # on CUDA it needs CUBLAS_WORKSPACE_CONFIG set before cuBLAS starts
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def build_model(
    vocab_size: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, context: int, seed: int
) -> _TinyLM:
    """A tinylm initialised from ``seed`` on the CPU (the global torch RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _TinyLM(vocab_size, d_model, n_layers, n_heads, d_ff, context)


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.95), weight decay 0.1 on matrices only, as every tinylm trains."""
    matrices = [p for p in model.parameters() if p.dim() == 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )


def token_nll(model: _TinyLM, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token NLL in nats (B, L), fp32, differentiable; 0 where ``targets`` is padding.

    One forward pass through autograd (bf16 autocast on CUDA): meant for proxy vocabularies,
    whose logits (B·L·V) fit in memory at once.
    """
    with _autocast(inputs.device):
        logits = model.hidden(inputs) @ model.embed.weight.T
    nll = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=_IGNORE, reduction="none"
    )
    return nll.view_as(targets)


def lr_at(step: int, n_steps: int, peak: float) -> float:
    """Learning rate of optimizer step ``step`` (1-based) of ``n_steps``: linear warmup, cosine decay."""
    warmup = max(1, math.ceil(_WARMUP_FRACTION * n_steps))
    if step <= warmup:
        return peak * step / warmup
    cosine = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (n_steps - warmup)))
    return peak * (_MIN_LR_FRACTION + (1 - _MIN_LR_FRACTION) * cosine)


def windows(tokens: NDArray[np.int64], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (n, width − 1) of consecutive ``width``-token windows; tail padded."""
    n = -(-tokens.size // width)
    padded = np.full(n * width, _IGNORE, dtype=np.int64)
    padded[: tokens.size] = tokens
    win = torch.from_numpy(padded.reshape(n, width))
    # Padding sits after every real token, so causal attention keeps it out of real positions.
    return win[:, :-1].clamp(min=0), win[:, 1:]


def _int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class TinyLMProxy:
    """Tiny transformer LM trained in one pass over a token stream, evaluated at checkpoints.

    Parameters
    ----------
    vocab_size : int
        V: token ids must lie in [0, V). Default: cl100k_base's ``n_vocab``.
    d_model, n_layers, n_heads, d_ff : int
        Width, depth, attention heads (``d_model / n_heads`` must be even, for RoPE), SwiGLU width.
    context : int
        Tokens predicted per training/evaluation sequence (windows hold ``context + 1`` tokens).
    batch_size : int
        Sequences per optimizer step.
    lr : float
        Peak AdamW learning rate.
    seed : int
        Seeds the parameter initialisation (the only randomness: windows are taken in order).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (cuda if available).
    threads : int
        torch intra-op CPU threads during :meth:`fit`.
    eval_tokens : int
        At most this many leading tokens of each evaluation set are scored.
    vocab : ProxyVocab, optional
        A proxy vocabulary (:mod:`quadmix_spark.proxy.vocab`) over the tokenizer's ``vocab_size``
        ids: streams and evaluation sets are mapped through it and the model has ``vocab.size``
        outputs. Losses are then comparable only with runs of the same mapping (``vocab_key_``).

    Attributes
    ----------
    n_non_embedding_params_ : int
        Parameters outside the (tied) embedding; set at construction.
    model_vocab_size_ : int
        Rows of the embedding: ``vocab.size`` with a proxy vocabulary, else ``vocab_size``.
    vocab_key_ : str
        The vocabulary the losses are measured in: ``vocab.key()`` or ``"full:<vocab_size>"``.
    losses_ : list of dict (after :meth:`fit`)
        ``{"step_tokens": int, "eval_set": str, "loss": float}`` per checkpoint and evaluation set,
        in checkpoint order then ``eval_sets`` order; loss in nats/token.
    n_train_tokens_ : int (after :meth:`fit`)
        Tokens the final model was trained on (the end of the last checkpoint's step).
    model_ : torch.nn.Module (after :meth:`fit`)
        The trained model; ``model_.hidden(ids) @ model_.embed.weight.T`` are the logits.
    """

    def __init__(
        self,
        vocab_size: int = CL100K_N_VOCAB,
        d_model: int = 256,
        n_layers: int = 2,
        n_heads: int = 8,
        d_ff: int = 512,
        context: int = 256,
        batch_size: int = 8,
        lr: float = 3e-3,
        seed: int = 0,
        device: str = "cpu",
        threads: int = 1,
        eval_tokens: int = 65_536,
        vocab: ProxyVocab | None = None,
    ) -> None:
        self.vocab_size = _int(vocab_size, "vocab_size", 2)
        self.d_model = _int(d_model, "d_model", 2)
        self.n_layers = _int(n_layers, "n_layers", 1)
        self.n_heads = _int(n_heads, "n_heads", 1)
        self.d_ff = _int(d_ff, "d_ff", 1)
        self.context = _int(context, "context", 1)
        self.batch_size = _int(batch_size, "batch_size", 1)
        self.seed = _int(seed, "seed", 0)
        self.threads = _int(threads, "threads", 1)
        self.eval_tokens = _int(eval_tokens, "eval_tokens", 2)
        if self.d_model % (2 * self.n_heads):
            raise ValueError(
                f"d_model / n_heads must be an even int, got d_model={d_model}, n_heads={n_heads}"
            )
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not (0.0 < lr < math.inf):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        self.lr = float(lr)
        if not isinstance(device, str):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
        if device != "auto":
            try:
                torch.device(device)
            except RuntimeError as err:
                raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from err
        self.device = device
        if vocab is not None:
            if not isinstance(vocab, ProxyVocab):
                raise ValueError(f"vocab must be a ProxyVocab or None, got {type(vocab).__name__}")
            if vocab.source_size != self.vocab_size:
                raise ValueError(
                    f"vocab maps {vocab.source_size} tokenizer ids but vocab_size is {self.vocab_size}"
                )
        self.vocab = vocab
        self.model_vocab_size_ = vocab.size if vocab is not None else self.vocab_size
        self.vocab_key_ = vocab.key() if vocab is not None else full_vocab_key(self.vocab_size)
        d, ff = self.d_model, self.d_ff
        self.n_non_embedding_params_ = self.n_layers * (4 * d * d + 3 * d * ff + 2 * d) + d

    def _build(self) -> _TinyLM:
        return build_model(
            self.model_vocab_size_,
            self.d_model,
            self.n_layers,
            self.n_heads,
            self.d_ff,
            self.context,
            self.seed,
        )

    @torch.no_grad()
    def _evaluate(
        self, model: _TinyLM, inputs: torch.Tensor, targets: torch.Tensor, device: torch.device
    ) -> float:
        """Mean NLL (nats/token) over the non-padded targets of windows ``inputs``/``targets`` (n, L)."""
        n_predicted = int((targets != _IGNORE).sum())
        if n_predicted == 0:
            return float("nan")
        v = self.model_vocab_size_
        # Large evaluation batches (independent of the training batch): one pass per _EVAL_ROWS
        # positions, the logits in one piece when they fit.
        rows = max(1, _EVAL_ROWS // inputs.shape[1])
        total = torch.zeros((), dtype=torch.float64, device=device)
        for start in range(0, inputs.shape[0], rows):
            x, y = inputs[start : start + rows].to(device), targets[start : start + rows].to(device)
            if y.numel() * v <= _DIRECT_LOGIT_FLOATS:
                total += token_nll(model, x, y).sum(dtype=torch.float64)
            else:
                with _autocast(device):
                    h = model.hidden(x)
                total += _output_layer(h.float().flatten(0, 1), y.flatten(), model.embed.weight)[0]
        return float(total) / n_predicted

    def fit(
        self,
        train_token_stream: ArrayLike,
        eval_sets: Mapping[str, ArrayLike] | None = None,
        checkpoints: Sequence[int] | None = None,
    ) -> TinyLMProxy:
        """Train one pass over the stream, evaluating every set at each checkpoint.

        Parameters
        ----------
        train_token_stream : 1-D int array (T,)
            The selected tokens, documents concatenated.
        eval_sets : mapping name -> 1-D int array, optional
            Evaluation token arrays; each is scored at every checkpoint.
        checkpoints : strictly increasing ints in [1, T], optional
            Training-token counts at which to evaluate (see the module docstring for the rounding
            to optimizer steps). Default: ``[T]``.

        Returns ``self``; the records are in :attr:`losses_`.
        """
        tokens, sets, steps = fit_inputs(train_token_stream, eval_sets, checkpoints, self.vocab_size)
        if self.vocab is not None:
            tokens = self.vocab.encode(tokens)
            sets = {name: self.vocab.encode(arr) for name, arr in sets.items()}
        device = resolve_device(self.device)
        with training_settings(device, self.threads):
            self.losses_, self.n_train_tokens_ = self._train(tokens, sets, steps, device)
        return self

    def _train(
        self,
        tokens: NDArray[np.int64],
        sets: dict[str, NDArray[np.int64]],
        checkpoints: list[int],
        device: torch.device,
    ) -> tuple[list[dict[str, Any]], int]:
        width, b = self.context + 1, self.batch_size
        inputs, targets = windows(tokens, width)
        evals = {name: windows(arr[: self.eval_tokens], width) for name, arr in sets.items()}
        n_steps = -(-inputs.shape[0] // b)
        # Optimizer step (1-based) after which each checkpoint is evaluated: the one holding token k.
        eval_step = [-(-k // (b * width)) for k in checkpoints]

        model = self._build().to(device)
        weight = model.embed.weight
        optimizer = make_optimizer(model, self.lr)
        one_piece = b * self.context * self.model_vocab_size_ <= _DIRECT_LOGIT_FLOATS
        # CUDA: autograd + bf16 autocast through the whole model when the logits fit; otherwise
        # (and always on the CPU, where it is faster) the output layer by hand in fp32.
        use_autograd = one_piece and device.type == "cuda"
        max_floats = _DIRECT_LOGIT_FLOATS if one_piece else None
        # Counted on the host once: no device→host sync per step.
        n_predicted = (targets != _IGNORE).view(-1).split(b * self.context)
        n_predicted = [int(c.sum()) for c in n_predicted]
        inputs, targets = inputs.to(device), targets.to(device)
        records: list[dict[str, Any]] = []
        for step in range(1, eval_step[-1] + 1):
            x, y = inputs[(step - 1) * b : step * b], targets[(step - 1) * b : step * b]
            n_pred = n_predicted[step - 1]
            if n_pred:  # zero only for a batch that is just a 1-token tail window
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, n_steps, self.lr)
                optimizer.zero_grad(set_to_none=True)
                if use_autograd:
                    (token_nll(model, x, y).sum() / n_pred).backward()
                else:
                    with _autocast(device):
                        h = model.hidden(x)
                    # Output layer by hand in fp32 chunks (see _output_layer), autograd through the rest.
                    _, grad_h, grad_w = _output_layer(
                        h.detach().float().flatten(0, 1), y.flatten(), weight, 1 / n_pred, max_floats
                    )
                    h.backward(grad_h.view_as(h).to(h.dtype))
                    weight.grad += grad_w  # tied: the embedding's gradient also gets the output layer's
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            due = [k for k, s in zip(checkpoints, eval_step, strict=True) if s == step]
            if due:  # several checkpoints can fall into one step: evaluate it once
                losses = {name: self._evaluate(model, *win, device) for name, win in evals.items()}
                records += [
                    {"step_tokens": k, "eval_set": n, "loss": loss} for k in due for n, loss in losses.items()
                ]
        self.model_ = model
        return records, min(tokens.size, eval_step[-1] * b * width)


class TinyLMTrainer(EstimatorTrainer):
    """The ``tinylm`` trainer: :class:`TinyLMProxy` built from the ``TinyLMConfig`` fields."""

    name = "tinylm"
    vocab_setting = "tinylm.vocab"

    def __init__(self, **params: Any) -> None:
        self.model = TinyLMProxy(**params)

    @classmethod
    def from_config(cls, cfg: Any, vocab: ProxyVocab | None = None) -> TinyLMTrainer:
        """From a :class:`quadmix_spark.config.ProxyConfig` (its ``tinylm`` section).

        ``proxy.tinylm.vocab: top:N`` needs the mapping built once from the pool (``vocab``, with
        N kept ids), so that every run shares it; ``full`` takes none.
        """
        params = dict(vars(cfg.tinylm))
        n = parse_vocab_spec(params.pop("vocab", "full"), "proxy.tinylm.vocab")
        if n is None and vocab is not None:
            raise ValueError("proxy.tinylm.vocab is 'full' but a proxy vocabulary was given")
        if n is not None:
            if vocab is None:
                raise ValueError(
                    f"proxy.tinylm.vocab: top:{n} needs a proxy vocabulary built once from the pool "
                    "(ProxyVocab.from_counts / from_streams) and passed to every run"
                )
            if vocab.n_kept > n:
                raise ValueError(f"proxy.tinylm.vocab is top:{n} but the mapping keeps {vocab.n_kept} ids")
        return cls(**params, vocab=vocab)
