"""Where images come from: the embedded mini CIFAR-10, JPEG tarballs, CIFAR python pickles, ImageFolder trees."""
from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anglenas.errors import UserError

EMBEDDED_TARBALL = Path(__file__).with_name("cifar10-jpg-mini.tar.gz")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class ImageArrays:
    """Decoded images in memory: ``images`` uint8 [N, H, W, 3] (RGB), ``labels`` int64 [N]."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "ImageArrays":
        return ImageArrays(self.images[index], self.labels[index], self.classes)


def load_jpeg_tar(path: str | Path, cache_dir: str | Path | None = None) -> dict[str, ImageArrays]:
    """Read a ``{train,test}/<class>/NNNN.jpg`` tarball (the CIFAR-10 JPEG copies) into memory.

    With ``cache_dir`` the decoded arrays are kept as ``.npz`` keyed by the tarball's hash (decoding the full
    60k-image set takes ~20 s; the cache loads in well under a second).
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise UserError(f"dataset file {path} does not exist")
    cache = None
    if cache_dir is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        cache = Path(cache_dir) / f"{path.name}.{digest}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return {s: ImageArrays(z[f"{s}_x"], z[f"{s}_y"], CIFAR10_CLASSES) for s in ("train", "test")}
    xs: dict[str, list] = {"train": [], "test": []}
    ys: dict[str, list] = {"train": [], "test": []}
    try:
        with tarfile.open(path, "r:gz") as tf:
            for member in tf:
                parts = member.name.split("/")
                if not member.isfile() or not member.name.endswith(".jpg") or len(parts) < 3:
                    continue
                split, cls = parts[-3], parts[-2]
                if split not in xs or cls not in CIFAR10_CLASSES:
                    continue
                with Image.open(io.BytesIO(tf.extractfile(member).read())) as img:
                    xs[split].append(np.asarray(img.convert("RGB")))
                ys[split].append(CIFAR10_CLASSES.index(cls))
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"cannot read image tarball {path}: {exc}") from None
    if not xs["train"] or not xs["test"]:
        raise UserError(f"{path} holds no train/<class>/*.jpg and test/<class>/*.jpg images")
    out = {s: ImageArrays(np.stack(xs[s]), np.asarray(ys[s], dtype=np.int64), CIFAR10_CLASSES) for s in xs}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"{s}_{k}": getattr(out[s], a) for s in out for k, a in (("x", "images"), ("y", "labels"))})
        tmp.replace(cache)
    return out


def load_embedded() -> dict[str, ImageArrays]:
    """The embedded default: 2,000 train + 500 test real CIFAR-10 images shipped with the package."""
    return load_jpeg_tar(EMBEDDED_TARBALL)


def load_cifar_pickles(root: str | Path, num_classes: int) -> dict[str, ImageArrays]:
    """CIFAR-10/100 in the python-pickle layout (``cifar-10-batches-py`` / ``cifar-100-python``) via torchvision."""
    from torchvision.datasets import CIFAR10, CIFAR100

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"CIFAR folder {root} does not exist")
    cls = CIFAR10 if num_classes == 10 else CIFAR100
    out = {}
    for split in ("train", "test"):
        try:
            ds = cls(str(root), train=split == "train", download=False)
        except RuntimeError as exc:
            raise UserError(f"{root}: {exc} (expected the {cls.base_folder}/ folder of the python version)") from None
        out[split] = ImageArrays(np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64), tuple(ds.classes))
    return out


def split_indices(n: int, held_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, held-out) index split of ``range(n)``; both sorted."""
    if not 0 < held_out < n:
        raise UserError(f"cannot hold out {held_out} of {n} training images for search-val; "
                        f"pass --search_val_size between 1 and {n - 1}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[held_out:]), np.sort(perm[:held_out])


def image_folder(root: str | Path):
    """A torchvision ImageFolder with clear errors for a missing or empty folder."""
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; pass the ImageNet-style root with one folder per class")
    try:
        return ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"image folder {root} holds no images: {exc}") from None


def to_tensor_nchw(images: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 [N, H, W, 3] numpy -> uint8 [N, 3, H, W] tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)
