"""DARTS genotypes: the cell found by a search, the published ones, and their JSON / text forms.

A genotype lists, for each of the 4 intermediate nodes of a cell, its 2 incoming edges as ``(op name, input
state)`` pairs (states 0, 1 are the cell inputs, 2..5 the nodes), plus the states concatenated into the output.
``parse_genotype`` accepts a published name, a ``genotype.json`` file, or a Python-literal ``Genotype(...)``
string (as upstream logs print it; read with :mod:`ast`, never ``eval``).
"""
from __future__ import annotations

import ast
import json
from collections import namedtuple
from pathlib import Path

from anglenas.errors import UserError
from anglenas.spaces.darts.ops import PRIMITIVES

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

FORMAT = "anglenas-genotype"
VERSION = 1
CONCAT = [2, 3, 4, 5]

DARTS_V1 = Genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=CONCAT,
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=CONCAT,
)
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=CONCAT,
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=CONCAT,
)
DARTS_ABS = Genotype(
    normal=[("sep_conv_3x3", 1), ("dil_conv_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 2),
            ("dil_conv_3x3", 2), ("sep_conv_5x5", 1), ("dil_conv_3x3", 4), ("dil_conv_5x5", 2)],
    normal_concat=CONCAT,
    reduce=[("dil_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_3x3", 2),
            ("dil_conv_3x3", 0), ("dil_conv_5x5", 3), ("dil_conv_3x3", 0), ("dil_conv_3x3", 2)],
    reduce_concat=CONCAT,
)
PDARTS_ABS = Genotype(
    normal=[("dil_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
            ("sep_conv_5x5", 0), ("sep_conv_5x5", 3), ("dil_conv_5x5", 2), ("dil_conv_3x3", 4)],
    normal_concat=CONCAT,
    reduce=[("dil_conv_3x3", 0), ("dil_conv_5x5", 1), ("sep_conv_3x3", 1), ("sep_conv_5x5", 2),
            ("dil_conv_5x5", 1), ("sep_conv_5x5", 3), ("dil_conv_3x3", 2), ("dil_conv_3x3", 4)],
    reduce_concat=CONCAT,
)

GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS_V2,
    "DARTS_ABS": DARTS_ABS, "PDARTS_ABS": PDARTS_ABS,
}
"""Published genotypes by name (upstream DARTS, and the ABS paper's cells from the original's
``DARTS/pdarts-master/genotypes.py``)."""


def validate_genotype(genotype: Genotype, where: str = "genotype") -> Genotype:
    """Return ``genotype`` with plain lists/ints, or raise :class:`UserError` naming the first problem."""
    fixed = {}
    for kind in ("normal", "reduce"):
        edges = genotype._asdict()[kind]
        try:
            edges = [(str(op), int(src)) for op, src in edges]
        except (TypeError, ValueError):
            raise UserError(f"{where}: {kind} must be a list of (op name, input state) pairs") from None
        if not edges or len(edges) % 2:
            raise UserError(f"{where}: {kind} has {len(edges)} edges; a cell needs 2 per node (an even number)")
        for i, (op, src) in enumerate(edges):
            if op not in PRIMITIVES:
                raise UserError(f"{where}: {kind} edge {i} has unknown op {op!r}; ops are: {', '.join(PRIMITIVES)}")
            node = i // 2 + 2
            if not 0 <= src < node:
                raise UserError(f"{where}: {kind} edge {i} feeds node {node} from state {src}; inputs must be "
                                f"states 0..{node - 1}")
        concat = genotype._asdict()[f"{kind}_concat"]
        try:
            concat = [int(s) for s in concat]
        except (TypeError, ValueError):
            raise UserError(f"{where}: {kind}_concat must be a list of state indices") from None
        num_states = len(edges) // 2 + 2
        if not concat or any(not 0 <= s < num_states for s in concat):
            raise UserError(f"{where}: {kind}_concat {concat} must list states in 0..{num_states - 1}")
        fixed[kind], fixed[f"{kind}_concat"] = edges, concat
    return Genotype(**fixed)


def genotype_to_json(genotype: Genotype) -> str:
    """The JSON text of ``genotype`` (one cell kind per line)."""
    genotype = validate_genotype(genotype)
    lines = [f'  "format": "{FORMAT}",', f'  "version": {VERSION},']
    for field in Genotype._fields:
        lines.append(f"  {json.dumps(field)}: {json.dumps(getattr(genotype, field))},")
    lines[-1] = lines[-1].rstrip(",")
    return "{\n" + "\n".join(lines) + "\n}\n"


def save_genotype(genotype: Genotype, path: str | Path) -> None:
    """Write ``genotype`` as JSON to ``path`` atomically."""
    from anglenas.checkpoint import atomic_write_text

    atomic_write_text(path, genotype_to_json(genotype))


def genotype_from_json(text: str, where: str = "genotype") -> Genotype:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or any(f not in doc for f in Genotype._fields):
        raise UserError(f"{where}: a genotype JSON needs the keys {', '.join(Genotype._fields)}")
    if doc.get("format", FORMAT) != FORMAT:
        raise UserError(f"{where}: format {doc.get('format')!r} is not {FORMAT!r}")
    return validate_genotype(Genotype(**{f: doc[f] for f in Genotype._fields}), where)


def _literal(node: ast.AST, where: str):
    """A Python literal, or ``range(a[, b])`` as a list."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        return list(range(*[_literal(a, where) for a in node.args]))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise UserError(f"{where}: only literals and range() may appear in a Genotype(...) string") from None


def genotype_from_string(text: str, where: str = "genotype") -> Genotype:
    """Parse ``Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`` (keywords or positional)."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise UserError(f"{where}: not a genotype name, a genotype JSON file, or a Genotype(...) string") from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
        raise UserError(f"{where}: expected Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)")
    values = [_literal(a, where) for a in tree.args]
    fields = dict(zip(Genotype._fields, values))
    for kw in tree.keywords:
        if kw.arg not in Genotype._fields:
            raise UserError(f"{where}: unknown Genotype field {kw.arg!r}")
        fields[kw.arg] = _literal(kw.value, where)
    missing = [f for f in Genotype._fields if f not in fields]
    if missing:
        raise UserError(f"{where}: Genotype(...) misses {', '.join(missing)}")
    return validate_genotype(Genotype(**fields), where)


def parse_genotype(value: str | Genotype) -> Genotype:
    """A genotype from a published name, a JSON (or ``Genotype(...)`` text) file, or a ``Genotype(...)`` string."""
    if isinstance(value, Genotype):
        return validate_genotype(value)
    value = str(value).strip()
    if value in GENOTYPES:
        return GENOTYPES[value]
    if value.startswith("Genotype("):
        return genotype_from_string(value)
    path = Path(value)
    if path.is_file():
        text = path.read_text()
        if text.lstrip().startswith("{"):
            return genotype_from_json(text, str(path))
        return genotype_from_string(text, str(path))
    raise UserError(f"unknown genotype {value!r}: not a file; pass a genotype.json, a Genotype(...) string or one "
                    f"of: {', '.join(GENOTYPES)}")


def load_genotype(path: str | Path) -> Genotype:
    """Read a ``genotype.json`` written by :func:`save_genotype`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"genotype file {path} does not exist")
    return genotype_from_json(path.read_text(), str(path))
