"""Write the FLOPs lookup tables of the search spaces as JSON (FairNAS' stem fixed, see docs/training.md).

    python utils/get_flops_lookup_table.py                      # every space at its own size -> runs/flops-tables
    python utils/get_flops_lookup_table.py --space gpu fairnas --width_mult 0.25 --input_size 32 --num_classes 10

Each space is tabled at its own paper size unless a flag says otherwise: gpu, fairnas, shufflenetv2 and darts at
224x224 with 1,000 classes and a stride-2 stem, nb201 at 32x32 with 10 classes and its stride-1 stem. The tables
(``op_flops_<space>.json``: FLOPs and params of the fixed parts and of every op at every site) go into
``--save_dir``; ``utils/arch_flops.py --table FILE`` reads one. All tables are built before any is written, so a
size a space does not take stops the script with nothing written.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anglenas.checkpoint import atomic_write_text, check_writable
from anglenas.config import field, parse_config
from anglenas.errors import cli
from anglenas.spaces import get_space, space_names


@dataclass
class TableConfig:
    space: tuple[str, ...] = field(tuple(space_names()), "spaces to table (default: all)", choices=space_names())
    save_dir: str = field("runs/flops-tables", "folder of the op_flops_<space>.json files")
    width_mult: float = field(1.0, "channel width multiplier", low=1e-3)
    input_size: int | None = field(None, "input resolution (default: each space's own)", low=8)
    num_classes: int | None = field(None, "classes (default: each space's own)", low=1)
    stem_stride: int | None = field(None, "stem stride (default: each space's own)", low=1, high=2)


@cli
def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(TableConfig, argv, description=__doc__, prog="get_flops_lookup_table.py")
    tables = [get_space(name).scaled(cfg.width_mult, cfg.input_size, cfg.num_classes, cfg.stem_stride)
              .flops_table() for name in cfg.space]
    check_writable(cfg.save_dir, "lookup-table folder", "--save_dir")
    for table in tables:
        path = Path(cfg.save_dir) / f"op_flops_{table.space}.json"
        atomic_write_text(path, table.to_json())
        print(f"{path}: {table.space} space at {table.input_size}x{table.input_size}, width {table.width_mult:g}, "
              f"{table.num_classes} classes, stem stride {table.stem_stride}: pre {table.pre / 1e6:.2f}M, post "
              f"{table.post / 1e6:.2f}M, {len(table.layers)} sites x {len(table.layers[0])} ops")


if __name__ == "__main__":
    main()
