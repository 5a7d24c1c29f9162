"""ImageNet transforms of the original (``utils/imagenet.py``), as functions of a PIL image and an explicit RNG.

Train: square random-resized crop (no aspect jitter, zero padding when no square fits), AlexNet PCA lighting,
horizontal flip. Eval: shorter side to 256, centre crop 224. Both return uint8 CHW RGB tensors; the float
conversion, BGR order and normalisation happen on the device (:class:`anglenas.data.streams.Normalize`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],  # rows in RGB order (fb.resnet "Lighting")
                    [-0.5808, -0.0045, -0.8140],
                    [-0.5836, -0.6948, 0.4203]])


def square_crop_box(w: int, h: int, rng: np.random.Generator, scale: tuple[float, float] = (0.08, 1.0),
                    attempts: int = 10) -> tuple[int, int, int]:
    """(left, top, edge) of a square of area U(scale) * H * W at a uniform position.

    If no square fits in ``attempts`` tries, the last one is centred; the part outside the image is black.
    """
    for _ in range(attempts):
        edge = int(round(math.sqrt(h * w * rng.uniform(*scale))))
        if edge <= w and edge <= h:
            return int(rng.integers(0, w - edge + 1)), int(rng.integers(0, h - edge + 1)), edge
    return (w - edge) // 2, (h - edge) // 2, edge


def square_random_resized_crop(img: Image.Image, rng: np.random.Generator, size: int = 224,
                               scale: tuple[float, float] = (0.08, 1.0), attempts: int = 10) -> Image.Image:
    """The square crop of :func:`square_crop_box`, resized to ``size`` (PIL pads outside parts with zeros)."""
    x0, y0, edge = square_crop_box(*img.size, rng, scale, attempts)
    return img.crop((x0, y0, x0 + edge, y0 + edge)).resize((size, size), Image.BILINEAR)


def lighting_shift(rng: np.random.Generator, std: float = 0.1) -> np.ndarray:
    """The AlexNet PCA lighting offset (RGB, in [0, 1] units): eigvec @ (eigval * N(0, std))."""
    return _EIGVEC @ (_EIGVAL * rng.normal(0.0, std, 3))


def pca_lighting(img: Image.Image, rng: np.random.Generator, std: float = 0.1) -> Image.Image:
    """AlexNet lighting noise: add :func:`lighting_shift` to the image in [0, 1]."""
    shift = lighting_shift(rng, std)
    arr = np.asarray(img, dtype=np.float32) / 255.0 + shift.astype(np.float32)
    return Image.fromarray(np.clip(arr * 255.0, 0, 255).astype(np.uint8))


def to_chw_uint8(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def imagenet_train(img: Image.Image, rng: np.random.Generator, size: int = 224) -> torch.Tensor:
    img = pca_lighting(square_random_resized_crop(img.convert("RGB"), rng, size), rng)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return to_chw_uint8(img)


def imagenet_eval(img: Image.Image, size: int = 224, resize: int = 256) -> torch.Tensor:
    img = img.convert("RGB")
    w, h = img.size
    short = min(w, h)
    new_w, new_h = (resize, int(resize * h / short + 0.5)) if w <= h else (int(resize * w / short + 0.5), resize)
    img = img.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return to_chw_uint8(img.crop((left, top, left + size, top + size)))
