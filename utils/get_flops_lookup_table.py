"""Write the FLOPs lookup tables as JSON (spec §2.6, with the FairNAS stem fixed).

``python utils/get_flops_lookup_table.py`` writes ``op_flops_gpu.json`` and ``op_flops_fairnas.json`` (paper
size: 224x224, width 1, 1000 classes); ``--width_mult``, ``--input_size``, ``--num_classes`` and
``--stem_stride`` give the table of a scaled space.
"""
from pathlib import Path

from anglenas.checkpoint import atomic_write_text
from anglenas.config import ArgumentParser, HelpFormatter
from anglenas.errors import cli
from anglenas.spaces import get_space, space_names


@cli
def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--space", nargs="+", default=space_names(), choices=space_names())
    parser.add_argument("--save_dir", default=".", help="folder of the op_flops_<space>.json files")
    parser.add_argument("--width_mult", type=float, default=1.0)
    parser.add_argument("--input_size", type=int, default=224)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--stem_stride", type=int, default=2)
    args = parser.parse_args()
    for name in args.space:
        space = get_space(name).scaled(args.width_mult, args.input_size, args.num_classes, args.stem_stride)
        table = space.flops_table()
        path = Path(args.save_dir) / f"op_flops_{name}.json"
        atomic_write_text(path, table.to_json())
        print(f"{path}: {name} space, pre {table.pre / 1e6:.2f}M, post {table.post / 1e6:.2f}M, "
              f"{len(table.layers)} layers x {len(table.layers[0])} ops")


if __name__ == "__main__":
    main()
