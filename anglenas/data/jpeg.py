"""ImageNet training batches decoded on the training device (nvJPEG through ``torchvision.io`` on a GPU).

Workers only read the JPEG bytes and the image header, and draw the sample's augmentation (square crop box,
PCA lighting offset, flip) from its seed, in the same order as the PIL pipeline of
:mod:`anglenas.data.transforms`. The main process decodes the whole batch on the device and crops, resizes
(bilinear, antialiased), lights and flips it there, so a GPU run is not bound by CPU decoding.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from anglenas.data.transforms import lighting_shift, square_crop_box


class JpegBytes(torch.utils.data.Dataset):
    """``(index, seed) -> (file bytes, label, [left, top, edge, flip, r, g, b shift])`` of an ImageFolder subset."""

    def __init__(self, folder, indices: Sequence[int]) -> None:
        self.samples, self.indices = folder.samples, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: tuple[int, int]):
        i, seed = item
        path, label = self.samples[int(self.indices[i])]
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            w, h = img.size
        rng = np.random.default_rng(seed)
        left, top, edge = square_crop_box(w, h, rng)
        shift = lighting_shift(rng)
        flip = float(rng.random() < 0.5)
        params = torch.tensor([left, top, edge, flip, *shift], dtype=torch.float64)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), label, params


def collate_bytes(batch):
    data, labels, params = zip(*batch)
    return list(data), torch.tensor(labels), torch.stack(params)


def _decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """RGB uint8 CHW images; files the device decoder refuses (CMYK, PNG named .JPEG) are decoded on the CPU.

    torchvision 0.29 deprecates its decoders in favour of TorchCodec; they still work with the pinned torchvision,
    and moving to TorchCodec is a planned follow-up, so the deprecation warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        return _decode_rgb(data, device)


def _decode_rgb(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        out = []
        for d in data:
            try:
                out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(decode_image(d, mode=ImageReadMode.RGB).to(device))
        return out


class DeviceAugment:
    """Turns a :func:`collate_bytes` batch into float RGB images in [0, 255] of ``size`` on ``device``."""

    def __init__(self, device: torch.device, size: int = 224) -> None:
        self.device, self.size = device, size

    def __call__(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        data, labels, params = batch
        images = _decode(data, self.device)
        crops = []
        for img, (left, top, edge, *_rest) in zip(images, params.tolist()):
            left, top, edge = int(left), int(top), int(edge)
            _, h, w = img.shape
            canvas = img.new_zeros(3, edge, edge)  # zero padding where the square leaves the image
            x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + edge, w), min(top + edge, h)
            canvas[:, y0 - top:y1 - top, x0 - left:x1 - left] = img[:, y0:y1, x0:x1]
            crops.append(F.interpolate(canvas[None].float(), size=(self.size, self.size), mode="bilinear",
                                       antialias=True, align_corners=False))
        x = torch.cat(crops)
        params = params.to(self.device, dtype=torch.float32)
        x = (x + 255.0 * params[:, 4:7, None, None]).clamp_(0, 255)
        x = torch.where(params[:, 3, None, None, None] > 0.5, x.flip(3), x)
        return x, labels.to(self.device, non_blocking=True)
