"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): 5 operations on the 6 edges of a 4-node cell, 5^6 = 15,625
cells.

A cell is a tuple of 6 op indices, one per edge in the order of the arch string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.
"""
from __future__ import annotations

import itertools

import numpy as np

from anglenas.errors import UserError

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NONE, SKIP, CONV1, CONV3, POOL = range(5)
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""(to_node, from_node) of each edge, in arch-string order."""
NUM_NODES = 4
NUM_EDGES = len(EDGES)
NUM_ARCHS = len(OPS) ** NUM_EDGES
PATHS = ((0, 3), (0, 2, 3), (0, 1, 2, 3), (0, 1, 3))
"""The input-to-output paths of the cell in the order of the original's angle vector (``get_arch_angle``)."""

Cell = tuple[int, ...]


def edge_index(to_node: int, from_node: int) -> int:
    """Position of edge ``to_node <- from_node`` in a cell tuple."""
    return EDGES.index((to_node, from_node))


def path_edges(path: tuple[int, ...]) -> tuple[int, ...]:
    """Edge positions along a node path, e.g. (0, 2, 3) -> (edge 2<-0, edge 3<-2)."""
    return tuple(edge_index(b, a) for a, b in zip(path, path[1:]))


def to_str(cell: Cell) -> str:
    """The NB201 arch string of a cell tuple."""
    check_cell(cell)
    nodes = []
    for node in range(1, NUM_NODES):
        nodes.append("|" + "|".join(f"{OPS[cell[edge_index(node, j)]]}~{j}" for j in range(node)) + "|")
    return "+".join(nodes)


def parse(text: str) -> Cell:
    """The cell tuple of an NB201 arch string; :class:`UserError` naming the problem otherwise."""
    example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    hint = f"expected 3 '+'-separated nodes like {example}"
    text = text.strip()
    nodes = text.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise UserError(f"arch string {text!r} has {len(nodes)} node(s); {hint}")
    cell = [NONE] * NUM_EDGES
    for node, part in enumerate(nodes, start=1):
        if not (part.startswith("|") and part.endswith("|")) or len(part) < 2:
            raise UserError(f"node {node} of {text!r} must be enclosed in '|': got {part!r}; {hint}")
        items = part[1:-1].split("|")
        if len(items) != node:
            raise UserError(f"node {node} of {text!r} needs {node} input(s) (~0..~{node - 1}), got {len(items)}; "
                            f"{hint}")
        for j, item in enumerate(items):
            op, sep, src = item.partition("~")
            if not sep or src != str(j):
                raise UserError(f"input {j} of node {node} in {text!r} must read 'op~{j}', got {item!r}")
            if op not in OPS:
                raise UserError(f"unknown operation {op!r} in {text!r}; operations are {', '.join(OPS)}")
            cell[edge_index(node, j)] = OPS.index(op)
    return tuple(cell)


def check_cell(cell: Cell) -> None:
    """:class:`UserError` unless ``cell`` is 6 op indices in 0..4."""
    if len(cell) != NUM_EDGES or any(not 0 <= int(op) < len(OPS) for op in cell):
        raise UserError(f"a cell is {NUM_EDGES} op indices in 0..{len(OPS) - 1}, got {list(cell)}")


def all_cells() -> np.ndarray:
    """All 15,625 cells [15625, 6] in product order (NOT the benchmark's index order; see ``api``)."""
    return np.array(list(itertools.product(range(len(OPS)), repeat=NUM_EDGES)), dtype=np.int64)


def is_dead(cells: np.ndarray) -> np.ndarray:
    """Cells whose output is identically zero: no input-to-output path avoids ``none`` (boolean [N])."""
    cells = np.asarray(cells).reshape(-1, NUM_EDGES)
    alive = np.zeros(len(cells), dtype=bool)
    for path in PATHS:
        alive |= np.all(cells[:, list(path_edges(path))] != NONE, axis=1)
    return ~alive
