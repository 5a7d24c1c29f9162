"""The ABS shrinking stage (the original's ``*/shrinking/main.py``): train the supernet, score operators by angle, drop
the worst, repeat.

Every rank trains the same paths; rank 0 scores and drops, then broadcasts the new operation lists. One
checkpoint file (model, optimiser, base weights W0, operation lists, round, step, history) is written
atomically during training and after every round, so a run killed at any moment and started again with the
same arguments continues from its last checkpoint and ends with the operations file of an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.abs.candidates import CandidateSampler, check_flops_feasible
from anglenas.abs.scoring import apply_drops, drop_global, drop_per_layer, score_operators
from anglenas.checkpoint import atomic_write_text, check_writable, open_run, run_settings, save_checkpoint
from anglenas.config import SizeConfig, field, override
from anglenas.data import DataConfig, build_data
from anglenas.log import RunLogger
from anglenas.nn.init import init_weights
from anglenas.operations import Operations
from anglenas.runtime import use_threads
from anglenas.spaces import get_space, reference_table, space_names
from anglenas.train.dist import barrier, broadcast_object, init_distributed
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

CHECKPOINT = "checkpoint.pt"
# fields that may change between a run and its resumption (they do not change the result)
RESUMABLE_CHANGES = {"workers", "device", "checkpoint_every", "checkpoint_minutes", "save", "operations_path", "demo",
                     "amp"}


@dataclass
class ShrinkConfig(DataConfig, SupernetTrainConfig, SizeConfig):
    """ABS shrinking; ``None`` means the space's default (the original's ``*/shrinking/config.py``)."""

    space: str = field("gpu", "search space: a registered one (gpu, fairnas, darts, shufflenetv2, nb201, ...); "
                              "sets the space's learning rate (darts 0.2, else 0.25)",
                       presets=lambda: {name: space_presets(get_space(name)) for name in space_names()})
    save: str = override("runs/shrink")
    operations_path: str = field("", "operations file to write (default: SAVE/operations.json)")
    first_stage_epochs: int | None = field(None, "supernet epochs before the first round (space default: 100, "
                                                 "darts 150)", low=0)
    other_stage_epochs: int | None = field(None, "supernet epochs before each later round (space default: 5, "
                                                 "darts 20)", low=0)
    lr_horizon_epochs: int | None = field(None, "epochs over which the LR decays to min_lr (gpu 250, fairnas 200)",
                                              low=1)
    drop_rule: str | None = field(None, "global (SPOS) or per_layer (FairNAS)", choices=("global", "per_layer", None))
    drops_per_round: int | None = field(None, "operators dropped per round by the global rule (gpu 7)", low=1)
    max_rounds: int | None = field(None, "upper bound on rounds (gpu 20, fairnas 6)", low=0)
    sample_num: int = field(1000, "children sampled per operator to score it", low=1)
    limit_flops: bool = field(True, "only sample children within [min_flops, max_flops]")
    min_flops: float = field(0.0, "FLOPs floor of sampled children (paper units: 224x224, width 1)", low=0)
    max_flops: float | None = field(None, "FLOPs ceiling of sampled children in real FLOPs (gpu 600e6, fairnas "
                                          "317.15e6 = the original's 330e6 less its stem over-count)", low=0)
    stop_threshold: float = field(1e6, "stop once the space holds at most this many architectures", low=0)
    base_refresh_threshold: int | None = field(None, "replace W0 by the current weights once more than this many "
                                                     "operators were dropped (0 disables; space default: 50, "
                                                     "darts 0)", low=0)
    warmup_epochs: float | None = field(None, "epochs of each progressive warm-up stage of a growing supernet "
                                              "(space default: darts 5, others none)", low=0)
    init: str | None = field(None, "weight init: he_fanout (gpu) or default (fairnas)",
                             choices=("he_fanout", "default", None))
    zero_init_residual: bool = field(False, "start every residual MBConv block as the identity (last BN gamma = 0; "
                                            "not in the original; the CPU demo's supernet needs it to learn)")
    decay_classifier: bool | None = field(None, "weight-decay the supernet's Linear classifier (space default: yes; "
                                                "darts no, as the original)")
    checkpoint_every: int = field(0, "steps between checkpoints during training (0: every epoch)", low=0)

    def resolved(self) -> "ShrinkConfig":
        """A copy with every space-dependent ``None`` filled in."""
        d = get_space(self.space).shrink
        return dataclasses.replace(
            self,
            first_stage_epochs=self.first_stage_epochs if self.first_stage_epochs is not None
            else d.first_stage_epochs,
            other_stage_epochs=self.other_stage_epochs if self.other_stage_epochs is not None
            else d.other_stage_epochs,
            limit_flops=self.limit_flops and (self.max_flops is not None or d.max_flops is not None),
            base_refresh_threshold=self.base_refresh_threshold if self.base_refresh_threshold is not None
            else d.base_refresh_threshold,
            warmup_epochs=self.warmup_epochs if self.warmup_epochs is not None else d.warmup_epochs,
            lr_horizon_epochs=self.lr_horizon_epochs or d.lr_horizon_epochs,
            drop_rule=self.drop_rule or d.drop_rule,
            drops_per_round=self.drops_per_round or d.drops_per_round,
            max_rounds=self.max_rounds or d.max_rounds,
            max_flops=self.max_flops if self.max_flops is not None else d.max_flops or float("inf"),
            init=self.init or d.init,
            decay_classifier=d.decay_classifier if self.decay_classifier is None else self.decay_classifier,
        )


def space_presets(space) -> dict:
    """What ``--space NAME`` sets: the space's learning rate, and its own ``--demo`` settings."""
    return {"lr": space.shrink.lr, "demo": dict(space.shrink.demo)}


