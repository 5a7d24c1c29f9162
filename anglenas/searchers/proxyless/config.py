"""The ProxylessNAS search's settings: flag names follow the original's ``imagenet_arch_search.py`` (``--path``,
``--manual_seed`` and ``--cpu_threads`` are aliases of ``--save``, ``--seed`` and ``--threads``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from anglenas.config import RuntimeConfig, SizeConfig, field, override
from anglenas.data import DataConfig
from anglenas.searchers.proxyless.latency import LOSS_TYPES
from anglenas.searchers.registry import SearchInputConfig


@dataclass
class ProxylessConfig(DataConfig, SizeConfig, RuntimeConfig, SearchInputConfig):
    """ProxylessNAS search on any space with a relaxed supernet (the original's defaults)."""

    flag_aliases: ClassVar[dict[str, str]] = {"path": "save", "manual_seed": "seed", "cpu_threads": "threads"}

    save: str = override("runs/proxyless")
    target_hardware: str = field("flops", "hardware term: 'flops' (the space's FLOPs; gpu reference 475M), 'none', "
                                          "or the path of a latency table JSON (docs/proxylessnas.md)")
    ref_value: float | None = field(None, "reference value of the hardware loss: flops at the paper's size (scaled "
                                          "with the searched network; default: gpu 475e6, else the space's search "
                                          "ceiling or mean); a latency table: its unit (default: its \"reference\")",
                                    low=1)
    grad_reg_loss_type: str = field("mul#log", "mul#log: a*CE*(log E/log ref)^b; add#linear: CE+l*(E-ref)/ref",
                                    choices=LOSS_TYPES)
    grad_reg_loss_alpha: float = field(0.2, "a of mul#log", low=0)
    grad_reg_loss_beta: float = field(0.3, "b of mul#log", low=0)
    grad_reg_loss_lambda: float = field(0.1, "l of add#linear", low=0)
    warmup_epochs: int = field(40, "weight-only epochs before the search (cosine LR from warmup_lr)", low=0)
    warmup_lr: float = field(0.05, "peak LR of the warm-up (hard-coded in the original)", low=0)
    n_epochs: int = field(120, "search epochs (cosine LR from init_lr)", low=0)
    init_lr: float = field(0.025, "peak LR of the search epochs", low=0)
    train_batch_size: int = field(256, "batch size of the weight steps", low=1)
    momentum: float = field(0.9, "SGD momentum", low=0, high=1)
    nesterov: bool = field(True, "Nesterov momentum")
    weight_decay: float = field(4e-5, "weight decay of every weight (BN included, as the original)", low=0)
    label_smoothing: float = field(0.1, "label smoothing of the weight steps (the arch steps use plain CE)", low=0,
                                   high=1)
    arch_lr: float = field(1e-3, "Adam LR of the architecture parameters", low=0)
    arch_adam_beta1: float = field(0.0, "Adam beta1 of the architecture parameters", low=0, high=0.999999)
    arch_adam_beta2: float = field(0.999, "Adam beta2 of the architecture parameters", low=0, high=0.999999)
    arch_adam_eps: float = field(1e-8, "Adam eps of the architecture parameters", low=0)
    arch_weight_decay: float = field(0.0, "weight decay of the architecture parameters", low=0)
    arch_init_ratio: float = field(1e-3, "std of the N(0, std) initial architecture parameters", low=0)
    grad_update_arch_param_every: int = field(5, "weight steps per architecture step", low=1)
    grad_update_steps: int = field(1, "architecture steps each time", low=0)
    grad_binary_mode: str = field("full_v2", "full_v2: one path, gradient of every gate (the original's default); "
                                             "two: two sampled paths (the paper)", choices=("full_v2", "two"))
    grad_data_batch: int | None = field(None, "batch size of the architecture steps (default: train_batch_size)",
                                        low=1)
    val_images: int | None = field(None, "search-val images of the per-epoch check of the argmax architecture "
                                         "(default: all)", low=1)
    channels_last: bool = field(True, "channels_last memory format")
    checkpoint_minutes: float = field(20.0, "minutes between checkpoints within an epoch (one after every epoch)",
                                      low=0)


DEMO = dict(dataset="embedded", width_mult=0.25, train_batch_size=64, grad_data_batch=64, warmup_epochs=2,
            n_epochs=4, grad_update_arch_param_every=2, arch_lr=0.05, val_images=200, workers=0, device="cpu",
            threads=1, save="runs/proxyless-demo")
"""``--demo``: width 0.25 on the embedded 32x32 CIFAR-10 (1,800 search-train / 200 search-val images), 2 warm-up
and 4 search epochs, an architecture step every 2 weight steps with a larger Adam LR so that the probabilities
visibly move; 2-3 minutes on one CPU thread. ``--space NAME --demo`` applies the space's own demo sizes too."""
