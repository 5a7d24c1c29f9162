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

from pathlib import Path

from anglenas.checkpoint import atomic_write_text, check_writable
from anglenas.config import ArgumentParser, HelpFormatter
from anglenas.errors import cli
from anglenas.spaces import get_space, space_names


def positive(kind: type, low: float):
    def convert(text: str):
        value = kind(text)
        if value < low:
            raise ValueError(text)
        return value

    convert.__name__ = f"{kind.__name__} >= {low:g}"  # argparse names the expected type in its one-line error
    return convert


@cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="get_flops_lookup_table.py", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--space", nargs="+", default=space_names(), choices=space_names(),
                        help="spaces to table (default: all)")
    parser.add_argument("--save_dir", default="runs/flops-tables", help="folder of the op_flops_<space>.json files")
    parser.add_argument("--width_mult", type=positive(float, 1e-3), default=1.0, help="channel width multiplier")
    parser.add_argument("--input_size", type=positive(int, 8), help="input resolution (default: each space's own)")
    parser.add_argument("--num_classes", type=positive(int, 1), help="classes (default: each space's own)")
    parser.add_argument("--stem_stride", type=int, choices=(1, 2), help="stem stride (default: each space's own)")
    args = parser.parse_args(argv)
    tables = [get_space(name).scaled(args.width_mult, args.input_size, args.num_classes, args.stem_stride)
              .flops_table() for name in args.space]
    check_writable(args.save_dir, "lookup-table folder", "--save_dir")
    for table in tables:
        path = Path(args.save_dir) / f"op_flops_{table.space}.json"
        atomic_write_text(path, table.to_json())
        print(f"{path}: {table.space} space at {table.input_size}x{table.input_size}, width {table.width_mult:g}, "
              f"{table.num_classes} classes, stem stride {table.stem_stride}: pre {table.pre / 1e6:.2f}M, post "
              f"{table.post / 1e6:.2f}M, {len(table.layers)} sites x {len(table.layers[0])} ops")


if __name__ == "__main__":
    main()