DEMO = dict(dataset="embedded", width_mult=0.25, stem_stride=1, batch_size=64, lr=0.1, first_stage_epochs=4,
            other_stage_epochs=1, lr_horizon_epochs=25, sample_num=20, workers=0, zero_init_residual=True,
            save="runs/shrink-demo")
"""``--demo``: the GPU space at width 0.25 on the embedded 32x32 CIFAR-10, ~15 rounds, minutes on 2 CPU cores."""


@dataclass
class ShrinkState:
    """Everything a resumed run needs besides the model and optimiser."""

    ops: list[list[int]]
    round: int = 0
    step: int = 0
    base_refreshed: bool = False
    history: list[dict] = dataclasses.field(default_factory=list)
    warmup_stage: int = 0  # finished stages of a growing supernet's warm-up
    warmup_step: int = 0  # steps trained in the warm-up


class Shrinker:
    """Runs ABS for one :class:`ShrinkConfig`; ``run()`` returns the final :class:`Operations`."""

    def __init__(self, cfg: ShrinkConfig) -> None:
        self.cfg = cfg = cfg.resolved()
        check_writable(cfg.save, "run folder", "--save")
        check_writable(cfg.operations_path or Path(cfg.save) / "operations.json", "operations file",
                       "--operations_path")
        self.env, self.device = init_distributed(cfg.device)
        self.save = Path(cfg.save)
        threads = use_threads(cfg.threads)
        self.ref_space = get_space(cfg.space)
        self.data = build_data(cfg, self.device, held_out=True)
        self.space = cfg.sized(self.ref_space, self.data)
        self.flops = reference_table(cfg.space) if cfg.limit_flops else None
        self.state = ShrinkState(ops=Operations.full(self.ref_space).ops)
        if self.flops is not None:
            check_flops_feasible(self.state.ops, self.flops, cfg.min_flops, cfg.max_flops)

        torch.manual_seed(cfg.seed)
        self.warmup_stages = getattr(self.space, "warmup_stages", 0) if cfg.warmup_epochs else 0
        model = self.space.warmup_supernet() if self.warmup_stages else self.space.supernet()
        init_weights(model, cfg.init, cfg.zero_init_residual)
        self.stream = self.data.train_stream(cfg.batch_size, cfg.seed, self.env.rank, self.env.world,
                                             cfg.channels_last)
        self.steps_per_epoch = self.stream.steps_per_epoch
        self.logger = RunLogger(self.save, self.env.is_main)  # after the inputs are checked: none leaves a folder
        self.logger.info(f"ABS on the {cfg.space} space on {self.device}, {threads} CPU thread(s)")
        self.trainer = SupernetTrainer(model, self.space.train_sampler(self.state.ops, cfg.seed), self.stream, cfg,
                                       cfg.lr_horizon_epochs * self.steps_per_epoch, self.device, self.env,
                                       self.logger)
        self.base = snapshot(self.trainer.model)
        self._resume()

    # -- checkpoints --------------------------------------------------------------------------------------------
    def _semantic_config(self) -> dict:
        return run_settings(self.cfg, RESUMABLE_CHANGES)

    def _checkpoint(self, step: int | None = None) -> None:
        if step is not None:
            self.state.step = step
        if self.env.is_main:
            save_checkpoint({"config": self._semantic_config(), "state": dataclasses.asdict(self.state),
                             "base": self.base, **self.trainer.state_dict()}, self.save / CHECKPOINT)
        barrier(self.env)

    def _resume(self) -> None:
        path = self.save / CHECKPOINT
        ckpt = open_run(path, self.cfg, RESUMABLE_CHANGES, self.env.is_main, self.device)
        if ckpt is None:
            return
        self.state = ShrinkState(**ckpt["state"])
        for stage in range(self.state.warmup_stage):  # regrow the cells the warm-up inserted, then load
            self._insert_cell(stage)
        self.trainer.load_state_dict(ckpt)
        self.base = ckpt["base"]
        self.trainer.sampler = self.space.train_sampler(self.state.ops, self.cfg.seed)
        self.logger.info(f"resumed from {path}: round {self.state.round}, step {self.state.step}, "
                         f"space size {Operations(self.ref_space, self.state.ops).size:.3g}")

    # -- the loop -----------------------------------------------------------------------------------------------
    def _round_end_step(self, round_index: int) -> int:
        epochs = self.cfg.first_stage_epochs + round_index * self.cfg.other_stage_epochs
        return epochs * self.steps_per_epoch

    # -- progressive warm-up (DARTS) ----------------------------------------------------------------------------
    def _insert_cell(self, stage: int) -> None:
        """Insert the cell of warm-up stage ``stage`` (seeded: every rank builds the same one, and rank 0's copy is
        broadcast) and start a fresh optimiser over the grown model."""
        model = self.trainer.model
        pos = model.insert_cell(seed=self.cfg.seed * 1000 + stage)
        if self.env.enabled:
            import torch.distributed as dist

            for tensor in model.cells[pos].state_dict().values():
                dist.broadcast(tensor, 0)
        model.to(memory_format=torch.channels_last if self.cfg.channels_last else torch.preserve_format)
        self.trainer.reset_optimizer()

    def _warmup(self) -> None:
        """The original's ``DARTS/shrinking`` ``get_warmup_model``: ``warmup_stages`` stages of ``warmup_epochs``, each
        with a fresh optimiser and its own linear schedule, each followed by a cell insertion; then W0 is the grown
        supernet's weights."""
        st, tr = self.state, self.trainer
        per_stage = max(1, round(self.cfg.warmup_epochs * self.steps_per_epoch))
        while st.warmup_stage < self.warmup_stages:
            start = st.warmup_stage * per_stage
            tr.total_steps, tr.schedule_start = per_stage, start

            def checkpoint(step: int) -> None:
                st.warmup_step = step
                self._checkpoint()

            tr.train(max(st.warmup_step, start), start + per_stage,
                     desc=f"warm-up {st.warmup_stage + 1}/{self.warmup_stages}", checkpoint=checkpoint,
                     checkpoint_every=self.cfg.checkpoint_every or self.steps_per_epoch)
            self._insert_cell(st.warmup_stage)
            st.warmup_stage, st.warmup_step = st.warmup_stage + 1, start + per_stage
            if st.warmup_stage == self.warmup_stages:
                self.base = snapshot(tr.model)  # W0: after the warm-up (its last cell untrained, as the original)
                self.logger.info(f"warm-up done: {len(tr.model.cells)} cells; W0 taken")
            self._checkpoint()
        tr.total_steps, tr.schedule_start = self.cfg.lr_horizon_epochs * self.steps_per_epoch, 0

    def run(self) -> Operations:
        cfg, st = self.cfg, self.state
        if self.warmup_stages:
            self._warmup()
        self.logger.info(f"ABS on the {cfg.space} space: {Operations(self.ref_space, st.ops).size:.3g} "
                         f"architectures, {self.steps_per_epoch} steps/epoch, batch {cfg.batch_size}, "
                         f"world {self.env.world}, device {self.device}")
        t0 = time.perf_counter()
        while Operations(self.ref_space, st.ops).size > cfg.stop_threshold and st.round < cfg.max_rounds:
            end = self._round_end_step(st.round)
            self.trainer.train(st.step, end, desc=f"round {st.round} train", checkpoint=self._checkpoint,
                               checkpoint_every=cfg.checkpoint_every or self.steps_per_epoch,
                               planned=self._round_end_step(cfg.max_rounds - 1))  # ETA: to the last possible round
            if st.step < end:
                self._checkpoint(end)
            record = self._score_round() if self.env.is_main else None
            record = broadcast_object(record, self.env)
            st.ops = record["ops"]
            st.history.append(record)
            dropped_total = sum(len(r["dropped"]) for r in st.history)  # what was dropped, not a formula
            if not st.base_refreshed and cfg.base_refresh_threshold and dropped_total > cfg.base_refresh_threshold:
                self.base, st.base_refreshed = snapshot(self.trainer.model), True
                self.logger.info(f"base weights W0 replaced by the current weights ({dropped_total} drops so far)")
            st.round += 1
            self.trainer.sampler = self.space.train_sampler(st.ops, cfg.seed)
            self._checkpoint()
            self._write_reports()
        final = Operations(self.ref_space, st.ops)
        out = Path(cfg.operations_path or self.save / "operations.json")
        if self.env.is_main:
            final.save(out)
            fig = self._write_reports()
            if fig is not None:
                self.logger.figure("abs/angle_scores", fig, st.round)
        self.logger.info(f"done in {time.perf_counter() - t0:.0f}s after {st.round} rounds: "
                         f"{final.size:.4g} architectures, operations file {out}")
        return final

    def _score_round(self) -> dict:
        cfg, st = self.cfg, self.state
        t0 = time.perf_counter()
        sampler = CandidateSampler(self.ref_space, st.ops, np.random.default_rng([cfg.seed, st.round, 1]),
                                   flops=self.flops, min_flops=cfg.min_flops, max_flops=cfg.max_flops)
        angles = ArchAngles(self.trainer.model, self.base, self.space)
        scores, children = score_operators(st.ops, sampler, angles.angles, cfg.sample_num)
        if cfg.drop_rule == "global":
            dropped = drop_global(st.ops, scores, cfg.drops_per_round)
        else:
            dropped = drop_per_layer(st.ops, scores)
        new_ops = apply_drops(st.ops, dropped)
        size = Operations(self.ref_space, new_ops).size
        seconds = time.perf_counter() - t0
        self.logger.info(f"round {st.round}: scored {len(scores)} operators on {len(children)} children in "
                         f"{seconds:.1f}s; dropped {dropped}; space {size:.3g}")
        self.logger.scalar("abs/log10_space_size", math.log10(size), st.round)
        self.logger.scalar("abs/mean_angle", float(np.mean(list(scores.values()))), st.round)
        self.logger.scalar("abs/children", len(children), st.round)
        return {"round": st.round, "step": st.step, "ops_before": st.ops, "ops": new_ops, "size": size,
                "children": len(children), "seconds": seconds, "dropped": [list(o) for o in dropped],
                "scores": [[layer, op, score] for (layer, op), score in scores.items()]}

    def _write_reports(self):
        """scores.json and angle_scores.png of the rounds so far (rank 0); returns the figure."""
        if not self.env.is_main or not self.state.history:
            return None
        from anglenas.plots import plot_angle_scores

        atomic_write_text(self.save / "scores.json", json.dumps(self.state.history, indent=1) + "\n")
        return plot_angle_scores(self.state.history, self.ref_space, self.save / "angle_scores.png")
