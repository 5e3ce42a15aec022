#!/usr/bin/env python
"""What the benchmarked network costs and what the machine could do: the yardstick printed
beside every epoch-time table.

    python benchmarks/machine_rate.py            # FLOPs per image, fp32 and bf16 GEMM rates

FLOPs come from torch's own counter (`torch.utils.flop_counter.FlopCounterMode`) over one
forward and backward pass of the network mnist_sweep builds (the seed-004 network by
default); the rates from square matrix products timed on the given number of threads, the
best of several repeats. A training epoch's achieved rate over the GEMM rate says how far
the run is from what the same cores multiply.
"""

from __future__ import annotations

import argparse
import sys
import time

from common import BATCH_SIZE, REPO

sys.path.insert(0, str(REPO))


def network_flops(filters: int = 16, transition_channels: int = 10,
                  head: str = "flatten") -> dict[str, float]:
    """FLOPs per image of one training step (forward + backward) and of one evaluation."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from mnist_sweep.job.network import build_network

    net = build_network(head, False, filters, 0.1, transition_channels)
    x = torch.randn(BATCH_SIZE, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH_SIZE,))
    with FlopCounterMode(display=False) as train:
        F.cross_entropy(net(x), y).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as evaluate:
        net.eval()(x)
    return {"train": train.get_total_flops() / BATCH_SIZE,
            "eval": evaluate.get_total_flops() / BATCH_SIZE}


def gemm_gflops(dtype_name: str, threads: int, n: int = 1024, repeats: int = 7) -> float:
    """Best GFLOP/s of an n x n matrix product on `threads` torch threads."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)  # warm-up: kernels chosen, memory touched
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * n ** 3 / best / 1e9


def machine_rates(threads: list[int]) -> dict[str, dict[int, float]]:
    return {dtype: {t: gemm_gflops(dtype, t) for t in threads} for dtype in ("fp32", "bf16")}


def main() -> None:
    import os

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--transition-channels", type=int, default=10)
    p.add_argument("--threads", default=f"1,{len(os.sched_getaffinity(0))}")
    args = p.parse_args()
    flops = network_flops(args.filters, args.transition_channels)
    print(f"seed-004 network ({args.filters} filters): {flops['train'] / 1e9:.4f} GFLOP per "
          f"training image (forward + backward), {flops['eval'] / 1e9:.4f} per evaluated image")
    for dtype, by_threads in machine_rates([int(t) for t in args.threads.split(",")]).items():
        print(f"{dtype} matrix product (1024^2): " + ", ".join(
            f"{rate:.1f} GFLOP/s on {t} thread(s)" for t, rate in by_threads.items()))


if __name__ == "__main__":
    main()
