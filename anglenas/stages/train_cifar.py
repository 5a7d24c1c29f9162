"""DARTS CIFAR-10 evaluation: train a genotype's ``NetworkCIFAR`` from scratch (quark0/darts ``cnn/train.py``,
chenxin061/pdarts ``train_cifar.py``).

Defaults are the DARTS paper's: 600 epochs, SGD lr 0.025 cosine to 0, momentum 0.9, weight decay 3e-4, C=36 and 20
cells, cutout 16, drop-path ramped linearly over the epochs, auxiliary head weighted 0.4, gradient-norm clip 5.
The batch size and final drop-path follow the paper of the searcher that found the genotype (:data:`RECIPES`):
DARTS' 96 and 0.2; PDARTS' and PertNAS' 128 and 0.3 (their ``train_cifar.py`` / ``eval_cifar.py``). As upstream,
the cosine schedule is stepped at the top of each epoch, so epoch e trains at the cosine's value after e + 1
steps. ``SAVE/checkpoint.pt`` is written atomically after every epoch (the same command resumes);
``SAVE/summary.json`` holds the final and best test top-1. Batches, augmentation, cutout and drop-path masks are
functions of (seed, step), so a resumed run trains like an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from anglenas.checkpoint import (
    atomic_write_text,
    check_writable,
    load_checkpoint,
    open_run,
    run_settings,
    save_checkpoint,
)
from anglenas.config import RuntimeConfig, field, override
from anglenas.data import DataConfig, build_data
from anglenas.data.streams import step_seed
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.runtime import pick_device, use_threads
from anglenas.search_result import FILENAME, read_search_result
from anglenas.searchers.darts.architect import LOW_PRECISION
from anglenas.searchers.darts.searchdata import epoch_lr
from anglenas.spaces.darts.genotypes import GENOTYPES, Genotype, parse_genotype
from anglenas.spaces.darts.model_eval import NetworkCIFAR
from anglenas.spaces.darts.space import DartsSpace
from anglenas.train.supernet import autocast_context, evaluate

CHECKPOINT, SUMMARY = "checkpoint.pt", "summary.json"
RESUMABLE = {"save", "device", "threads", "demo", "data", "eval_limit", "eval", "eval_resume"}


@dataclass(frozen=True)
class Recipe:
    """What a searcher's paper trained its CIFAR-10 cells with, where the papers differ."""

    batch_size: int
    drop_path_prob: float


RECIPES = {"darts": Recipe(96, 0.2), "pdarts": Recipe(128, 0.3), "pertnas": Recipe(128, 0.3)}
"""DARTS (quark0/darts ``cnn/train.py``), PDARTS (chenxin061/pdarts ``train_cifar.py``), PertNAS (its
``eval_cifar.py`` run behind the 97.51%); a genotype of another or no known searcher gets DARTS'."""
PUBLISHED_SEARCHER = {"DARTS_V1": "darts", "DARTS_V2": "darts", "DARTS": "darts", "DARTS_ABS": "darts",
                      "PDARTS_ABS": "pdarts"}
"""The searcher behind each published genotype name."""


