"""Redraw the NB201 figures of an ``angle_tau.py`` run: tau per epoch and angle vs ground-truth accuracy.

    python figure/nb201_figures.py --run DIR [--out DIR]
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anglenas.checkpoint import check_writable
from anglenas.config import field, parse_config
from anglenas.errors import UserError, cli
from anglenas.nb201.api import Benchmark
from anglenas.nb201.figures import plot_angle_vs_accuracy, plot_tau_per_epoch


@dataclass
class FigureConfig:
    run: str = field("", "folder of an angle_tau.py run (holds tau_table.json)")
    out: str = field("", "where to write the PNGs (default: the run folder)")


@cli
def main(argv=None) -> None:
    cfg = parse_config(FigureConfig, argv, description=__doc__, prog="nb201_figures.py")
    run = Path(cfg.run)
    table = run / "tau_table.json"
    if not table.is_file():
        raise UserError(f"{table} does not exist; pass --run with the --save folder of angle_tau.py")
    out = Path(cfg.out or run)
    check_writable(out, "figure folder", "--out")
    try:
        summary = json.loads(table.read_text())
        seed = summary["seeds"][-1]
        per_epoch, gt, benchmark = summary["per_epoch"], summary["ground_truth"], summary["config"]["benchmark"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UserError(f"{table} is not the tau table of an angle_tau.py run (it lacks its seeds, per-epoch taus or "
                        f"ground truth); pass --run with the --save folder of angle_tau.py") from None
    scores = run / f"seed-{seed}" / "scores.npz"
    if not scores.is_file():
        raise UserError(f"{scores} does not exist: {run} is not a finished angle_tau.py run; finish it by running "
                        f"angle_tau.py again with the same settings")
    with np.load(scores) as z:
        angles = z["angle"]
    bench = Benchmark.load(benchmark or None)
    out.mkdir(parents=True, exist_ok=True)
    plot_tau_per_epoch(per_epoch, gt, out / "tau_per_epoch.png")
    plot_angle_vs_accuracy(angles, bench.accuracies(gt), gt, out / "angle_vs_accuracy.png")
    print(f"wrote {out / 'tau_per_epoch.png'} and {out / 'angle_vs_accuracy.png'}")


if __name__ == "__main__":
    main()
