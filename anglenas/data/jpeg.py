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

from anglenas.data.sources import CheckedImageFolder
from anglenas.data.transforms import lighting_shift, square_crop_box
from anglenas.errors import UserError


class JpegBytes(torch.utils.data.Dataset):
    """``(index, seed) -> (file bytes, label, [left, top, edge, flip, r, g, b shift], folder index)`` of an
    ImageFolder subset; a file whose header is unreadable is replaced by the next readable one of the subset."""

    def __init__(self, folder: CheckedImageFolder, indices: Sequence[int]) -> None:
        self.folder, self.indices = folder, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: tuple[int, int]):
        i, seed = item
        data, label, (w, h), index = self.folder.first_readable(self.indices, i, self._read)
        rng = np.random.default_rng(seed)
        left, top, edge = square_crop_box(w, h, rng)
        shift = lighting_shift(rng)
        flip = float(rng.random() < 0.5)
        params = torch.tensor([left, top, edge, flip, *shift], dtype=torch.float64)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), label, params, index

    def _read(self, index: int) -> tuple[bytes, int, tuple[int, int], int]:
        path, label = self.folder.samples[index]
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            return data, label, img.size, index


def collate_bytes(batch):
    data, labels, params, indices = zip(*batch)
    return list(data), torch.tensor(labels), torch.stack(params), list(indices)


def _decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | Exception]:
    """RGB uint8 CHW images, or the error of a file no decoder reads; files the device decoder refuses (CMYK, PNG
    named .JPEG) are decoded on the CPU.

    torchvision 0.29 deprecates its decoders in favour of TorchCodec; they still work with the pinned torchvision,
    and moving to TorchCodec is a planned follow-up, so the deprecation warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        return _decode_rgb(data, device)


def _decode_rgb(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | Exception]:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return [_decode_one(d, device) for d in data]


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | Exception:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        try:
            return decode_image(data, mode=ImageReadMode.RGB).to(device)
        except RuntimeError as exc:
            return exc


class DeviceAugment:
    """Turns a :func:`collate_bytes` batch into float RGB images in [0, 255] of ``size`` on ``device``.

    A file that no decoder reads (cut short after its header) is reported to ``folder.unreadable`` and replaced,
    with its label and augmentation, by the next decodable image of the batch. Without ``folder`` it is an error
    naming the file's index.
    """

    def __init__(self, device: torch.device, size: int = 224, folder: CheckedImageFolder | None = None) -> None:
        self.device, self.size, self.folder = device, size, folder

    def __call__(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        data, labels, params, indices = batch
        images = _decode(data, self.device)
        bad = [k for k, img in enumerate(images) if isinstance(img, Exception)]
        if bad:
            images, labels, params = self._replace(bad, images, labels, params, indices)
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

    def _replace(self, bad: list[int], images: list, labels: torch.Tensor, params: torch.Tensor,
                 indices: list[int]) -> tuple[list, torch.Tensor, torch.Tensor]:
        for k in bad:
            if self.folder is None:
                raise UserError(f"image {indices[k]} of the training folder is not a decodable image")
            self.folder.unreadable.report(indices[k], self.folder.samples[indices[k]][0], images[k])
        good = [k for k in range(len(images)) if k not in bad]
        if not good:
            raise UserError(f"no image of a batch of {len(images)} from {self.folder.root} is decodable")
        source = [k if k in good else next((g for g in good if g > k), good[0]) for k in range(len(images))]
        labels, params = labels[source], params[source]
        return [images[k] for k in source], labels, params
