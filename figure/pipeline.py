"""Draw the ABS pipeline diagram of the README: ``python figure/pipeline.py`` writes figure/pipeline.png."""
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

BOXES = {  # name: (x, y, width, height, text, colour)
    "data": (0.2, 4.6, 2.3, 1.0, "training images\n(search-train split)", "#e8eef7"),
    "train": (3.2, 4.6, 2.9, 1.0, "train the supernet\nuniform single-path sampling", "#d6e4f5"),
    "score": (6.8, 4.6, 3.1, 1.0, "score every operator\nmean angle of children with it", "#fde9c9"),
    "drop": (6.8, 2.8, 3.1, 1.0, "drop the lowest-scored\noperators (>= 1 per layer kept)", "#f8d3c5"),
    "file": (3.2, 2.8, 2.9, 1.0, "operations file\n(the shrunk space, JSON)", "#dcefd8"),
    "search": (0.2, 1.0, 3.6, 1.0, "search inside it: SPOS / FairNAS\n(EA + RabbitMQ test servers)", "#e6dcf2"),
    "retrain": (4.3, 1.0, 2.6, 1.0, "train the found\narchitecture from scratch", "#e6dcf2"),
    "eval": (7.4, 1.0, 2.5, 1.0, "evaluate\n(top-1 / top-5)", "#e6dcf2"),
}
ARROWS = [("data", "train"), ("train", "score"), ("score", "drop"), ("drop", "train"), ("drop", "file"),
          ("file", "search"), ("search", "retrain"), ("retrain", "eval")]
LABELS = [(6.25, 4.2, "space > 1e6:\nnext round"), (6.45, 3.55, "space <= 1e6")]


def anchor(name: str, towards: str) -> tuple[float, float]:
    x, y, w, h, *_ = BOXES[name]
    tx, ty, tw, th, *_ = BOXES[towards]
    cx, cy, tcx, tcy = x + w / 2, y + h / 2, tx + tw / 2, ty + th / 2
    if abs(tcy - cy) > abs(tcx - cx) * 0.6:
        return cx, (y if tcy < cy else y + h)
    return (x if tcx < cx else x + w), cy


def draw(path: Path) -> None:
    fig = Figure(figsize=(10.5, 6.4))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10.1)
    ax.set_ylim(0, 6.6)
    ax.axis("off")
    ax.text(0.2, 6.25, "ABS: angle-based search-space shrinking", fontsize=15, weight="bold")
    ax.text(0.2, 5.85, r"angle of child $a$:  $\theta(a) = \arccos\,\frac{\langle V(W_0,a),\,V(W_t,a)\rangle}"
            r"{\|V(W_0,a)\|\,\|V(W_t,a)\|}$   ($V$: the child's weights concatenated; larger $\theta$ = better)",
            fontsize=10.5)
    for name, (x, y, w, h, text, colour) in BOXES.items():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05,rounding_size=0.12", fc=colour,
                                    ec="#555555", lw=1.2))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10)
    for src, dst in ARROWS:
        start, end = anchor(src, dst), anchor(dst, src)
        loop = (src, dst) == ("drop", "train")
        if loop:
            start, end = (7.3, 3.8), (5.6, 4.6)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16, lw=1.4, color="#333333",
                                     connectionstyle="arc3,rad=0.3" if loop else "arc3"))
    for x, y, text in LABELS:
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, color="#333333",
                bbox=dict(fc="white", ec="none", pad=1.0))
    ax.text(0.2, 3.3, "shrinking/main.py", fontsize=9, family="monospace", color="#555555")
    ax.text(0.2, 0.45, "searching/main.py + test_server.py      training/train_from_scratch.py      "
            "training/train_from_scratch.py --eval", fontsize=9, family="monospace", color="#555555")
    ax.plot([0.1, 10.0], [2.45, 2.45], ls="--", lw=0.8, color="#999999")
    fig.savefig(path, dpi=150)


if __name__ == "__main__":
    draw(Path(__file__).with_name("pipeline.png"))
