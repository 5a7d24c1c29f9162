"""ABS shrinking: train the supernet, score operators by angle, drop the worst, repeat.

    torchrun --nproc_per_node=8 shrinking/main.py --space gpu --train_dir DIR --save runs/shrink
    python shrinking/main.py --space darts --demo --save runs/shrink-darts     # CPU demo on the embedded data

Spaces: gpu, fairnas, darts, shufflenetv2 (and any registered one). Writes SAVE/operations.json; run again with
the same arguments to resume (Ctrl-C writes a checkpoint first).
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.stages.shrink import DEMO, ShrinkConfig, Shrinker


@cli
def main(argv=None) -> None:
    cfg = parse_config(ShrinkConfig, argv, description=__doc__, prog="main.py", presets={"demo": DEMO})
    Shrinker(cfg).run()


if __name__ == "__main__":
    main()
