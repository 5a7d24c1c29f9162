"""Settings of the NAS-Bench-201 experiments (``nas-bench-201/*.py``): the supernet's, the search's, their presets,
and what a seed's run checks on resume."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from anglenas.config import field
from anglenas.errors import UserError
from anglenas.nb201.data import NB201DataConfig
from anglenas.nb201.optim import SEMANTICS
from anglenas.searchers.spos.evolution import EvolutionConfig
from anglenas.spaces.nb201.cells import NUM_ARCHS, NUM_EDGES, OPS
from anglenas.train.supernet import SupernetTrainConfig

RESUMABLE_FIELDS = ("device", "amp", "save", "benchmark", "epochs", "eval_epochs", "seeds", "base", "acc_archs",
                    "rebn_images", "eval_images", "eval_batch_size", "drop_num", "threads", "demo", "preset")
"""Settings that do not change a seed's trained supernet: a run resumes across them (to train longer, keep
--lr_horizon_epochs)."""


@dataclass
class NB201Config(NB201DataConfig, SupernetTrainConfig):
    """NB201 supernet training and angle / accuracy ranking (the defaults aim at one GPU)."""

    batch_size: int = field(256, "batch size", low=1)
    lr: float = field(0.1, "initial learning rate (linear decay to min_lr over lr_horizon_epochs)", low=0)
    min_lr: float = field(1e-3, "learning-rate floor", low=0)
    weight_decay: float = field(5e-4, "weight decay (original: every parameter; sampled_only: conv and classifier "
                                      "weights)", low=0)
    optimizer_semantics: str = field("original", "original: every parameter is stepped every step (Nesterov "
                                                 "momentum, decay on all, BN included), as the original's NB201 "
                                                 "trainer; sampled_only: only the sampled path moves",
                                     choices=SEMANTICS)
    label_smoothing: float = field(0.0, "label smoothing", low=0, high=1)
    seed: int = field(0, "first seed (seeds seed, seed+1, ...)", low=0)
    save: str = field("runs/nb201", "run folder (one seed-N sub-folder per seed)")
    benchmark: str = field("", "ground truth: official NB201 / NATS-Bench file or CSV (default: the shipped table)")
    channels: int = field(16, "channels of the first stage (NB201: 16)", low=1)
    cells_per_stage: int = field(5, "search cells per stage (NB201: 5)", low=1)
    epochs: int = field(30, "supernet training epochs", low=1)
    lr_horizon_epochs: int | None = field(None, "epochs over which the LR decays (default: --epochs)", low=1)
    eval_epochs: str = field("1,2,5,10,20,30", "epochs whose weights are kept and whose angles are ranked")
    seeds: int = field(1, "number of seeds", low=1)
    base: str = field("init", "base weights W0 of the angle: init (true initialisation) or epoch1 (the "
                              "original's 'epoch-0' checkpoint, saved after the first epoch)",
                      choices=("init", "epoch1"))
    acc_archs: int = field(300, "architectures whose supernet accuracy (with / without ReBN) is measured", low=0,
                           high=NUM_ARCHS)
    rebn_images: int = field(2000, "training images of the BN recalibration", low=1)
    eval_images: int = field(5000, "valid images of each accuracy measurement", low=1)
    eval_batch_size: int = field(500, "batch size of ReBN and evaluation", low=1)
    drop_num: int = field(20, "operators dropped in one round by drop_ops.py and for search.py's ABS space (every "
                              "edge keeps one)", low=0, high=NUM_EDGES * (len(OPS) - 1))
    demo: bool = field(False, "small settings on the embedded mini CIFAR-10: a few minutes on a CPU")
    preset: str | None = field(None, "named settings: cpu = the best angle tau on 2 CPU cores in 5 minutes a seed "
                                     "(real CIFAR-10; give --data_dir)", choices=(None, "cpu"),
                               presets=lambda: {"cpu": CPU})

    def checked(self) -> "NB201Config":
        """``self`` when the settings the ranges cannot express fit together (the eval epochs, the base)."""
        epochs = self.eval_epoch_list()
        if self.base == "epoch1" and 1 not in epochs:
            raise UserError("--base epoch1 needs epoch 1 in --eval_epochs")
        return self

    def eval_epoch_list(self) -> list[int]:
        try:
            epochs = sorted({int(e) for e in self.eval_epochs.split(",") if e.strip()})
        except ValueError:
            raise UserError(f"--eval_epochs must be comma-separated epoch numbers, got {self.eval_epochs!r}") from None
        bad = [e for e in epochs if not 1 <= e <= self.epochs]
        if bad:
            raise UserError(f"--eval_epochs {bad} outside 1..--epochs {self.epochs}")
        return sorted(set(epochs) | {self.epochs})


DEMO = dict(dataset="embedded", resolution=16, channels=8, cells_per_stage=1, batch_size=32, lr=0.1, epochs=10,
            eval_epochs="1,2,4,6,10", acc_archs=24, rebn_images=256, eval_images=256, eval_batch_size=128,
            save="runs/nb201-demo", amp=False, channels_last=False, threads=1)
"""``--demo``: the NB201 macro at C=8, N=1 on the embedded CIFAR-10 downscaled to 16x16, a CPU run of minutes."""

CPU = dict(dataset="cifar10-jpg", resolution=32, channels=16, cells_per_stage=2, batch_size=128, epochs=4,
           eval_epochs="1,2,3,4", optimizer_semantics="sampled_only", acc_archs=0, save="runs/nb201-cpu", amp=False,
           channels_last=True, threads=2)
"""``--preset cpu``: the angle's best Kendall tau found on 2 CPU cores within 5 minutes a seed, on the 25k real
CIFAR-10 training half (measurements in docs/nb201.md). At this small size the original's optimiser semantics
rank better after one epoch but worse after four (weight decay on every op shrinks the conv weights that carry
the ranking), so the preset trains only the sampled path."""


@dataclass
class NB201SearchConfig(NB201Config, EvolutionConfig):
    """Experiment 5: NB201 supernet settings plus the evolutionary search's."""

    def evolution(self) -> EvolutionConfig:
        return EvolutionConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EvolutionConfig)})


SEARCH_DEMO = {**DEMO, "population_num": 10, "select_num": 4, "crossover_num": 4, "mutation_num": 4,
               "max_epochs": 3, "rebn_images": 128, "eval_images": 128}


def seed_config(cfg: NB201Config, seed: int) -> NB201Config:
    """The settings of one seed's supernet (checked on resume): this seed, the LR horizon resolved, the NB201 fields
    only (the search's extra fields do not change the supernet)."""
    own = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(NB201Config)}
    return dataclasses.replace(NB201Config(**own), seed=seed, lr_horizon_epochs=cfg.lr_horizon_epochs or cfg.epochs)
