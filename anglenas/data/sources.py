"""Where images come from: the embedded mini CIFAR-10, JPEG tarballs, CIFAR python pickles, ImageFolder trees.

An unreadable image (cut short, damaged, not an image) is skipped with one warning line naming it and the running
count; more than :func:`unreadable_limit` of them stop the run with a clear error (a damaged copy or a wrong
folder, rather than the odd bad file ImageNet holds).
"""
from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.datasets import ImageFolder

from anglenas.errors import UserError

T = TypeVar("T")
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
"""What PIL and torchvision raise for a file that is not a decodable image (OSError: cut short, missing)."""

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

    def resized(self, size: int) -> "ImageArrays":
        """The images resized (antialiased) to ``size`` x ``size`` (:func:`resize_images`)."""
        if self.images.shape[1] == size:
            return self
        x = resize_images(to_tensor_nchw(self.images, "cpu"), size)
        return ImageArrays(x.permute(0, 2, 3, 1).contiguous().numpy(), self.labels, self.classes)


def load_jpeg_tar(path: str | Path, cache_dir: str | Path | None = None) -> dict[str, ImageArrays]:
    """Read a ``{train,test}/<class>/NNNN.jpg`` tarball (the CIFAR-10 JPEG copies) into memory.

    With ``cache_dir`` the decoded arrays are kept as ``.npz`` keyed by the tarball's hash (decoding the full
    60k-image set takes ~20 s; the cache loads in well under a second).
    """
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
    unreadable = 0
    try:
        with tarfile.open(path, "r:gz") as tf:
            for member in tf:
                parts = member.name.split("/")
                if not member.isfile() or not member.name.endswith(".jpg") or len(parts) < 3:
                    continue
                split, cls = parts[-3], parts[-2]
                if split not in xs or cls not in CIFAR10_CLASSES:
                    continue
                data = tf.extractfile(member).read()
                try:
                    with Image.open(io.BytesIO(data)) as img:
                        xs[split].append(np.asarray(img.convert("RGB")))
                except UNREADABLE as exc:
                    unreadable += 1
                    warn_unreadable(f"{path}:{member.name}", exc, unreadable, path)
                    continue
                ys[split].append(CIFAR10_CLASSES.index(cls))
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"cannot read image tarball {path}: {exc}") from None
    total = unreadable + len(ys["train"]) + len(ys["test"])
    if unreadable > unreadable_limit(total):
        raise too_many_unreadable(unreadable, total, path)
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


def unreadable_limit(n: int) -> int:
    """How many unreadable images a set of ``n`` may hold before the run stops: 10, or 0.1% of a large set."""
    return max(10, n // 1000)


def warn_unreadable(name: str, exc: BaseException, count: int, where: str | Path) -> None:
    """The one warning line of a skipped image, with the running count."""
    print(f"warning: skipped unreadable image {name} ({_problem(exc)}); {count} unreadable image(s) in {where} so "
          f"far", file=sys.stderr, flush=True)


def too_many_unreadable(count: int, total: int, where: str | Path) -> UserError:
    return UserError(f"{count} of the {total} images in {where} are unreadable (more than {unreadable_limit(total)}): "
                     f"the copy is damaged or the folder is not an image dataset; check it (the warnings name the "
                     f"files)")


def _problem(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


class UnreadableImages:
    """Which images of a folder could not be decoded, in memory shared with the DataLoader worker processes.

    A file's first failure prints one warning line naming it with the running count; the run stops with a
    :class:`UserError` once more than :func:`unreadable_limit` distinct files failed.
    """

    def __init__(self, root: Path, n: int) -> None:
        self.root, self.total = root, n
        self.flags = torch.zeros(n, dtype=torch.uint8).share_memory_()

    def __contains__(self, index: int) -> bool:
        return bool(self.flags[index])

    @property
    def count(self) -> int:
        return int(self.flags.sum())

    def report(self, index: int, path: str, exc: BaseException) -> None:
        if self.flags[index]:
            return
        self.flags[index] = 1
        count = self.count
        if count > unreadable_limit(self.total):
            raise too_many_unreadable(count, self.total, self.root)
        warn_unreadable(path, exc, count, self.root)


def image_folder(root: str | Path) -> "CheckedImageFolder":
    """A :class:`CheckedImageFolder` with clear errors for a missing or empty folder."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; pass the ImageNet-style root with one folder per class")
    try:
        return CheckedImageFolder(root)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"image folder {root} holds no images: {exc}") from None


class CheckedImageFolder(ImageFolder):
    """A torchvision ImageFolder (``self[i]``: RGB PIL image, label) whose unreadable files are skipped."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.unreadable = UnreadableImages(root, len(self.samples))

    def first_readable(self, indices: np.ndarray, i: int, read: Callable[[int], T] | None = None) -> T:
        """``read(j)`` (default ``self[j]``) of the first readable image among ``indices[i]``, ``indices[i + 1]``, ...
        (wrapping around): a subset's unreadable image is replaced by the next one of the same subset."""
        read = read or self.__getitem__
        n = len(indices)
        for k in range(n):
            j = int(indices[(i + k) % n])
            if j in self.unreadable:
                continue
            try:
                return read(j)
            except UNREADABLE as exc:
                self.unreadable.report(j, self.samples[j][0], exc)
        raise UserError(f"none of the {n} images taken from {self.root} is readable")


def check_same_classes(train: CheckedImageFolder, val: CheckedImageFolder) -> None:
    """Refuse a validation folder whose class folders differ from the training folder's: its labels would mean
    other classes (a 0% score)."""
    ours, theirs = set(train.classes), set(val.classes)
    if ours == theirs:
        return
    diff = [f"only in {what}: {_some(names)}" for what, names in (("training", ours - theirs),
                                                                      ("validation", theirs - ours)) if names]
    raise UserError(f"the class folders of {val.root} differ from those of {train.root} ({'; '.join(diff)}); pass "
                    f"the validation folder of the same dataset")


def _some(names: Iterable[str], shown: int = 5) -> str:
    names = sorted(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def to_tensor_nchw(images: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 [N, H, W, 3] numpy -> uint8 [N, 3, H, W] tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 NCHW images resized (antialiased) to ``size`` x ``size``, in chunks on their device."""
    if x.shape[-1] == size:
        return x
    out = [F.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
           .round().clamp(0, 255).to(torch.uint8) for c in x.split(4096)]
    return torch.cat(out)
