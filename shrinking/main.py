"""ABS shrinking: ``torchrun --nproc_per_node=8 main.py --train_dir ... --space gpu`` (``--demo`` for a CPU demo).

Writes SAVE/operations.json; run again with the same arguments to resume.
"""
from anglenas.abs.shrink import DEMO, ShrinkConfig, Shrinker
from anglenas.config import parse_config
from anglenas.errors import cli


@cli
def main() -> None:
    cfg = parse_config(ShrinkConfig, description=__doc__, presets={"demo": DEMO})
    Shrinker(cfg).run()


if __name__ == "__main__":
    main()
