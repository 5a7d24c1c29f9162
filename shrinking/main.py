"""ABS shrinking: ``torchrun --nproc_per_node=8 main.py --train_dir ... --space gpu`` (``--demo`` for a CPU demo).

Writes SAVE/operations.json; run again with the same arguments to resume.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anglenas.abs.shrink import DEMO, ShrinkConfig, Shrinker  # noqa: E402
from anglenas.config import parse_config  # noqa: E402
from anglenas.errors import cli  # noqa: E402


@cli
def main() -> None:
    cfg = parse_config(ShrinkConfig, description=__doc__, presets={"demo": DEMO})
    Shrinker(cfg).run()


if __name__ == "__main__":
    main()
