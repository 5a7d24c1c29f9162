"""Augmentation of uint8 image batches held on their device: flip, translate with a zero border, cutout.

One gather per batch does the flip and the translation on any device; the random choices of a batch come from a
CPU generator, so a batch is a pure function of its seed. Used by the step-addressed training streams
(:class:`~anglenas.data.streams.TensorStream`) and the pass-addressed PertNAS loader
(:class:`~anglenas.data.device_cifar.DeviceLoader`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from anglenas.data.normalize import Normalize


@dataclass(frozen=True)
class Pipeline:
    """Per-batch augmentation: flip, translate by up to ``pad`` pixels, a ``cutout`` square, normalisation.

    ``flip_first``: FFCV's order (flip, then translate, then cutout; PertNAS' search); otherwise torchvision's
    ``RandomCrop(padding) + RandomHorizontalFlip`` (crop, then flip; DARTS, SPOS), which has no cutout.
    """

    flip: bool
    pad: int
    cutout: int
    cutout_fill: tuple[int, int, int]
    normalize: Normalize
    flip_first: bool = True

    def __post_init__(self) -> None:
        if self.cutout and not self.flip_first:
            raise ValueError("cutout belongs to the flip-first (FFCV) pipeline")


@dataclass
class AugmentDraw:
    """The random choices of one batch: ``offsets`` [2, n] (row, col) in 0..2*pad, ``flips`` [n] bool,
    ``corners`` [2, n] (top, left) of the cutout square in 0..size-cutout."""

    offsets: torch.Tensor
    flips: torch.Tensor
    corners: torch.Tensor


def draw_augment(n: int, size: int, pipeline: Pipeline, gen: torch.Generator) -> AugmentDraw:
    """Draw the augmentation of ``n`` images from ``gen`` (CPU), in the order of the pipeline's original: FFCV's
    flips, offsets, cutout corners; torchvision's offsets (when padded), then flips."""

    def flips() -> torch.Tensor:
        return torch.rand(n, generator=gen) < 0.5 if pipeline.flip else torch.zeros(n, dtype=torch.bool)

    if pipeline.flip_first:
        flipped = flips()
        offsets = torch.randint(0, 2 * pipeline.pad + 1, (2, n), generator=gen)
        corners = torch.randint(0, size - pipeline.cutout + 1, (2, n), generator=gen)
        return AugmentDraw(offsets, flipped, corners)
    offsets = (torch.randint(0, 2 * pipeline.pad + 1, (2, n), generator=gen) if pipeline.pad
               else torch.zeros(2, n, dtype=torch.long))
    return AugmentDraw(offsets, flips(), torch.zeros(2, n, dtype=torch.long))


def apply_augment(x: torch.Tensor, draw: AugmentDraw, pipeline: Pipeline) -> torch.Tensor:
    """Flip, translate (zero border) and cut out a uint8 NCHW batch on its own device, per image.

    Flip and translate are one gather from the zero-padded batch: output column q of a flipped image reads padded
    column ``w - 1 + dx - q`` when the crop comes first (the mirror of the crop), ``w - 1 + 2 pad - dx - q`` when
    the flip does (the crop of the mirror).
    """
    n, c, h, w = x.shape
    dev, pad = x.device, pipeline.pad
    offsets, flips = draw.offsets.to(dev), draw.flips.to(dev)
    q = torch.arange(w, device=dev)
    mirror = 2 * pad - offsets[1] if pipeline.flip_first else offsets[1]
    cols = torch.where(flips[:, None], (w - 1 + mirror)[:, None] - q, offsets[1][:, None] + q)
    rows = offsets[0][:, None] + torch.arange(h, device=dev)
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    x = padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
               rows[:, None, :, None], cols[:, None, None, :]]
    if pipeline.cutout:
        corners = draw.corners.to(dev)
        r = torch.arange(h, device=dev)[None, :] - corners[0][:, None]
        s = q[None, :] - corners[1][:, None]
        inside = ((r >= 0) & (r < pipeline.cutout))[:, :, None] & ((s >= 0) & (s < pipeline.cutout))[:, None, :]
        fill = torch.tensor(pipeline.cutout_fill, dtype=x.dtype, device=dev).view(1, c, 1, 1)
        x = torch.where(inside[:, None], fill, x)
    return x
