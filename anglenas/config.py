"""Configuration: a dataclass per stage, every field a command-line flag and a YAML key.

Precedence: dataclass default < presets (a choice field's ``metadata["presets"]``, e.g. ``--method fairnas``
setting FairNAS' batch size; then a preset flag such as ``--demo``) < ``--config file.yaml`` < command-line flag.
A field's help text is its ``metadata["help"]``; a subclass changes an inherited field's default with
:func:`override` (the help and range stay the base's). Numbers declare their range beside the field (``low=``,
``high=``): ``--help`` shows it and :func:`check_ranges` refuses a value outside it, in one line, before a stage
creates or loads anything. Unknown YAML keys and ill-typed values are :class:`UserError`\\ s too.

:class:`RuntimeConfig` (device, precision, threads, seed, demo, run folder) and :class:`SizeConfig` (width, input
size, stem stride) are the settings every stage shares, each declared once.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from anglenas.errors import UserError

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (``error: ...``, exit 2), pointing at ``--help``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks (usage examples) and shows a default once, only where it says
    something (not when the help text already names it, nor for an empty or ``None`` default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, "", argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def field(default: Any, help: str, *, low: float | None = None, high: float | None = None, **kwargs: Any) -> Any:
    """A dataclass field with a help string and, for a number, its allowed range ``low <= value <= high`` (either
    end optional; ``None`` values are not checked; a ``tuple[X, ...]`` field takes one or more values, each
    checked). ``choices=``; ``presets=`` a callable giving, for each choice,
    the defaults that choice sets on other fields, and under the name of a preset flag such as ``demo`` those it
    sets when that flag is given too."""
    bounds = {k: v for k, v in (("low", low), ("high", high)) if v is not None}
    return dataclasses.field(default=default, metadata={"help": help, **bounds, **kwargs})


def override(default: Any) -> Any:
    """An inherited field with another default; its help, range and choices stay those of the base class."""
    return dataclasses.field(default=default, metadata={"override": True})


def field_meta(cls: type, name: str) -> Mapping[str, Any]:
    """The metadata of field ``name`` of dataclass ``cls``, from the class that declared it (not an override)."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and not f.metadata.get("override"):
            return f.metadata
    return {}


def range_text(meta: Mapping[str, Any]) -> str:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f">= {low:g}"
    return f"<= {high:g}" if high is not None else ""


def check_ranges(cfg: Any) -> Any:
    """``cfg`` when every number lies in its field's declared range; else a :class:`UserError` naming the flag
    and the range."""
    for f in dataclasses.fields(cfg):
        meta, value = field_meta(type(cfg), f.name), getattr(cfg, f.name)
        low, high = meta.get("low"), meta.get("high")
        for item in value if isinstance(value, tuple) else (value,):  # a tuple field: each of its values
            if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if (low is not None and item < low) or (high is not None and item > high) or item != item:
                raise UserError(f"--{f.name} must be {range_text(meta)}, got {item:g}")
    return cfg


@dataclass
class RuntimeConfig:
    """Where and how a stage runs; every stage's config includes it (a stage may :func:`override` a default)."""

    device: str = field("auto", "cuda, cuda:N, cpu or auto (a GPU where there is one)")
    amp: bool = field(False, "bf16 autocast on CUDA (off: fp32, the originals' precision)")
    threads: int = field(0, "CPU threads of this process (0: one per core it may use); give each of several jobs "
                            "on one machine its share", low=0)
    seed: int = field(0, "seed of the weights, the data order and every random choice", low=0)
    demo: bool = field(False, "small settings on the data shipped in the package: minutes on a CPU")
    save: str = field("runs/run", "run folder: checkpoints, results, log, TensorBoard")


@dataclass
class SizeConfig:
    """The size at which a stage builds its networks (the space's own at width 1 and the dataset's resolution)."""

    width_mult: float = field(1.0, "channel width multiplier", low=1e-3)
    depth: int | None = field(None, "cells per stage of a cell space's networks (default: the space's own, nb201 5; "
                                    "the DARTS family's searchers: the cells of their search network, --layers)",
                              low=1)
    input_size: int | None = field(None, "input resolution (default: the dataset's)", low=8)
    stem_stride: int | None = field(None, "stride of the stem conv (default: the space's own, 2 for the ImageNet "
                                          "spaces, 1 for nb201; 1 suits 32x32 inputs)", low=1, high=2)

    def sized(self, space: Any, data: Any) -> Any:
        """``space`` (a search space) at this size for ``data`` (its resolution and class count)."""
        return space.scaled(self.width_mult, self.input_size or data.input_size, data.num_classes, self.stem_stride,
                            self.depth)


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of an annotation like ``int``, ``float | None`` or ``Optional[str]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _item_type(tp: Any) -> Any:
    """The item type of a ``tuple[X, ...]`` field (a flag taking one or more values), else None."""
    base, _ = _base_type(tp)
    return typing.get_args(base)[0] if typing.get_origin(base) is tuple else None