@dataclass
class CifarTrainConfig(RuntimeConfig):
    """Training a genotype on CIFAR-10 (defaults: the DARTS paper; batch and drop-path: the genotype's searcher's)."""

    arch: str = field("DARTS_V2", f"genotype: a name ({', '.join(GENOTYPES)}), a search's genotype.json or "
                                  f"search_result.json (or its folder), or a Genotype(...) string")
    reduce_arch: str = field("", "take the reduction cell from this genotype instead (same forms as --arch): "
                                 "PertNAS' pairing, the best run's normal cell with the second-best run's reduce "
                                 "cell")
    data: str = field("", "CIFAR-10: the folder holding cifar-10-batches-py/, or the cifar10-jpg tarball")
    dataset: str = field("auto", "image source (auto: from --data)", choices=("auto", "embedded", "cifar10",
                                                                                 "cifar10-jpg"))
    save: str = override("runs/darts-train")
    batch_size: int | None = field(None, "batch size (default: the recipe of the genotype's searcher: DARTS 96, "
                                         "PDARTS and PertNAS 128)", low=1)
    learning_rate: float = field(0.025, "initial learning rate (cosine to 0)", low=0)
    momentum: float = field(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = field(3e-4, "weight decay (all parameters)", low=0)
    epochs: int = field(600, "training epochs", low=1)
    init_channels: int = field(36, "channels of the first cells", low=1)
    layers: int = field(20, "number of cells", low=3)
    auxiliary: bool = field(True, "auxiliary head at 2/3 depth")
    auxiliary_weight: float = field(0.4, "weight of the auxiliary loss", low=0)
    cutout: bool = field(True, "cutout augmentation")
    cutout_length: int = field(16, "side of the cutout square", low=0)
    drop_path_prob: float | None = field(None, "final drop-path probability, ramped linearly from 0 (default: the "
                                               "recipe of the genotype's searcher: DARTS 0.2, PDARTS and PertNAS "
                                               "0.3)", low=0, high=1)
    grad_clip: float = field(5.0, "gradient-norm clip (0: off)", low=0)
    steps_per_epoch: int = field(0, "cap on steps per epoch (0: a full pass)", low=0)
    eval_limit: int | None = field(None, "evaluate on a fixed subset of this many test images (default: all)", low=1)
    eval: bool = field(False, "only evaluate --eval_resume on the test set and print its top-1")
    eval_resume: str = field("", "checkpoint.pt of a run of this script (the network is rebuilt from it)")


DEMO = dict(dataset="embedded", threads=1, init_channels=4, layers=3, batch_size=16, epochs=2, steps_per_epoch=3,
            eval_limit=64, save="runs/darts-train-demo")
"""``--demo``: 2 epochs of 3 steps, C=4, 3 cells, batch 16, on the embedded mini CIFAR-10."""


def genotype_and_searcher(value: str) -> tuple[Genotype, str | None]:
    """The genotype ``value`` gives (see ``--arch``) and the searcher that found it (None: unknown). A
    ``genotype.json`` names its searcher through the ``search_result.json`` beside it."""
    value = value.strip()
    if value in GENOTYPES:
        return GENOTYPES[value], PUBLISHED_SEARCHER.get(value)
    if value.startswith("Genotype("):
        return parse_genotype(value), None
    path = Path(value)
    if not path.exists():
        return parse_genotype(value), None
    genotype = DartsSpace().read_arch_file(path) if path.is_file() else None
    if genotype is None:  # a search result, or its folder
        result = read_search_result(path)
        if not isinstance(result.best, Genotype):
            raise UserError(f"{value} holds a {result.space} architecture, not a DARTS genotype; train it with "
                            f"training/train_from_scratch.py --arch {value}")
        return result.best, result.searcher
    beside = path.with_name(FILENAME)
    if beside.is_file():
        result = read_search_result(beside)
        if genotype in result.archs:
            return genotype, result.searcher
    return genotype, None


def resolve(cfg: CifarTrainConfig) -> tuple[CifarTrainConfig, Genotype, str]:
    """(``cfg`` with the recipe's batch size and drop-path filled in, the genotype to train, the recipe's name)."""
    genotype, searcher = genotype_and_searcher(cfg.arch)
    if cfg.reduce_arch:
        other, _ = genotype_and_searcher(cfg.reduce_arch)
        genotype = genotype._replace(reduce=other.reduce, reduce_concat=other.reduce_concat)
    name = searcher if searcher in RECIPES else "darts"
    recipe = RECIPES[name]
    cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size or recipe.batch_size,
                              drop_path_prob=recipe.drop_path_prob if cfg.drop_path_prob is None
                              else cfg.drop_path_prob)
    return cfg, genotype, name


