"""Batched random affine augmentation: one grid_sample call per batch, on the batch's device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, rotation: float, translate: float, scale: float) -> torch.Tensor:
    """Rotate by +/-rotation degrees, shift by +/-translate of the size, scale by 1+/-scale.

    Pixels uncovered by the transform take the image's minimum (the normalised background).
    """
    n = x.shape[0]
    dev = x.device
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(rotation)
    factor = 1 + (torch.rand(n, device=dev) * 2 - 1) * scale
    shift = (torch.rand(n, 2, device=dev) * 2 - 1) * translate * 2  # grid spans [-1, 1]
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = x.amin()
    out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out + background
