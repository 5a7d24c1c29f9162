"""ProxylessNAS in the shrunk GPU space (spec §8): a registered searcher (``proxylessnas``).

Schedule (the original's defaults): ``warmup_epochs`` of weight training on paths drawn from the initial
(near-uniform) architecture distribution, cosine LR from 0.05; then ``n_epochs`` of joint search, cosine LR from
``init_lr``, with one architecture step (Adam on ``alpha``, a search-val batch, plain CE combined with the
hardware term) after every ``grad_update_arch_param_every``-th weight step, none in the first search epoch.
Weights: SGD Nesterov, weight decay on every weight, label smoothing; a weight step trains one path drawn from
``softmax(alpha)``.

Output: ``PATH/search_result.json`` (the most probable op of every layer, in the format
``training/train_from_scratch.py --arch`` reads), ``PATH/arch_probabilities.png`` and TensorBoard scalars of every
probability. A checkpoint is written atomically after every epoch and every ``checkpoint_minutes``; running the
same command again resumes at the step where it stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from anglenas.search_result import FORMAT as SEARCH_RESULT_FORMAT
from anglenas.checkpoint import atomic_write_text, open_run, run_settings, save_checkpoint
from anglenas.config import field
from anglenas.data import BatchStream, Data, DataConfig, build_data
from anglenas.data.streams import step_seed
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.nn.init import init_weights
from anglenas.operations import Operations, load_operations
from anglenas.searchers.proxyless.gates import entropy, max_entropy
from anglenas.searchers.proxyless.latency import LOSS_TYPES, CostTable, flops_costs, hardware_loss, load_latency_table
from anglenas.searchers.registry import register_searcher
from anglenas.spaces import reference_table
from anglenas.spaces.mobilenet import MobileSpace
from anglenas.spaces.mobilenet.relaxed import ProxylessSuperNet
from anglenas.train.dist import init_distributed
from anglenas.train.supernet import autocast_context, evaluate

CHECKPOINT, RESULT, FIGURE = "checkpoint.pt", "search_result.json", "arch_probabilities.png"
SPACE = "gpu"
RESUMABLE_CHANGES = {"path", "demo", "device", "workers", "decode", "train_dir", "test_dir", "data_dir",
                     "checkpoint_minutes", "amp", "cpu_threads"}


@dataclass
class ProxylessConfig(DataConfig):
    """ProxylessNAS search (flag names follow the original's ``imagenet_arch_search.py``)."""

    operations_path: str = field("", "operations file written by shrinking (JSON, or the original pickle)")
    path: str = field("runs/proxyless", "run folder: checkpoint, search_result.json, figure, log, TensorBoard")
    target_hardware: str = field("flops", "hardware term: 'flops' (FLOPs table, reference 475M), 'none', or the "
                                          "path of a latency table JSON (docs/proxylessnas.md)")
    ref_value: float | None = field(None, "reference value of the hardware loss (flops: 475e6; a latency "
                                          "table: its \"reference\")")
    grad_reg_loss_type: str = field("mul#log", "mul#log: a*CE*(log E/log ref)^b; add#linear: CE+l*(E-ref)/ref",
                                    choices=LOSS_TYPES)
    grad_reg_loss_alpha: float = field(0.2, "a of mul#log")
    grad_reg_loss_beta: float = field(0.3, "b of mul#log")
    grad_reg_loss_lambda: float = field(0.1, "l of add#linear")
    warmup_epochs: int = field(40, "weight-only epochs before the search (cosine LR from warmup_lr)")
    warmup_lr: float = field(0.05, "peak LR of the warm-up (hard-coded in the original)")
    n_epochs: int = field(120, "search epochs (cosine LR from init_lr)")
    init_lr: float = field(0.025, "peak LR of the search epochs")
    train_batch_size: int = field(256, "batch size of the weight steps")
    momentum: float = field(0.9, "SGD momentum")
    nesterov: bool = field(True, "Nesterov momentum")
    weight_decay: float = field(4e-5, "weight decay of every weight (BN included, as the original)")
    label_smoothing: float = field(0.1, "label smoothing of the weight steps (the arch steps use plain CE)")
    arch_lr: float = field(1e-3, "Adam LR of the architecture parameters")
    arch_adam_beta1: float = field(0.0, "Adam beta1 of the architecture parameters")
    arch_adam_beta2: float = field(0.999, "Adam beta2 of the architecture parameters")
    arch_adam_eps: float = field(1e-8, "Adam eps of the architecture parameters")
    arch_weight_decay: float = field(0.0, "weight decay of the architecture parameters")
    arch_init_ratio: float = field(1e-3, "std of the N(0, std) initial architecture parameters")
    grad_update_arch_param_every: int = field(5, "weight steps per architecture step")
    grad_update_steps: int = field(1, "architecture steps each time")
    grad_binary_mode: str = field("full_v2", "full_v2: one path, gradient of every gate (the original's default); "
                                             "two: two sampled paths (the paper)", choices=("full_v2", "two"))
    grad_data_batch: int | None = field(None, "batch size of the architecture steps (default: train_batch_size)")
    width_mult: float = field(1.0, "channel width multiplier")
    input_size: int | None = field(None, "input resolution (default: the dataset's)")
    stem_stride: int = field(2, "stride of the stem conv (1 suits 32x32 inputs)")
    manual_seed: int = field(0, "seed of weights, architecture parameters, paths and data order")
    val_images: int | None = field(None, "search-val images of the per-epoch check of the argmax architecture "
                                         "(default: all)")
    device: str = field("auto", "cuda, cpu or auto")
    amp: bool | None = field(None, "bf16 autocast (default: on for CUDA)")
    channels_last: bool = field(True, "channels_last memory format")
    cpu_threads: int = field(0, "torch CPU threads (0: torch's default; 1 is far faster on a busy machine)")
    checkpoint_minutes: float = field(20.0, "minutes between checkpoints within an epoch (one after every epoch)")
    demo: bool = field(False, "small settings on the embedded data: a CPU run of a few minutes")


DEMO = dict(dataset="embedded", width_mult=0.25, stem_stride=2, train_batch_size=64, grad_data_batch=64,
            warmup_epochs=2, n_epochs=4, grad_update_arch_param_every=2, arch_lr=0.05, val_images=200, workers=0,
            device="cpu", cpu_threads=1, path="runs/proxyless-demo")
"""``--demo``: width 0.25 on the embedded 32x32 CIFAR-10 (1,800 search-train / 200 search-val images), 2 warm-up
and 4 search epochs, an architecture step every 2 weight steps with a larger Adam LR so that the probabilities
visibly move; 2-3 minutes on one CPU thread."""


def cosine_lr(peak: float, step: int, total: int) -> float:
    """The original's cosine schedule: ``0.5 * peak * (1 + cos(pi * step / total))``."""
    return 0.5 * peak * (1 + math.cos(math.pi * step / total))


def search_val_stream(data: Data, batch: int, seed: int, channels_last: bool):
    """Shuffled, un-augmented batches of search-val addressed by step (the architecture steps' data)."""
    try:
        return data.val_stream(batch, seed, channels_last)
    except ValueError as exc:
        raise UserError(f"search-val: {exc}; lower --grad_data_batch or raise --search_val_size") from None


class ProxylessSearch:
    """One ProxylessNAS run; :meth:`run` trains (resuming if a checkpoint exists) and writes the result."""

    def __init__(self, cfg: ProxylessConfig) -> None:
        self.cfg = cfg
        if not cfg.operations_path:
            raise UserError("--operations_path is required: the operations file written by shrinking/main.py")
        self.operations: Operations = load_operations(cfg.operations_path)
        if self.operations.space.name != SPACE:
            raise UserError(f"{cfg.operations_path} is an operations file of the {self.operations.space.name} space; "
                            f"ProxylessNAS searches the {SPACE} space: pass one written by shrinking/main.py "
                            f"--space {SPACE}")
        for name in ("warmup_epochs", "n_epochs"):
            if getattr(cfg, name) < 0:
                raise UserError(f"--{name} must be >= 0")
        if cfg.n_epochs + cfg.warmup_epochs < 1 or cfg.grad_update_arch_param_every < 1:
            raise UserError("give at least one epoch and --grad_update_arch_param_every >= 1")
        self.ops = self.operations.ops
        self.cost = self._cost_table()
        self.reference = cfg.ref_value if cfg.ref_value is not None else (self.cost and self.cost.reference)
        if self.cost is not None and cfg.grad_reg_loss_type != "none" and not (self.reference and self.reference > 1):
            raise UserError(f"the latency table {cfg.target_hardware} has no \"reference\"; pass --ref_value "
                            f"(the target latency, in the table's unit)")
        self.env, self.device = init_distributed(cfg.device)
        if self.env.enabled:
            raise UserError("the ProxylessNAS search runs in one process; start it without torchrun")
        self.amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        if cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
        self.save = Path(cfg.path)
        self.flops = reference_table(SPACE)

    def _cost_table(self) -> CostTable | None:
        hw = self.cfg.target_hardware
        if hw == "flops":
            return flops_costs(SPACE, self.ops)
        if hw in ("none", ""):
            return None
        return load_latency_table(hw, SPACE, self.ops)

    # -- setup ------------------------------------------------------------------------------------------------------
    def _build(self, data: Data) -> None:
        cfg = self.cfg
        space = self.operations.space.scaled(cfg.width_mult, cfg.input_size or data.input_size, data.num_classes,
                                             cfg.stem_stride)
        self.data = data
        self.build(space, data.train_stream(cfg.train_batch_size, cfg.manual_seed, channels_last=cfg.channels_last),
                   search_val_stream(data, cfg.grad_data_batch or cfg.train_batch_size, cfg.manual_seed + 1,
                                     cfg.channels_last))

    def build(self, space: MobileSpace, stream: BatchStream, arch_stream: BatchStream) -> None:
        """Supernet at ``space``'s size, optimisers, and the weight / architecture batch streams."""
        cfg = self.cfg
        torch.manual_seed(cfg.manual_seed)
        model = ProxylessSuperNet(space, self.ops)
        init_weights(model, "he_fanout")
        model.init_arch_params(cfg.arch_init_ratio, torch.Generator().manual_seed(cfg.manual_seed))
        fmt = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=fmt)
        self.weight_opt = torch.optim.SGD(list(model.weight_parameters()), lr=cfg.init_lr, momentum=cfg.momentum,
                                          nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        self.arch_opt = torch.optim.Adam(model.arch_parameters(), lr=cfg.arch_lr,
                                         betas=(cfg.arch_adam_beta1, cfg.arch_adam_beta2), eps=cfg.arch_adam_eps,
                                         weight_decay=cfg.arch_weight_decay)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.stream, self.arch_stream = stream, arch_stream
        self.steps_per_epoch = stream.steps_per_epoch

    # -- steps ------------------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        cfg, n = self.cfg, self.steps_per_epoch
        if step < cfg.warmup_epochs * n:
            return cosine_lr(cfg.warmup_lr, step, cfg.warmup_epochs * n)
        return cosine_lr(cfg.init_lr, step - cfg.warmup_epochs * n, cfg.n_epochs * n)

    def weight_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on one path drawn from softmax(alpha); returns (loss, correct predictions)."""
        for group in self.weight_opt.param_groups:
            group["lr"] = self.lr_at(step)
        self.model.train()
        self.model.sample("single", torch.Generator().manual_seed(step_seed(self.cfg.manual_seed, step, 0)))
        with autocast_context(self.device, self.amp):
            logits = self.model(x)
            loss = self.criterion(logits.float(), y)
        self.weight_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.weight_opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def arch_step(self, index: int) -> tuple[float, float | None]:
        """One Adam step on the architecture parameters (binary gates, ``grad_binary_mode``) on search-val batch
        ``index``; returns (loss, expected cost)."""
        cfg = self.cfg
        (x, y), = self.arch_stream.batches(index, 1)
        self.model.train()
        self.model.sample(cfg.grad_binary_mode, torch.Generator().manual_seed(step_seed(cfg.manual_seed, index, 1)))
        with autocast_context(self.device, self.amp):
            logits = self.model(x)
        ce = nn.functional.cross_entropy(logits.float(), y)
        expected = self.cost.expected(self.model.cost_probs()) if self.cost is not None else None
        loss = hardware_loss(ce, expected, cfg.grad_reg_loss_type, self.reference, cfg.grad_reg_loss_alpha,
                             cfg.grad_reg_loss_beta, cfg.grad_reg_loss_lambda)
        self.arch_opt.zero_grad(set_to_none=True)
        self.weight_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.model.set_arch_grads()
        self.arch_opt.step()
        if cfg.grad_binary_mode == "two":
            self.model.rescale_pairs()
        self.weight_opt.zero_grad(set_to_none=True)
        return float(loss.detach()), None if expected is None else float(expected.detach())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Search-val accuracy of the argmax architecture with batch-statistics BN (as the original, whose running
        statistics mix every path); the BN buffers are restored afterwards."""
        saved = {k: v.clone() for k, v in self.model.named_buffers()}
        self.model.train()
        self.model.choose_argmax()
        batch = self.cfg.grad_data_batch or self.cfg.train_batch_size
        result = evaluate(self.model, self.data.val_batches(batch, self.cfg.channels_last, self.cfg.val_images),
                          self.device, self.amp)
        for k, v in self.model.named_buffers():
            v.copy_(saved[k])
        return result

    # -- the run ----------------------------------------------------------------------------------------------------
    def run(self, until_step: int | None = None) -> dict | None:
        """Train (resuming from the checkpoint if any) up to ``until_step`` (default: the end), then write the
        result; returns the result document, or None when stopped before the end."""
        cfg = self.cfg
        ckpt = open_run(self.save / CHECKPOINT, cfg, RESUMABLE_CHANGES, True, self.device)
        self.logger = RunLogger(self.save)
        data = build_data(cfg, self.device, held_out=True)
        self._build(data)
        n = self.steps_per_epoch
        total = (cfg.warmup_epochs + cfg.n_epochs) * n
        state = {"step": 0, "arch_steps": 0, "history": [], "epoch_acc": _new_acc()}
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.weight_opt.load_state_dict(ckpt["weight_opt"])
            self.arch_opt.load_state_dict(ckpt["arch_opt"])
            state = {k: ckpt[k] for k in state}
            self.logger.info(f"resumed at step {state['step']}/{total} (epoch {state['step'] // n + 1})")
        else:
            self.logger.info(f"ProxylessNAS ({cfg.grad_binary_mode}) in {self.operations.size:.3g} architectures, "
                             f"{self.model.space.input_size}px width {cfg.width_mult}: {cfg.warmup_epochs} warm-up + "
                             f"{cfg.n_epochs} search epochs of {n} steps, hardware {cfg.target_hardware}, "
                             f"{self.device}")
        self.state = state
        end = total if until_step is None else min(total, until_step)
        progress = self.logger.progress("proxyless", total, state["step"], every=max(1, n // 4))
        last_save = time.monotonic()
        acc = state["epoch_acc"]
        for step, (x, y) in zip(range(state["step"], end), self.stream.batches(state["step"], end - state["step"])):
            epoch, i = divmod(step, n)
            loss, correct = self.weight_step(step, x, y)
            acc["loss"] += float(loss) * len(y)
            acc["correct"] += int(correct)
            acc["images"] += len(y)
            search_epoch = epoch - cfg.warmup_epochs
            if search_epoch > 0 and (i + 1) % cfg.grad_update_arch_param_every == 0:
                for _ in range(cfg.grad_update_steps):
                    arch_loss, expected = self.arch_step(state["arch_steps"])
                    state["arch_steps"] += 1
                    acc["arch_loss"] += arch_loss
                    acc["arch_n"] += 1
                    acc["expected"] = expected
            state["step"] = step + 1
            progress.update(1, loss=acc["loss"] / acc["images"], lr=self.lr_at(step))
            if i == n - 1:
                self._end_epoch(epoch)
                acc = state["epoch_acc"] = _new_acc()
                self._checkpoint()
                last_save = time.monotonic()
            elif time.monotonic() - last_save > 60 * cfg.checkpoint_minutes:
                self._checkpoint()
                last_save = time.monotonic()
        if state["step"] < total:
            if state["step"] % n:
                self._checkpoint()
            self.logger.close()
            return None
        doc = self._write_result()
        self.logger.close()
        return doc

    def _checkpoint(self) -> None:
        save_checkpoint({"config": run_settings(self.cfg, RESUMABLE_CHANGES), **self.state,
                         "model": self.model.state_dict(), "weight_opt": self.weight_opt.state_dict(),
                         "arch_opt": self.arch_opt.state_dict()}, self.save / CHECKPOINT)

    def _end_epoch(self, epoch: int) -> None:
        cfg, acc = self.cfg, self.state["epoch_acc"]
        warm = epoch < cfg.warmup_epochs
        val = self.validate()
        probs = self.model.probs()
        arch = self.model.argmax_arch()
        searchable = [(i, p) for i, p in enumerate(probs) if len(p) > 1]
        ent = sum(entropy(p) for _, p in searchable) / max(1, sum(max_entropy(len(p)) for _, p in searchable))
        images = max(acc["images"], 1)
        rec = {"epoch": epoch + 1, "phase": "warmup" if warm else "search",
               "train_loss": acc["loss"] / images, "train_top1": 100 * acc["correct"] / images,
               "val_top1": val["top1"], "val_loss": val["loss"],
               "arch_loss": acc["arch_loss"] / acc["arch_n"] if acc["arch_n"] else None,
               "expected_cost": acc["expected"], "entropy": ent, "arch": arch,
               "arch_flops_m": self.flops.arch_flops(arch) / 1e6, "probs": [p.tolist() for p in probs]}
        self.state["history"].append(rec)
        log = self.logger
        for tag in ("train_loss", "train_top1", "val_top1", "entropy", "arch_flops_m"):
            log.scalar(f"proxyless/{tag}", rec[tag], epoch + 1)
        if rec["expected_cost"] is not None:
            log.scalar("proxyless/expected_cost", rec["expected_cost"], epoch + 1)
        space = self.operations.space
        for i, p in searchable:
            for k, op in enumerate(self.ops[i]):
                log.scalar(f"arch_prob/layer{i:02d}/{space.op_name(op)}", float(p[k]), epoch + 1)
        log.info(f"epoch {epoch + 1} ({rec['phase']}): train loss {rec['train_loss']:.3f} top1 "
                 f"{rec['train_top1']:.1f}%, argmax arch val top1 {val['top1']:.1f}%, "
                 f"{rec['arch_flops_m']:.1f}M FLOPs, normalised entropy {ent:.4f}: {self.operations.space.format_arch(arch)}")

    def _write_result(self) -> dict:
        from anglenas.searchers.proxyless.plots import plot_layer_probabilities

        arch = self.model.argmax_arch()
        probs = self.model.probs()
        picks = self.model.argmax_picks()
        chosen = [float(p[k]) for p, k in zip(probs, picks)]
        top = [{"arch": arch, "arch_str": self.operations.space.format_arch(arch), "flops_m": self.flops.arch_flops(arch) / 1e6,
                "params_m": self.flops.arch_params(arch) / 1e6, "layer_probs": chosen,
                "log_prob": sum(math.log(p) for p in chosen)}]
        if self.cost is not None and self.cost.name != "flops":
            top[0]["latency"] = self.cost.arch_cost(picks)
        doc = {"format": SEARCH_RESULT_FORMAT, "version": 1, "method": "proxylessnas", "space": SPACE,
               "operations": self.ops, "target_hardware": self.cfg.target_hardware, "reference": self.reference,
               "grad_binary_mode": self.cfg.grad_binary_mode, "top": top, "epochs": self.state["history"]}
        atomic_write_text(self.save / RESULT, json.dumps(doc, indent=1) + "\n")
        plot_layer_probabilities(self.state["history"], self.ops, self.operations.space, self.save / FIGURE)
        self.logger.info(f"learned architecture: {top[0]['arch_str']} ({top[0]['flops_m']:.1f}M FLOPs, "
                         f"{top[0]['params_m']:.2f}M params); result {self.save / RESULT}, figure "
                         f"{self.save / FIGURE}")
        return doc


def _new_acc() -> dict:
    return {"loss": 0.0, "correct": 0, "images": 0, "arch_loss": 0.0, "arch_n": 0, "expected": None}


@register_searcher("proxylessnas", ProxylessConfig, "relaxed", "gpu", description="ProxylessNAS binary-gate search (spec §8)")
def run_proxyless(cfg: ProxylessConfig) -> dict | None:
    """ProxylessNAS in the shrunk GPU space; writes PATH/search_result.json."""
    return ProxylessSearch(cfg).run()
