"""Train a found architecture from scratch, or evaluate a checkpoint.

    torchrun --nproc_per_node=8 training/train_from_scratch.py --arch SPOS_ABS --train_dir DIR --test_dir DIR
    python training/train_from_scratch.py --demo --arch runs/search/search_result.json   # CPU demo
    python training/train_from_scratch.py --eval --eval-resume runs/train/checkpoint.pt --test_dir DIR

--arch takes op ids ("2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3"), a published name (SPOS_ABS, FAIRNAS_ABS,
PROXYLESS_ABS, DARTS_ABS, PDARTS_ABS, SPOS_SHUFFLENETV2, ...), a search_result.json or a genotype.json. Run again
with the same arguments to resume (Ctrl-C writes a checkpoint first). --eval needs only the test data; the
network comes from our checkpoint. DARTS / PDARTS cells on ImageNet: add --darts (the recipe of their paper; the
paper's C=45 networks, --init_channels to change it).
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.stages.train import FinalTrainConfig, FinalTrainer


@cli
def main(argv=None) -> None:
    cfg = parse_config(FinalTrainConfig, argv, description=__doc__, prog="train_from_scratch.py")
    trainer = FinalTrainer(cfg)
    if cfg.eval:
        result = trainer.evaluate_checkpoint()
        print(f"top-1 {result['top1']:.2f}")
    else:
        trainer.run()


if __name__ == "__main__":
    main()
