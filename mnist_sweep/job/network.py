"""The CNN family of the seeds, assembled from three choices: head, separable, filters.

Every block is conv (no bias) -> ReLU -> BatchNorm -> Dropout, as in the seeds. With
head=flatten, separable=false, filters=16 the network is exactly the week-2 network of
seed 004 (12,316 trainable parameters).

    28 conv3 f -> 26 conv3 f -> 24 conv1 t + maxpool -> 12 conv3 t -> 10 conv3 f -> 8
    conv3 f (separable: depthwise + pointwise) -> 6 conv3 f -> 4 -> head
    head flatten: conv4 10 -> 1x1, BN, flatten
    head gmp/gap: conv3 f -> 2x2, conv1 10, BN, global max/avg pool
"""

from __future__ import annotations

import torch
from torch import nn

from mnist_sweep.job.dropout import Dropout


class GlobalPool(nn.Module):
    """Global max or average pooling as a reduction over the spatial dimensions.

    Same outputs and gradients as nn.AdaptiveMaxPool2d(1) / nn.AdaptiveAvgPool2d(1) (no
    parameters, so checkpoints of either load), but with a deterministic CUDA backward: the
    adaptive pools have none, so `trainer.deterministic=true` failed at the first backward
    pass on a GPU.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return x.amax(dim=(2, 3), keepdim=True)
        return x.mean(dim=(2, 3), keepdim=True)

    def extra_repr(self) -> str:
        return self.kind


def conv_block(c_in: int, c_out: int, kernel: int, dropout: float,
               masks: str = "auto") -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, bias=False),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(c_out),
        Dropout(dropout, masks),
    ]


def separable_block(c_in: int, c_out: int, dropout: float,
                    masks: str = "auto") -> list[nn.Module]:
    """Depthwise 3x3 then pointwise 1x1, like Keras' SeparableConv2D (no bias)."""
    return [
        nn.Conv2d(c_in, c_in, 3, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(c_out),
        Dropout(dropout, masks),
    ]


def build_network(
    head: str = "gmp",
    separable: bool = False,
    filters: int = 16,
    dropout: float = 0.1,
    transition_channels: int = 10,
    num_classes: int = 10,
    dropout_masks: str = "auto",
) -> nn.Sequential:
    """Return the network as one nn.Sequential mapping (N, 1, 28, 28) images to logits.

    `dropout_masks` is how dropout draws its masks (mnist_sweep/job/dropout.py)."""
    f, t, m = filters, transition_channels, dropout_masks
    layers: list[nn.Module] = [
        *conv_block(1, f, 3, dropout, m),  # 26
        *conv_block(f, f, 3, dropout, m),  # 24
        nn.Conv2d(f, t, 1, bias=False),  # transition: fewer channels, then halve
        nn.MaxPool2d(2),  # 12
        *conv_block(t, t, 3, dropout, m),  # 10
        *conv_block(t, f, 3, dropout, m),  # 8
        *(separable_block(f, f, dropout, m) if separable
          else conv_block(f, f, 3, dropout, m)),  # 6
        *conv_block(f, f, 3, dropout, m),  # 4
    ]
    # `head` was checked against config.HEADS with the rest of the config
    if head == "flatten":
        layers += [nn.Conv2d(f, num_classes, 4, bias=False), nn.BatchNorm2d(num_classes),
                   nn.Flatten()]
    else:
        pool = GlobalPool({"gmp": "max", "gap": "mean"}[head])
        layers += [
            *conv_block(f, f, 3, dropout, m),  # 2
            nn.Conv2d(f, num_classes, 1, bias=False),
            nn.BatchNorm2d(num_classes),
            pool,
            nn.Flatten(),
        ]
    return nn.Sequential(*layers)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (Keras' 'Trainable params')."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
