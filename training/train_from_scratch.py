"""Train a found architecture from scratch: ``torchrun --nproc_per_node=8 train_from_scratch.py --arch SPOS_ABS
--train_dir ... --test_dir ...`` (``--demo`` for a CPU demo on the embedded data).

``--arch`` takes op indices (``"2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3"``), a published name (SPOS_ABS,
FAIRNAS_ABS, PROXYLESS_ABS) or a search_result.json. Run again with the same arguments to resume.
``--eval --eval-resume PATH`` evaluates a checkpoint (ours or the original's) and prints its top-1.
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.train.final import CIFAR, DEMO, FinalTrainConfig, FinalTrainer


@cli
def main() -> None:
    cfg = parse_config(FinalTrainConfig, description=__doc__, presets={"demo": DEMO, "cifar": CIFAR})
    trainer = FinalTrainer(cfg)
    if cfg.eval:
        result = trainer.evaluate_checkpoint()
        print(f"top-1 {result['top1']:.2f}")
    else:
        trainer.run()


if __name__ == "__main__":
    main()
