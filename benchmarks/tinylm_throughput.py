"""Training throughput of the tinylm proxy: the full cl100k vocabulary against a proxy vocabulary.

One training run (``TinyLMProxy.fit``, no evaluation sets) at the default shape (d=256, 2 layers,
8 heads, SwiGLU 512, context 256, batch 8) on a synthetic Zipf-distributed cl100k stream, timed
after one warm-up step; tokens/s = training tokens / seconds. Each device prints the full
vocabulary and ``top:N`` side by side with their ratio. The CPU runs with ``--threads`` torch
threads (fp32, deterministic); CUDA, when available, with bf16 autocast, at each ``--gpu-batch``.

    PYTHONPATH=. python benchmarks/tinylm_throughput.py --steps 3 --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def zipf_stream(n_tokens: int, source_size: int, seed: int) -> np.ndarray:
    """Ids with Zipf(1.1)-like frequencies over a random permutation of the vocabulary."""
    rng = np.random.default_rng(seed)
    ranks = np.minimum(rng.zipf(1.1, size=n_tokens), source_size) - 1
    return rng.permutation(source_size)[ranks].astype(np.int64)


def tokens_per_second(
    stream: np.ndarray, vocab, device: str, threads: int, batch: int, steps: int
) -> tuple[float, float]:
    """(training tokens per wall-clock second, per CPU second of this process)."""
    from quadmix_spark.proxy import CL100K_N_VOCAB
    from quadmix_spark.proxy.tinylm import TinyLMProxy

    params = {"vocab_size": CL100K_N_VOCAB, "batch_size": batch, "device": device, "threads": threads}
    per_step = batch * 257
    TinyLMProxy(**params, vocab=vocab).fit(stream[:per_step])  # warm-up: allocations, kernels
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    started, cpu_started = time.perf_counter(), time.process_time()
    model = TinyLMProxy(**params, vocab=vocab).fit(stream[: steps * per_step])
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return model.n_train_tokens_ / wall, model.n_train_tokens_ / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run (CPU)")
    parser.add_argument("--gpu-steps", type=int, default=50, help="timed optimizer steps per run (CUDA)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step on the CPU (default shape)")
    parser.add_argument("--gpu-batch", default="8,64,256", help="comma-separated batch sizes on CUDA")
    parser.add_argument("--vocab", default="top:8192", help="the proxy vocabulary to compare (top:N)")
    parser.add_argument("--repeat", type=int, default=1, help="measure the CPU pair this many times")
    parser.add_argument("--no-cuda", action="store_true", help="skip CUDA even when it is available")
    args = parser.parse_args()

    import torch

    from quadmix_spark.proxy import CL100K_N_VOCAB
    from quadmix_spark.proxy.vocab import ProxyVocab, parse_vocab_spec

    n = parse_vocab_spec(args.vocab, "--vocab")
    batches = [int(b) for b in args.gpu_batch.split(",")]
    longest = max(args.steps * args.batch, args.gpu_steps * max(batches)) * 257
    stream = zipf_stream(longest, CL100K_N_VOCAB, seed=0)
    vocab = ProxyVocab.from_streams([stream], n, CL100K_N_VOCAB)
    print(
        f"tinylm d=256 layers=2 heads=8 d_ff=512 context=256; proxy vocabulary {args.vocab} "
        f"(V={vocab.size}, covers {vocab.coverage(stream):.1%} of the stream's tokens) vs full cl100k "
        f"(V={CL100K_N_VOCAB}); torch {torch.__version__}"
    )
    runs = [("cpu", args.threads, args.batch, args.steps)] * args.repeat
    if torch.cuda.is_available() and not args.no_cuda:
        runs += [("cuda", 1, b, args.gpu_steps) for b in batches]
    else:
        print("cuda: not available here, GPU throughput not measured")
    for device, threads, batch, steps in runs:
        (full, full_cpu), (top, top_cpu) = (
            tokens_per_second(stream, v, device, threads, batch, steps) for v in (None, vocab)
        )
        where = f"cpu threads={threads}" if device == "cpu" else torch.cuda.get_device_name()
        print(
            f"{where}, batch {batch}, {steps} steps: full {full:,.0f} tokens/s | {args.vocab} "
            f"{top:,.0f} tokens/s | ratio {top / full:.1f}x"
        )
        if device == "cpu":  # CPU time is less sensitive to other processes on a shared machine
            print(
                f"{where}, per CPU-second: full {full_cpu:,.0f} | {args.vocab} {top_cpu:,.0f} | "
                f"ratio {top_cpu / full_cpu:.1f}x"
            )


if __name__ == "__main__":
    main()