def _coerce(name: str, value: Any, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{name} may not be empty")
    item = _item_type(tp)
    if item is not None:  # a YAML list, or one value
        return tuple(_coerce(name, v, item) for v in (value if isinstance(value, (list, tuple)) else [value]))
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int:  # accept 50000, "50000" and "5e4", refuse 2.5
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        return base(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be of type {base.__name__}, got {value!r}") from None


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str = "",
                 prog: str | None = None, presets: Mapping[str, Mapping[str, Any]] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> T:
    """Build ``cls`` from ``--config`` YAML and command-line flags (``argv`` defaults to ``sys.argv[1:]``).

    ``presets`` maps a boolean field (e.g. ``demo``) to defaults that apply when that flag is given (after the
    class's own ``presets`` attribute, in order); YAML and explicit flags still override them. ``defaults`` replace
    the dataclass defaults (below every preset).
    """
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    aliases = getattr(cls, "flag_aliases", {})

    def canonical(table: Mapping[str, Any]) -> dict[str, Any]:  # an original's name of a field is that field
        return {aliases.get(k, k): (canonical(v) if isinstance(v, Mapping) else v) for k, v in table.items()}

    presets = canonical({**getattr(cls, "presets", {}), **(presets or {})})
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    for name in presets or {}:
        pre.add_argument("--" + name, action="store_true")
    values = {f.name: f.default for f in fields}
    values.update(canonical(defaults or {}))
    metas = {f.name: field_meta(cls, f.name) for f in fields}
    choice_presets = {name: canonical(meta["presets"]()) for name, meta in metas.items() if "presets" in meta}
    for f in fields:
        if f.name in choice_presets:
            pre.add_argument("--" + f.name, default=values[f.name])
    known, _ = pre.parse_known_args(argv)
    chosen = [{k: v for k, v in table.get(getattr(known, name), {}).items() if k in values or k in (presets or {})}
              for name, table in choice_presets.items()]  # a choice may preset fields other configs have
    for overrides in chosen:
        values.update({k: v for k, v in overrides.items() if k not in (presets or {})})
    for name, overrides in (presets or {}).items():
        if getattr(known, name):
            values.update(overrides)
            for table in chosen:  # e.g. --space darts --demo: the space's own demo settings
                values.update({k: v for k, v in table.get(name, {}).items() if k in values})
    if known.config:
        values.update(load_yaml(known.config, cls))

    parser = ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--config", help="YAML file of field: value (flags given here override it)")
    for f in fields:
        base, _ = _base_type(hints[f.name])
        meta = field_meta(cls, f.name)
        flag = "--" + f.name
        flags = [flag, flag.replace("_", "-")] if "_" in f.name else [flag]  # --eval_resume or --eval-resume
        flags += ["--" + alias for alias, target in aliases.items() if target == f.name]
        help_text = meta.get("help", "") + (f" ({range_text(meta)})" if range_text(meta) else "")
        choices = meta.get("choices")
        choices = tuple(c for c in choices if c is not None) if choices else None
        item = _item_type(hints[f.name])
        if base is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=values[f.name], help=help_text)
        else:
            parser.add_argument(*flags, default=values[f.name], help=help_text, choices=choices,
                                nargs=None if item is None else "+",
                                type=lambda v, n=f.name, t=item or hints[f.name]: _coerce(n, v, t))
    args = vars(parser.parse_args(argv))
    args.pop("config")
    return check_ranges(cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}))


def load_yaml(path: str | Path, cls: type) -> dict[str, Any]:
    """Read a YAML mapping of ``cls`` fields, checking names and types."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path} cannot be read as text ({type(exc).__name__}); pass a YAML file of "
                        f"field: value lines") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise UserError(f"config file {path} is not valid YAML{at}: {problem}") from None
    if not isinstance(doc, dict):
        raise UserError(f"config file {path} must be a mapping of field: value")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    doc = {getattr(cls, "flag_aliases", {}).get(k, k): v for k, v in doc.items()}
    unknown = sorted(set(doc) - names)
    if unknown:
        raise UserError(f"config file {path}: unknown key(s) {unknown}; known keys: {sorted(names)}")
    out = {}
    for key, value in doc.items():
        out[key] = _coerce(key, value, hints[key])
        choices = field_meta(cls, key).get("choices")
        for item in out[key] if isinstance(out[key], tuple) else (out[key],):
            if choices and item is not None and item not in choices:
                raise UserError(f"config key {key!r} must be one of {choices}, got {item!r}")
    return out


def to_yaml(cfg: Any) -> str:
    """The config as YAML, re-readable with ``--config``."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
