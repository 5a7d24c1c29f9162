"""The device-resident CIFAR loader: augmentations against a per-pixel hand computation, seeding, passes."""
import importlib.util
import shutil

import numpy as np
import pytest
import torch

from anglenas.data.augment import AugmentDraw, Pipeline, apply_augment, draw_augment
from anglenas.data.device_cifar import PIPELINES, DeviceLoader, eval_batches, load_device_cifar, read_source
from anglenas.data.normalize import Normalize
from anglenas.data.sources import EMBEDDED_TARBALL
from anglenas.errors import UserError


def hand_augment(img: np.ndarray, dy: int, dx: int, flip: bool, top: int, left: int, pad: int, cut: int,
                 fill) -> np.ndarray:
    """One CHW image: mirror, then out[r, c] = mirrored[r + dy - pad, c + dx - pad] (0 outside), then cutout."""
    c, h, w = img.shape
    src = img[:, :, ::-1] if flip else img
    out = np.zeros_like(img)
    for r in range(h):
        for q in range(w):
            sr, sq = r + dy - pad, q + dx - pad
            if 0 <= sr < h and 0 <= sq < w:
                out[:, r, q] = src[:, sr, sq]
    for r in range(top, top + cut):
        for q in range(left, left + cut):
            out[:, r, q] = fill
    return out


def test_augment_matches_hand_computation():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
    pipe = Pipeline(flip=True, pad=2, cutout=3, cutout_fill=(7, 8, 9), normalize=Normalize((0, 0, 0), (1, 1, 1)))
    offsets = torch.tensor([[0, 4, 2], [3, 1, 4]])
    flips = torch.tensor([True, False, True])
    corners = torch.tensor([[0, 5, 2], [5, 0, 3]])
    got = apply_augment(torch.from_numpy(x), AugmentDraw(offsets, flips, corners), pipe).numpy()
    for i in range(3):
        want = hand_augment(x[i], int(offsets[0, i]), int(offsets[1, i]), bool(flips[i]), int(corners[0, i]),
                            int(corners[1, i]), pad=2, cut=3, fill=np.array([7, 8, 9]))
        np.testing.assert_array_equal(got[i], want)


def test_darts_pipeline_crop_pad4_without_cutout():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.int64).remainder(251).to(torch.uint8).view(2, 3, 6, 6)
    pipe = PIPELINES["darts"]
    draw = AugmentDraw(torch.tensor([[8, 0], [0, 5]]), torch.tensor([False, True]), torch.zeros(2, 2, dtype=torch.long))
    got = apply_augment(x, draw, pipe).numpy()
    for i, (dy, dx, fl) in enumerate([(8, 0, False), (0, 5, True)]):
        want = hand_augment(x[i].numpy(), dy, dx, fl, 0, 0, pad=4, cut=0, fill=0)
        np.testing.assert_array_equal(got[i], want)


def test_draws_cover_ranges_and_cutout_stays_inside():
    gen = torch.Generator().manual_seed(0)
    d = draw_augment(4000, 32, PIPELINES["ffcv"], gen)
    assert set(d.offsets.unique().tolist()) == set(range(5))
    assert set(d.corners.unique().tolist()) == set(range(25))  # top-left in [0, 24]: the 8x8 square fits
    assert 0.45 < d.flips.float().mean() < 0.55


def test_passes_are_seeded_shuffled_and_drop_last():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 4, 4).contiguous()
    labels = torch.arange(10)
    pipe = Pipeline(flip=False, pad=0, cutout=0, cutout_fill=(0, 0, 0), normalize=Normalize((0, 0, 0), (1, 1, 1)))
    loader = DeviceLoader(images, labels, batch_size=3, seed=5, pipeline=pipe)
    assert loader.steps_per_epoch == 3
    first = [y.tolist() for _, y in loader.passes((1, 2))]
    assert len(first) == 3 and len({v for b in first for v in b}) == 9  # 9 distinct of 10, one left out
    again = [y.tolist() for _, y in loader.passes((1, 2))]
    other = [y.tolist() for _, y in loader.passes((1, 3))]
    assert first == again and first != other
    for x, y in loader.passes((0,)):
        assert torch.equal(x[:, 0, 0, 0], y.float())  # image and label travel together
    assert len(list(loader.passes((0,), num_steps=7))) == 7  # crosses into a second, reshuffled pass


def test_embedded_split_and_eval_batches():
    data = load_device_cifar("embedded", "cpu", val_size=200, split_seed=0)
    assert data.train_x.shape == (1800, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert len(data.val_y) == 200 and len(data.test_y) == 500
    batches = list(eval_batches(data.test_x, data.test_y, 128, PIPELINES["ffcv"]))
    assert [len(y) for _, y in batches] == [128, 128, 128, 116]
    want = (data.test_x[0, 1].float() - 122.961) / 50.847
    torch.testing.assert_close(batches[0][0][0, 1], want)


def test_sources_resolve_and_bad_ones_are_user_errors(tmp_path):
    shutil.copy(EMBEDDED_TARBALL, tmp_path / "cifar10-jpg.tar.gz")
    from_folder = read_source(str(tmp_path))
    from_file = read_source(str(tmp_path / "cifar10-jpg.tar.gz"))
    assert len(from_folder["train"]) == len(from_file["train"]) == 2000 and len(from_folder["test"]) == 500
    with pytest.raises(UserError, match="does not exist"):
        read_source(str(tmp_path / "missing"))
    beton = tmp_path / "beton"
    beton.mkdir()
    (beton / "cifar_train.beton").write_bytes(b"")
    if importlib.util.find_spec("ffcv") is None:
        with pytest.raises(UserError, match="ffcv is not installed"):
            read_source(str(beton))
