"""Does ABS help every searcher? Each searcher that fits NAS-Bench-201 in the full space and in the ABS-shrunk space,
judged by the ground truth of the cell it finds (docs/nb201.md, "ABS and every searcher").

    python nas-bench-201/compare_searchers.py --demo                                   # SPOS and DARTS, minutes
    python nas-bench-201/compare_searchers.py --preset cpu --data_dir cifar10-jpg.tar.gz   # 3 seeds, <= 2 h, 2 cores
    python nas-bench-201/compare_searchers.py --data_dir cifar10-jpg.tar.gz            # NB201's settings (a GPU)

Per seed: ABS on NB201 at each budget, then every searcher in the full and the shrunk spaces, each through the
pipeline's own stages. Writes SAVE/compare.json, SAVE/compare.md (mean ± std over seeds) and SAVE/compare.png; run
the same command again to resume after a stop.
"""
from anglenas.checkpoint import check_writable
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.nb201.compare import DEMO, CompareConfig, Table
from anglenas.nb201.compare_report import write_outputs


@cli
def main(argv=None) -> None:
    cfg = parse_config(CompareConfig, argv, description=__doc__, prog="compare_searchers.py", presets={"demo": DEMO})
    check_writable(cfg.save, "run folder", "--save")
    table = Table(cfg)
    table.run()
    write_outputs(table)


if __name__ == "__main__":
    main()
