"""Print an architecture's FLOPs (multiply-accumulates of conv and linear layers) and parameters.

    python utils/arch_flops.py --space gpu --arch "2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3"   # 472.52M
    python utils/arch_flops.py --arch FAIRNAS_ABS
    python utils/arch_flops.py --arch runs/search/search_result.json --rank 1

The architecture is the space-separated encoding the search prints (``-1`` = identity), the name of a published
architecture, or a search result JSON. ``--table`` reads a lookup table written by ``get_flops_lookup_table.py``
instead of counting the paper-size table (224x224, width 1, 1000 classes) from the modules.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anglenas.archs import format_arch, parse_arch  # noqa: E402
from anglenas.config import ArgumentParser  # noqa: E402
from anglenas.errors import UserError, cli  # noqa: E402
from anglenas.flops import FlopsTable, reference_table  # noqa: E402
from anglenas.spaces import space_names  # noqa: E402


@cli
def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", choices=space_names(), help="space (default: inferred from the architecture)")
    parser.add_argument("--arch", required=True, help="op indices, a published name or a search_result.json")
    parser.add_argument("--rank", type=int, default=0, help="which architecture of a search result (0 = best)")
    parser.add_argument("--table", help="a FLOPs lookup table JSON to use instead of the paper-size table")
    args = parser.parse_args()
    space, arch = parse_arch(args.arch, args.space, args.rank)
    table = FlopsTable.load(args.table) if args.table else reference_table(space)
    if table.space != space:
        raise UserError(f"table {args.table!r} is for the {table.space} space, not {space}; "
                        f"write one with utils/get_flops_lookup_table.py --space {space}")
    print(f"space: {space} ({table.input_size}x{table.input_size}, width {table.width_mult:g}, "
          f"{table.num_classes} classes)")
    print(f"arch: {format_arch(arch)}")
    print(f"FLOPs: {table.arch_flops(arch) / 1e6:.2f}M")
    print(f"params: {table.arch_params(arch) / 1e6:.2f}M")


if __name__ == "__main__":
    main()
