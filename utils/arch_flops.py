"""Print an architecture's FLOPs (multiply-accumulates of conv and linear layers) and parameters.

    python utils/arch_flops.py --space gpu --arch "2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3"   # 472.52M
    python utils/arch_flops.py --arch FAIRNAS_ABS
    python utils/arch_flops.py --arch runs/search/search_result.json --rank 1
    python utils/arch_flops.py --space darts --arch DARTS_ABS --init_channels 45
    python utils/arch_flops.py --space shufflenetv2 --arch SPOS_SHUFFLENETV2

The architecture is the space-separated encoding the search prints (MobileNet: -1 = identity), the name of a
published architecture, a search result JSON or a file its space reads (a DARTS genotype.json). Per-site
architectures use the space's lookup table at the paper's size (--table reads one written by
get_flops_lookup_table.py); other architectures (DARTS genotypes) are counted by running the network. An auxiliary
head is not counted.
"""
from dataclasses import dataclass

from anglenas.archs import parse_arch
from anglenas.config import field, parse_config
from anglenas.errors import UserError, cli
from anglenas.flops import FlopsTable
from anglenas.spaces import get_space, space_names


@dataclass
class ArchFlopsConfig:
    arch: str = field("", "op ids, a published name, a search_result.json or genotype")
    space: str | None = field(None, "space (default: inferred from the architecture)", choices=space_names())
    rank: int = field(0, "which architecture of a search result (0 = best)", low=0)
    table: str = field("", "a FLOPs lookup table JSON to use instead of the paper-size table")
    width_mult: float = field(1.0, "channel width multiplier", low=1e-3)
    init_channels: int | None = field(None, "initial channels C of a cell network (darts genotypes: 45 at width 1, "
                                            "the paper's; nb201: 16)", low=1)


def network_params(space, arch) -> int:
    """Parameters of the stand-alone network of ``arch`` without an auxiliary head (built on the meta device)."""
    import torch

    with torch.device("meta"):
        model = space.network(arch)
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary"))


@cli
def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(ArchFlopsConfig, argv, description=__doc__, prog="arch_flops.py")
    if not cfg.arch:
        raise UserError("pass --arch: op ids, a published name, a search_result.json or a genotype")
    name, arch = parse_arch(cfg.arch, cfg.space, cfg.rank)
    space = get_space(name)
    width = cfg.width_mult if cfg.init_channels is None else space.width_for_channels(arch, cfg.init_channels)
    if width != 1.0:
        space = space.scaled(width)
    per_site = isinstance(arch, (list, tuple)) and all(isinstance(op, int) for op in arch)
    print(f"space: {name} ({space.input_size}x{space.input_size}, width {width:g}, {space.num_classes} classes)")
    print(f"arch: {space.format_arch(arch)}")
    if per_site:
        table = FlopsTable.load(cfg.table) if cfg.table else space.flops_table()
        if table.space != name:
            raise UserError(f"table {cfg.table!r} is for the {table.space} space, not {name}; "
                            f"write one with utils/get_flops_lookup_table.py --space {name}")
        flops, params = table.arch_flops(arch), table.arch_params(arch)
    else:
        flops, params = space.counted_flops(arch), network_params(space, arch)
    print(f"FLOPs: {flops / 1e6:.2f}M")
    print(f"params: {params / 1e6:.2f}M")


if __name__ == "__main__":
    main()
