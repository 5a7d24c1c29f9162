"""Configuration: a dataclass per stage, every field a command-line flag and a YAML key.

Precedence: dataclass default < presets (a choice field's ``metadata["presets"]``, e.g. ``--method fairnas``
setting FairNAS' batch size; then a preset flag such as ``--demo``) < ``--config file.yaml`` < command-line flag.
A field's help text is its ``metadata["help"]``. Unknown YAML keys and ill-typed values are :class:`UserError`\\ s.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

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


def field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help string (``choices=``; ``presets=`` a callable giving, for each choice, the
    defaults that choice sets on other fields, and under the name of a preset flag such as ``demo`` those it sets
    when that flag is given too)."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of an annotation like ``int``, ``float | None`` or ``Optional[str]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _coerce(name: str, value: Any, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{name} may not be empty")
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
                 prog: str | None = None, presets: dict[str, dict[str, Any]] | None = None) -> T:
    """Build ``cls`` from ``--config`` YAML and command-line flags (``argv`` defaults to ``sys.argv[1:]``).

    ``presets`` maps a boolean field (e.g. ``demo``) to defaults that apply when that flag is given; YAML and
    explicit flags still override them.
    """
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    for name in presets or {}:
        pre.add_argument("--" + name, action="store_true")
    choice_presets = {f.name: f.metadata["presets"]() for f in fields if "presets" in f.metadata}
    for f in fields:
        if f.name in choice_presets:
            pre.add_argument("--" + f.name, default=f.default)
    known, _ = pre.parse_known_args(argv)
    values = {f.name: f.default for f in fields}
    chosen = [table.get(getattr(known, name), {}) for name, table in choice_presets.items()]
    for overrides in chosen:
        values.update({k: v for k, v in overrides.items() if k not in (presets or {})})
    for name, overrides in (presets or {}).items():
        if getattr(known, name):
            values.update(overrides)
            for table in chosen:  # e.g. --space darts --demo: the space's own demo settings
                values.update(table.get(name, {}))
    if known.config:
        values.update(load_yaml(known.config, cls))

    parser = ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--config", help="YAML file of field: value (flags given here override it)")
    for f in fields:
        base, _ = _base_type(hints[f.name])
        flag = "--" + f.name
        flags = [flag, flag.replace("_", "-")] if "_" in f.name else [flag]  # --eval_resume or --eval-resume
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        choices = tuple(c for c in choices if c is not None) if choices else None
        if base is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=values[f.name], help=help_text)
        else:
            parser.add_argument(*flags, default=values[f.name], help=help_text, choices=choices,
                                type=lambda v, n=f.name, t=hints[f.name]: _coerce(n, v, t))
    args = vars(parser.parse_args(argv))
    args.pop("config")
    return cls(**args)


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
    unknown = sorted(set(doc) - names)
    if unknown:
        raise UserError(f"config file {path}: unknown key(s) {unknown}; known keys: {sorted(names)}")
    out = {}
    for key, value in doc.items():
        out[key] = _coerce(key, value, hints[key])
        choices = next(f.metadata.get("choices") for f in dataclasses.fields(cls) if f.name == key)
        if choices and out[key] is not None and out[key] not in choices:
            raise UserError(f"config key {key!r} must be one of {choices}, got {out[key]!r}")
    return out


def to_yaml(cfg: Any) -> str:
    """The config as YAML, re-readable with ``--config``."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
