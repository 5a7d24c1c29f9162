"""The operations file: the (shrunk) search space as per-site lists of op ids (README, "The operations file"), for every
registered space.

We write JSON that names its space (a registered one) and the op of every id::

    {"format": "anglenas-operations", "version": 1, "space": "gpu",
     "op_names": {"-1": "identity", "0": "mobilenet_3x3_ratio_3", ...},
     "operations": [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, -1], ...]}

and also read the original's pickle (a list of lists of int / numpy.int64: the MobileNet spaces' layers, DARTS'
14 edges of primitive indices) through a restricted unpickler that refuses every other object, so a crafted file
cannot run code. Its space is inferred from the number of sites.
"""
from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from anglenas.errors import UserError
from anglenas.spaces import get_space, space_for_num_sites
from anglenas.spaces.base import SearchSpace

FORMAT = "anglenas-operations"
VERSION = 1


@dataclass
class Operations:
    """A search space restricted to ``ops[site]`` (op ids of the space's table, in the original order)."""

    space: SearchSpace
    ops: list[list[int]]

    def __post_init__(self) -> None:
        self.ops = self.space.check_operations(self.ops)

    @classmethod
    def full(cls, space: SearchSpace) -> "Operations":
        return cls(space, space.initial_operations())

    @property
    def size(self) -> int:
        """Number of architectures: the product of the per-site op counts."""
        return self.space.size_of(self.ops)

    @property
    def num_operators(self) -> int:
        return sum(len(layer) for layer in self.ops)

    def contains(self, arch: Sequence[int]) -> bool:
        return len(arch) == len(self.ops) and all(int(a) in layer for a, layer in zip(arch, self.ops))

    def to_json(self) -> str:
        """Human-readable JSON with a stable key order and one layer per line."""
        names = {str(self.space.op_id(name)): name for name in self.space.op_names}
        names = dict(sorted(names.items(), key=lambda kv: int(kv[0])))
        layers = ",\n    ".join(json.dumps(layer) for layer in self.ops)
        return (
            "{\n"
            f'  "format": "{FORMAT}",\n  "version": {VERSION},\n  "space": {json.dumps(self.space.name)},\n'
            f'  "op_names": {json.dumps(names)},\n'
            f'  "operations": [\n    {layers}\n  ]\n}}\n'
        )

    def save(self, path: str | Path) -> None:
        from anglenas.checkpoint import atomic_write_text

        atomic_write_text(path, self.to_json())

    def describe(self) -> str:
        """Multi-line summary: space, per-layer op names and size."""
        kind = self.space.site_kind
        lines = [f"space: {self.space.name} ({len(self.ops)} {kind}s)"]
        for i, site in enumerate(self.ops):
            lines.append(f"{kind} {i:2d}: " + ", ".join(self.space.op_name(op) for op in site))
        lines.append(f"size: {self.size:.4g} architectures ({self.size}), {self.num_operators} operators")
        return "\n".join(lines)


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds only numpy integer scalars (``numpy.int64`` after the original's broadcast); refuses all else."""

    def find_class(self, module: str, name: str):
        import numpy as np

        if name == "scalar" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.int64(0).__reduce__()[0]  # the installed numpy's scalar constructor
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_original_pickle(data: bytes, path: Path) -> list[list[int]]:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise UserError(f"{path}: not a JSON operations file nor an original operations pickle ({exc})") from None
    if not isinstance(obj, list) or not all(isinstance(layer, list) for layer in obj):
        raise UserError(f"{path}: the pickle holds a {type(obj).__name__}, not a list of per-layer op lists")
    import numpy as np

    for i, layer in enumerate(obj):
        if not all(isinstance(op, (int, np.integer)) and not isinstance(op, bool) for op in layer):
            raise UserError(f"{path}: layer {i} of the pickle holds non-integer entries")
    return [[int(op) for op in layer] for layer in obj]


def load_operations(path: str | Path, space: SearchSpace | str | None = None) -> Operations:
    """Read a JSON operations file or an original pickle; the space is inferred when not given."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"operations file {path} does not exist; pass the file written by shrinking/main.py")
    data = path.read_bytes()
    if not data.strip():
        raise UserError(f"operations file {path} is empty")
    space_obj = get_space(space) if isinstance(space, str) else space
    if data.lstrip()[:1] == b"{":
        try:
            doc = json.loads(data)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: invalid JSON ({exc})") from None
        if doc.get("format") != FORMAT or not isinstance(doc.get("operations"), list):
            raise UserError(f"{path}: JSON without \"format\": \"{FORMAT}\" and an \"operations\" list")
        if doc.get("version") != VERSION:
            raise UserError(f"{path}: operations file version {doc.get('version')} is not supported "
                            f"(expected {VERSION})")
        file_space = get_space(str(doc.get("space")))
        if space_obj is not None and space_obj.name != file_space.name:
            raise UserError(f"{path} describes the {file_space.name} space, not the {space_obj.name} space; pass an "
                            f"operations file of the {space_obj.name} space")
        _check_op_names(doc.get("op_names"), file_space, path)
        ops = doc["operations"]
        if not all(isinstance(layer, list) and all(isinstance(o, int) and not isinstance(o, bool) for o in layer)
                   for layer in ops):
            raise UserError(f"{path}: \"operations\" must be a list of lists of integers")
        return Operations(space_obj or file_space, ops)
    ops = _load_original_pickle(data, path)
    return Operations(space_obj or space_for_num_sites(len(ops)), ops)


def _check_op_names(names, space: SearchSpace, path: Path) -> None:
    """The file's id -> name map (when present) must agree with the space's op table."""
    if names is None:
        return
    if not isinstance(names, dict):
        raise UserError(f"{path}: \"op_names\" must map op ids to names")
    for key, name in names.items():
        try:
            ours = space.op_name(int(key))
        except (ValueError, IndexError):
            raise UserError(f"{path}: op id {key!r} is not in the {space.name} space's op table") from None
        if ours != name:
            raise UserError(f"{path}: op id {key} is {name!r} in the file but {ours!r} in the {space.name} space")
