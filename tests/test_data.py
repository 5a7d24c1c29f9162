"""Data: embedded set, splits, deterministic resumable streams, rank sharding, augmentation, ImageFolder."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from anglenas.data import DataConfig, build_data, eval_subset
from anglenas.data.augment import Pipeline, apply_augment, draw_augment
from anglenas.data.normalize import CIFAR_NORMALIZE, ORIGINAL_IMAGENET, Normalize
from anglenas.data.sources import split_indices
from anglenas.data.streams import TensorStream
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
    crop_flip = Pipeline(flip=True, pad=2, cutout=0, cutout_fill=(0, 0, 0), normalize=PLAIN, flip_first=False)
    out = apply_augment(x, draw_augment(len(x), x.shape[-1], crop_flip, torch.Generator().manual_seed(0)), crop_flip)
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


# -- unreadable images and mismatched folders ------------------------------------------------------------------
def _truncate(path):
    """Cut a JPEG in half: its header still reads, its image data does not."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: skipped unreadable image")]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_truncated_jpeg_is_skipped_with_one_warning_line(tiny_folder, capfd, workers):
    cfg = DataConfig(dataset="imagenet", train_dir=str(tiny_folder), search_val_size=2, workers=workers,
                     decode="workers")
    data = build_data(cfg)
    train, _ = split_indices(12, 2, seed=0)
    bad = _truncate(tiny_folder / "ab"[train[7] // 6] / f"{train[7] % 6}.jpg")  # a training image
    batches = list(data.train_stream(4, seed=0).batches(0, 8))  # 4 epochs of 2 steps: the file comes up again
    assert all(x.shape == (4, 3, 224, 224) and set(y.tolist()) <= {0, 1} for x, y in batches)
    lines = _warnings(capfd.readouterr().err)
    assert len(lines) == 1 and str(bad) in lines[0] and "1 unreadable image(s)" in lines[0], lines
    assert data.folder.unreadable.count == 1


def test_evaluation_leaves_unreadable_images_out(tiny_folder, tmp_path_factory, capfd):
    val = tmp_path_factory.mktemp("val")
    for cls in ("a", "b"):
        (val / cls).mkdir()
        for i in range(3):
            (val / cls / f"{i}.jpg").write_bytes((tiny_folder / cls / f"{i}.jpg").read_bytes())
    _truncate(val / "a" / "1.jpg")
    (val / "b" / "2.jpg").write_bytes(b"not an image at all")
    data = build_data(DataConfig(dataset="imagenet", train_dir=str(tiny_folder), test_dir=str(val), workers=0),
                      held_out=False)
    labels = torch.cat([y for _, y in data.val_batches(4)])
    assert labels.tolist() == [0, 0, 1, 1]  # 6 images, 2 unreadable
    assert len(_warnings(capfd.readouterr().err)) == 2


def test_too_many_unreadable_images_stop_the_run_with_one_line(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(15):
            Image.new("RGB", (20, 20), (i, 0, 0)).save(tmp_path / cls / f"{i}.jpg")
            if i % 4:  # 11 of 15 per class: 22 of 30 unreadable, more than the limit of 10
                _truncate(tmp_path / cls / f"{i}.jpg")
    data = build_data(DataConfig(dataset="imagenet", train_dir=str(tmp_path), search_val_size=2, workers=2,
                                 decode="workers"))
    with pytest.raises(UserError) as err:
        list(data.train_stream(4, seed=0).batches(0, 7))
    found = re.match(rf"(\d+) of the 30 images in {re.escape(str(tmp_path))} are unreadable \(more than 10\)",
                     str(err.value))
    assert found and 11 <= int(found.group(1)) <= 22  # two workers may each count one more before the stop
    assert "\n" not in str(err.value)  # the worker's traceback is not part of the message


def test_device_decoding_replaces_an_image_cut_after_its_header(tiny_folder, capfd):
    from anglenas.data.jpeg import DeviceAugment, JpegBytes, collate_bytes
    from anglenas.data.sources import image_folder

    folder = image_folder(tiny_folder)
    bad = _truncate(tiny_folder / "a" / "2.jpg")
    dataset = JpegBytes(folder, np.arange(len(folder)))
    batch = collate_bytes([dataset[(i, i)] for i in (1, 2, 3)])  # the header of 2 reads: the worker keeps it
    assert batch[3] == [1, 2, 3]
    x, y = DeviceAugment(torch.device("cpu"), 32, folder)(batch)
    assert x.shape == (3, 3, 32, 32) and torch.equal(x[1], x[2]) and y.tolist() == [0, 0, 0]
    lines = _warnings(capfd.readouterr().err)
    assert len(lines) == 1 and str(bad) in lines[0]
    with pytest.raises(UserError, match="^image 2 of the training folder is not a decodable image$"):
        DeviceAugment(torch.device("cpu"), 32)(batch)


def test_jpeg_tarball_skips_an_unreadable_member(tmp_path, capfd):
    import io
    import tarfile

    from anglenas.data.sources import load_jpeg_tar

    path = tmp_path / "mini.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, size in (("train/cat/0.jpg", None), ("train/dog/1.jpg", 100), ("test/cat/2.jpg", None)):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, "JPEG")
            data = buf.getvalue()[:size]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    sets = load_jpeg_tar(path)
    assert (len(sets["train"]), len(sets["test"])) == (1, 1) and sets["train"].labels.tolist() == [3]
    lines = _warnings(capfd.readouterr().err)
    assert len(lines) == 1 and "train/dog/1.jpg" in lines[0]


def test_validation_folder_with_other_classes_is_refused(tiny_folder, tmp_path_factory):
    from anglenas.data.sources import check_same_classes, image_folder

    val = tmp_path_factory.mktemp("val")
    for cls in ("a", "c", "d"):
        (val / cls).mkdir()
        (val / cls / "0.jpg").write_bytes((tiny_folder / "a" / "0.jpg").read_bytes())
    with pytest.raises(UserError) as err:
        check_same_classes(image_folder(tiny_folder), image_folder(val))
    assert f"the class folders of {val} differ from those of {tiny_folder} (only in training: b; " \
           f"only in validation: c, d)" in str(err.value)
    check_same_classes(image_folder(tiny_folder), image_folder(tiny_folder))  # the same classes pass