def cutout(x: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """Zero the square [c - length // 2, c + length // 2) around a uniform pixel c of each image (clipped at the
    border), as upstream's Cutout."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=gen).to(x.device)
    cx = torch.randint(0, w, (n, 1, 1), generator=gen).to(x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    half = length // 2
    inside = (rows >= cy - half) & (rows < cy + half) & (cols >= cx - half) & (cols < cx + half)
    return x * (~inside)[:, None].to(x.dtype)


def evaluate_checkpoint(cfg: CifarTrainConfig) -> dict[str, float]:
    """Rebuild the network of a checkpoint of :func:`run_train` and evaluate it on the test set."""
    if not cfg.eval_resume:
        raise UserError("--eval needs --eval_resume PATH (the checkpoint.pt of a train.py run)")
    device = pick_device(cfg.device)
    use_threads(cfg.threads)
    ckpt = load_checkpoint(cfg.eval_resume, device)
    if not isinstance(ckpt, dict) or not {"config", "genotype", "model"} <= set(ckpt):
        raise UserError(f"{cfg.eval_resume} is not a checkpoint of darts-master/train.py")
    saved = ckpt["config"]
    data = build_data(DataConfig(dataset=cfg.dataset, data_dir=cfg.data, workers=0),
                      device, held_out=False)
    model = NetworkCIFAR(saved["init_channels"], data.num_classes, saved["layers"], saved["auxiliary"],
                         parse_genotype(Genotype(**ckpt["genotype"]))).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    result = evaluate(model, data.val_batches(200, limit=cfg.eval_limit), device, cfg.amp and device.type == "cuda")
    print(f"{cfg.eval_resume} (epoch {ckpt['epoch']}): top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}% "
          f"on {result['n']} test images")
    return result


def run_train(cfg: CifarTrainConfig, max_epochs: int | None = None) -> dict | None:
    """Train; returns the summary (None when stopped by ``max_epochs``, to simulate an interruption)."""
    check_writable(cfg.save, "run folder", "--save")
    device = pick_device(cfg.device)
    threads = use_threads(cfg.threads)
    cfg, genotype, recipe = resolve(cfg)
    save = Path(cfg.save)
    amp = cfg.amp and device.type == "cuda"
    data = build_data(DataConfig(dataset=cfg.dataset, data_dir=cfg.data, workers=0),
                      device, held_out=False)
    logger = RunLogger(save)  # after the inputs are checked: bad input leaves no run folder behind
    stream = data.train_stream(cfg.batch_size, cfg.seed)
    spe = min(stream.steps_per_epoch, cfg.steps_per_epoch or stream.steps_per_epoch)
    torch.manual_seed(cfg.seed)
    model = NetworkCIFAR(cfg.init_channels, data.num_classes, cfg.layers, cfg.auxiliary, genotype).to(device)
    optimizer = torch.optim.SGD(model.parameters(), cfg.learning_rate, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    criterion = nn.CrossEntropyLoss()
    params_m = sum(p.numel() for n, p in model.named_parameters() if "auxiliary" not in n) / 1e6
    start, history, best = 0, [], {"top1": -1.0, "epoch": 0}
    ckpt = open_run(save / CHECKPOINT, cfg, RESUMABLE, map_location=device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, history, best = ckpt["epoch"], ckpt["history"], ckpt["best"]
        logger.info(f"resumed from {save / CHECKPOINT} after epoch {start}/{cfg.epochs}")
    logger.info(f"genotype = {genotype}")
    logger.info(f"{recipe.upper()} recipe: batch {cfg.batch_size}, drop-path {cfg.drop_path_prob}; device {device}, "
                f"{threads} CPU threads")
    logger.info(f"NetworkCIFAR: C={cfg.init_channels}, {cfg.layers} cells, {params_m:.3f}M params (without the "
                f"auxiliary head); {cfg.epochs} epochs x {spe} steps at batch {cfg.batch_size} on {device}")
    progress = logger.progress("train", cfg.epochs * spe, start * spe)
    end = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    for epoch in range(start, end):
        lr = epoch_lr(epoch, cfg.epochs, cfg.learning_rate, 0.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for i, (x, y) in enumerate(stream.batches(epoch * spe, spe)):
            step = epoch * spe + i
            gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, 1))
            if cfg.cutout:
                x = cutout(x, cfg.cutout_length, gen)
            torch.manual_seed(step_seed(cfg.seed, step, 2))  # drop-path masks
            optimizer.zero_grad(set_to_none=True)
            with autocast_context(device, amp):
                out = model(x)
            logits, logits_aux = out if isinstance(out, tuple) else (out, None)
            loss = criterion(logits.float() if logits.dtype in LOW_PRECISION else logits, y)
            if logits_aux is not None:
                loss = loss + cfg.auxiliary_weight * criterion(logits_aux.float(), y)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            progress.update(1)
        model.eval()
        val = evaluate(model, data.val_batches(200, limit=cfg.eval_limit), device, amp)
        record = {"epoch": epoch + 1, "lr": lr, "drop_path_prob": model.drop_path_prob,
                  "train_loss": loss_sum / seen, "train_top1": 100.0 * correct / seen,
                  "top1": val["top1"], "top5": val["top5"], "loss": val["loss"], "n": val["n"]}
        history.append(record)
        if val["top1"] > best["top1"]:
            best = {"top1": val["top1"], "epoch": epoch + 1}
        for tag in ("train_loss", "train_top1", "top1", "loss", "lr"):
            logger.scalar(f"train/{tag}", record[tag], epoch + 1)
        logger.info(f"epoch {epoch + 1}/{cfg.epochs}: lr {lr:.5f} train loss {record['train_loss']:.4f} top-1 "
                    f"{record['train_top1']:.2f}% | test top-1 {val['top1']:.2f}% (best {best['top1']:.2f}%)")
        save_checkpoint({"config": run_settings(cfg, RESUMABLE), "genotype": genotype._asdict(),
                         "epoch": epoch + 1, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "history": history, "best": best}, save / CHECKPOINT)
    if end < cfg.epochs:
        return None
    if not history:
        raise UserError("--epochs must be at least 1")
    summary = {"format": "anglenas-darts-train-summary", "version": 1, "arch": cfg.arch,
               "reduce_arch": cfg.reduce_arch, "recipe": recipe, "batch_size": cfg.batch_size,
               "drop_path_prob": cfg.drop_path_prob,
               "genotype": genotype._asdict(), "init_channels": cfg.init_channels, "layers": cfg.layers,
               "params_m": round(params_m, 4), "dataset": data.cfg.dataset, "epochs": cfg.epochs,
               "top1": history[-1]["top1"], "top5": history[-1]["top5"], "eval_images": history[-1]["n"],
               "best_top1": best["top1"], "best_epoch": best["epoch"], "checkpoint": CHECKPOINT, "history": history}
    atomic_write_text(save / SUMMARY, json.dumps(summary, indent=1) + "\n")
    logger.info(f"final test top-1 {summary['top1']:.2f}% (best {best['top1']:.2f}% at epoch {best['epoch']}); "
                f"summary {save / SUMMARY}")
    logger.close()
    return summary
