"""Section 4, final training and data loading: img/s of training SPOS_ABS from scratch (a plain fp32 loop against
ours), and of loading ImageNet-size JPEGs with decoding on workers and on the device."""
from __future__ import annotations

from common import final_train_rate, report_variants

from .check import Check


def train_data(check: Check, sec: dict) -> None:
    from bench_data import make_folder, rate

    from anglenas.data import DataConfig, build_data

    if check.tiny:
        batch, size, width, steps, warmup = 4, 32, 0.25, 1, 0
        images, data_batch, data_steps, workers = 20, 4, 2, [0]
    else:
        batch, size, width, steps, warmup = 256, 224, 1.0, 20, 5
        images, data_batch, data_steps, workers = 1200, 128, 8, [8, 16]
    sec["setting"] = (f"SPOS_ABS, batch {batch}, {size}x{size}, width {width}, random data, {warmup} warm-up + "
                      f"{steps} timed steps; data: ImageFolder of {images} synthetic 500x375 JPEGs, batch "
                      f"{data_batch}, {data_steps} timed batches")
    table = sec["tables"].setdefault("final training img/s", {})
    for variant in ("plain-fp32", "bf16-cl"):
        table[variant] = report_variants([variant], lambda v: final_train_rate(v, "SPOS_ABS", batch, size, width,
                                                                               steps, warmup, check.device))[variant]
        table[variant].pop("ratio", None)
        check.write()
    if "img_per_s" in table["plain-fp32"] and "img_per_s" in table["bf16-cl"]:
        sec["figures"]["ours / plain fp32"] = round(table["bf16-cl"]["img_per_s"] / table["plain-fp32"]["img_per_s"], 2)
    data = sec["tables"].setdefault("JPEG loading img/s", {})
    folder = check.work / "jpegs"
    if not folder.exists():
        make_folder(folder, 10, images // 10)
    for decode, counts in (("workers", workers), ("device", workers[-1:])):
        for n in counts:
            cfg = DataConfig(dataset="imagenet", train_dir=str(folder), search_val_size=10, workers=n, decode=decode)
            key = f"decode on {decode}, {n} workers"
            try:
                stream = build_data(cfg, check.device).train_stream(data_batch, seed=0, channels_last=True)
                data[key] = {"img_per_s": round(rate(stream, data_steps, check.device), 1)}
            except Exception as exc:  # noqa: BLE001
                data[key] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
            check.write()
