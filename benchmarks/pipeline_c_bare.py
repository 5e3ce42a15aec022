#!/usr/bin/env python
"""(c) A bare PyTorch loop: the practical limit for this model on this machine.

No framework, no DataLoader: the same pre-normalised in-memory tensors as mnist_sweep (its
own split and normalisation), batches cut by index, one host sync per epoch. It trains in the
memory layout mnist_sweep uses by default (or the one a switch forces) and sets its threads
the way mnist_sweep does (`set_cpu_threads`: the thread governor unless a count is given),
so (b) - (c) is the cost of the framework and nothing else.

    python benchmarks/pipeline_c_bare.py --data-root ../shared/datasets --epochs 1
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from common import (
    BATCH_SIZE,
    LR,
    REPO,
    SEED,
    SPLIT_SEED,
    VAL_SIZE,
    Switches,
    device_for,
    inverse_time,
    seed004_network,
    synchronize,
    worker_main,
)

sys.path.insert(0, str(REPO))


def run_bare(args: argparse.Namespace, sw: Switches, result: dict[str, Any]) -> None:
    import torch
    import torch.nn.functional as F

    from mnist_sweep.job.data import make_splits
    from mnist_sweep.job.datasets import load_dataset
    from mnist_sweep.job.threads import set_cpu_threads

    set_cpu_threads(sw.threads)
    torch.manual_seed(SEED)
    device = device_for(args.accelerator)
    s = make_splits(load_dataset("mnist", args.data_root, download=False, npm_fallback=False),
                    VAL_SIZE, SPLIT_SEED)
    fmt = torch.channels_last if sw.channels_last() else torch.contiguous_format
    train_x, val_x = (t.to(device).contiguous(memory_format=fmt) for t in (s.train_x, s.val_x))
    train_y, val_y = s.train_y.to(device), s.val_y.to(device)
    net = seed004_network(args.filters, args.transition_channels, sw.masks or "torch").to(
        device, memory_format=fmt)
    forward = torch.compile(net) if sw.compile else net
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, inverse_time)
    gen = torch.Generator().manual_seed(SEED)
    n, n_val = len(train_y), len(val_y)
    result.update(epoch_seconds=[], val_acc=[], train_loss=[], train_images=n,
                  val_images=n_val, channels_last=fmt == torch.channels_last,
                  threads=torch.get_num_threads())
    for _ in range(args.epochs):
        synchronize(device)
        t0 = time.perf_counter()
        result.setdefault("first_epoch_start", time.time())
        net.train()
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, min(n, args.limit_batches * BATCH_SIZE or n), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            x, y = train_x[idx], train_y[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=sw.bf16):
                logits = forward(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
        sched.step()
        net.eval()
        correct = torch.zeros((), device=device, dtype=torch.long)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=sw.bf16):
            for start in range(0, min(n_val, args.limit_batches * sw.eval_bs or n_val),
                               sw.eval_bs):
                logits = forward(val_x[start:start + sw.eval_bs])
                correct += (logits.argmax(1) == val_y[start:start + sw.eval_bs]).sum()
        acc = correct.item() / n_val  # the epoch's only host sync
        synchronize(device)
        result["epoch_seconds"].append(time.perf_counter() - t0)
        result["val_acc"].append(acc)
        result["train_loss"].append(loss_sum.item() / math.ceil(n / BATCH_SIZE))


if __name__ == "__main__":
    worker_main(run_bare, __doc__.split("\n\n")[0])
