"""Input normalisation on the device: uint8 RGB batches to the float inputs a network expects."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Normalize:
    """uint8 RGB [N, 3, H, W] -> float, optionally BGR, then (x - mean) / std, all on the device."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False

    def __call__(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        x = x.float()
        if self.bgr:
            x = x.flip(1)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


CIFAR_NORMALIZE = Normalize((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))
ORIGINAL_IMAGENET = Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), bgr=True)
"""The original's ImageNet input: BGR in [0, 255], no normalisation (needed for its released checkpoints)."""
