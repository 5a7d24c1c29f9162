"""Data: embedded set, splits, deterministic resumable streams, rank sharding, augmentation, ImageFolder."""
import numpy as np
import pytest
import torch
from PIL import Image

from anglenas.data import DataConfig, build_data, eval_subset
from anglenas.data.sources import split_indices
from anglenas.data.streams import CIFAR_NORMALIZE, ORIGINAL_IMAGENET, Normalize, TensorStream, augment_crop_flip
from anglenas.data.transforms import imagenet_eval, pca_lighting, square_random_resized_crop
from anglenas.errors import UserError

PLAIN = Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def embedded():
    return build_data(DataConfig(dataset="embedded"))


def test_embedded_dataset(embedded):
    assert (embedded.num_train, embedded.num_val, embedded.num_classes, embedded.input_size) == (1800, 200, 10, 32)
    full = build_data(DataConfig(dataset="embedded"), held_out=False)
    assert (full.num_train, full.num_val) == (2000, 500)
    labels = torch.cat([y for _, y in full.val_batches(128)])
    assert torch.equal(torch.bincount(labels), torch.full((10,), 50))


def test_split_is_deterministic_and_disjoint():
    train, val = split_indices(1000, 100, seed=0)
    assert len(val) == 100 and len(train) == 900 and not set(train) & set(val)
    assert np.array_equal(split_indices(1000, 100, seed=0)[1], val)
    with pytest.raises(UserError, match="cannot hold out"):
        split_indices(10, 10, 0)


def test_stream_resumes_mid_epoch_with_the_same_batches(embedded):
    stream = embedded.train_stream(64, seed=3)
    full = list(stream.batches(0, 40))  # crosses the epoch boundary (28 steps per epoch)
    again = embedded.train_stream(64, seed=3)
    resumed = list(again.batches(25, 15))
    for (x1, y1), (x2, y2) in zip(full[25:], resumed):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_epoch_is_a_permutation_and_ranks_partition_the_global_batch():
    images = torch.arange(64, dtype=torch.uint8).view(64, 1, 1, 1).expand(64, 3, 2, 2).contiguous()
    labels = torch.arange(64)
    one = TensorStream(images, labels, 16, seed=1, normalize=PLAIN, pad=0, flip=False)
    seen = torch.cat([y for _, y in one.batches(0, one.steps_per_epoch)])
    assert sorted(seen.tolist()) == list(range(64))
    ranks = [TensorStream(images, labels, 16, 1, PLAIN, rank=r, world=2, pad=0, flip=False) for r in range(2)]
    for step in range(6):
        joined = torch.cat([next(iter(r.batches(step, 1)))[1] for r in ranks])
        assert torch.equal(joined, next(iter(one.batches(step, 1)))[1])


def test_augmentation_is_a_padded_crop_or_its_mirror():
    x = torch.randint(1, 255, (6, 3, 8, 8), dtype=torch.uint8)
    out = augment_crop_flip(x, torch.Generator().manual_seed(0), pad=2, flip=True)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        crops = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)


def test_normalisations():
    x = torch.tensor([10, 20, 30], dtype=torch.uint8).view(1, 3, 1, 1)
    assert ORIGINAL_IMAGENET(x).flatten().tolist() == [30.0, 20.0, 10.0]  # BGR, 0-255, no scaling
    assert CIFAR_NORMALIZE(x)[0, 0, 0, 0].item() == pytest.approx((10 - 125.3) / 63.0)


def test_square_crop_falls_back_to_zero_padding():
    rng = np.random.default_rng(0)
    img = Image.new("RGB", (400, 300), (200, 100, 50))
    out = square_random_resized_crop(img, rng, size=224)
    assert out.size == (224, 224) and np.asarray(out).min() > 0  # a fitting square: no black
    strip = Image.new("RGB", (1000, 10), (200, 100, 50))  # no square of area >= 8% fits in 10 rows
    padded = np.asarray(square_random_resized_crop(strip, np.random.default_rng(0), size=224))
    assert padded.shape == (224, 224, 3) and (padded == 0).all(axis=2).any()


def test_pca_lighting_adds_the_eigen_shift():
    img = Image.new("RGB", (4, 4), (128, 128, 128))
    alpha = np.random.default_rng(5).normal(0, 0.1, 3)
    eigval = np.array([0.2175, 0.0188, 0.0045])
    eigvec = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
    expected = np.clip((128 / 255 + eigvec @ (eigval * alpha)) * 255, 0, 255).astype(np.uint8)
    got = np.asarray(pca_lighting(img, np.random.default_rng(5)))[0, 0]
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_imagenet_eval_resizes_the_short_side_then_centre_crops():
    img = Image.new("RGB", (500, 375))
    img.paste((255, 0, 0), (0, 0, 250, 375))  # left half red
    out = imagenet_eval(img)
    assert out.shape == (3, 224, 224)
    assert out[0, 112, 100] > 200 and out[0, 112, 130] < 50  # the red/black edge stays at the centre


@pytest.fixture()
def tiny_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.jpg")
    return tmp_path


def test_image_folder_stream_is_deterministic_across_workers(tiny_folder):
    cfg = DataConfig(dataset="imagenet", train_dir=str(tiny_folder), search_val_size=2, workers=0)
    data = build_data(cfg)
    assert (data.num_train, data.num_val, data.num_classes) == (10, 2, 2)
    serial = list(data.train_stream(4, seed=0).batches(0, 3))
    cfg.workers = 2
    parallel = build_data(cfg).train_stream(4, seed=0)
    resumed = list(parallel.batches(1, 2))
    assert serial[0][0].shape == (4, 3, 224, 224)
    for (x1, y1), (x2, y2) in zip(serial[1:], resumed):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    val = list(data.val_batches(8))
    assert val[0][0].shape == (2, 3, 224, 224)


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p])
def test_missing_or_empty_image_folder(tmp_path, make):
    with pytest.raises(UserError, match="image folder"):
        build_data(DataConfig(dataset="imagenet", train_dir=str(make(tmp_path))))


def test_device_decode_matches_the_pil_pipeline(tiny_folder):
    """Same per-sample crop/flip/lighting draws; only the resize implementation differs."""
    cfg = DataConfig(dataset="imagenet", train_dir=str(tiny_folder), search_val_size=2, workers=0, decode="workers")
    pil = list(build_data(cfg).train_stream(4, seed=0).batches(0, 2))
    cfg.decode = "device"
    dev = build_data(cfg).train_stream(4, seed=0)
    first = list(dev.batches(0, 2))
    again = list(build_data(cfg).train_stream(4, seed=0).batches(1, 1))
    assert torch.equal(first[1][0], again[0][0])  # deterministic and resumable
    for (x1, y1), (x2, y2) in zip(pil, first):
        assert x2.shape == (4, 3, 224, 224) and torch.equal(y1, y2)
        # JPEG decoders and resize filters differ by a few grey levels on average, not more
        assert (x1 - x2).abs().mean() < 6.0


def test_eval_limit_is_a_fixed_subset_covering_the_classes():
    sub = eval_subset(500, 48)
    assert len(sub) == 48 and len(set(sub.tolist())) == 48 and (np.diff(sub) > 0).all()
    assert (sub == eval_subset(500, 48)).all() and (eval_subset(500, None) == np.arange(500)).all()
    data = build_data(DataConfig(dataset="embedded"), held_out=False)  # test set sorted by class, 50 per class
    labels = torch.cat([y for _, y in data.val_batches(16, limit=48)])
    assert len(labels) == 48 and len(labels.unique()) >= 8  # the first 48 would all be class 0
