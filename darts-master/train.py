"""Train a DARTS genotype on CIFAR-10 from scratch (the DARTS evaluation); writes SAVE/summary.json.

    python train.py --data DIR --arch DARTS_ABS --save eval-DARTS_ABS
    python train.py --demo --arch DIR/genotype.json --save DIR2       # CPU demo on the embedded data
    python train.py --demo --eval --eval_resume DIR2/checkpoint.pt    # test top-1 of a checkpoint

--arch takes a published name (DARTS_V1, DARTS_V2, DARTS_ABS, PDARTS_ABS), the genotype.json of a search, or a
Genotype(...) string. Auxiliary head and cutout are on by default (--no-auxiliary, --no-cutout). Run the same
command again to resume a killed run.
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.stages.train_cifar import DEMO, CifarTrainConfig, evaluate_checkpoint, run_train


@cli
def main(argv=None) -> None:
    cfg = parse_config(CifarTrainConfig, argv, description=__doc__, prog="train.py", presets={"demo": DEMO})
    if cfg.eval:
        evaluate_checkpoint(cfg)
    else:
        run_train(cfg)


if __name__ == "__main__":
    main()
