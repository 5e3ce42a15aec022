"""Element-wise dropout whose masks are cheap to draw on the CPU.

On the CPU, torch's own dropout draws one Bernoulli sample per element from the Mersenne
Twister generator (`aten::bernoulli_`), and that alone was about half of a seed-004 training
step (docs/benchmarks.md). Here a mask is 16 random bits per element, taken four at a time
from one 64-bit draw of the same generator (`random_` over the full 64-bit range), kept
where the bits clear a threshold: the same element-wise dropout, with the rate rounded to a
multiple of 1/65,536 (0.1 is 0.100006) and the kept elements scaled by 1/(1 - that rate), so
the expected output is the input. Checkpoints resume it exactly: the generator is torch's
CPU generator, which they save.

On a GPU, torch's fused dropout is already fast; `auto` uses it there.
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = 1 << 16  # the values 16 random bits take


def quantised_rate(p: float) -> float:
    """The drop rate a 16-bit mask really has for a configured rate p."""
    return min(round(p * LEVELS), LEVELS - 1) / LEVELS


def masks_used(masks: str, device_type: str) -> str:
    """What `masks` draws on a device of this type: int16 | torch (for the job's record)."""
    return "int16" if masks == "int16" or (masks == "auto" and device_type == "cpu") else "torch"


class Dropout(nn.Module):
    """nn.Dropout(p) with masks of 16-bit random numbers on the CPU (`masks`: auto | int16 |
    torch; auto draws them so on the CPU and uses torch's dropout on a GPU)."""

    def __init__(self, p: float, masks: str = "auto") -> None:
        super().__init__()
        self.p, self.masks = p, masks  # masks: one of config.DROPOUT_MASKS, checked there

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if masks_used(self.masks, x.device.type) == "torch" or not _is_dense(x):
            return nn.functional.dropout(x, self.p, training=True)
        n = x.numel()
        # four 16-bit numbers per 64-bit draw; `random_(min, None)` draws all 64 bits
        draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
        bits = draws.random_(-(1 << 63), None).view(torch.int16)[:n]
        # the same strides as x (any dense layout, e.g. channels_last): element-wise ops
        # then run at full speed; the bits are independent, so their order does not matter
        bits = bits.as_strided(x.shape, x.stride())
        rate = quantised_rate(self.p)
        keep = bits >= round(rate * LEVELS) - (1 << 15)  # int16 runs from -2**15
        return (x * keep).mul_(1.0 / (1.0 - rate))

    def extra_repr(self) -> str:
        return f"p={self.p}, masks={self.masks}"


def _is_dense(x: torch.Tensor) -> bool:
    """Whether x's elements fill its storage without gaps (contiguous in some layout)."""
    return x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
