"""A name -> factory registry with plug-in discovery, shared by the search spaces and the searchers.

A plug-in registers a factory under a name with :meth:`Registry.register` (the factory runs only when the name is
asked for, once). Built-in plug-ins are the sub-packages of the registry's home package (each registers itself on
import); a plug-in of another distribution registers through the entry-point group ``anglenas.<kind>s``, e.g. in its
``pyproject.toml``::

    [project.entry-points."anglenas.spaces"]
    myspace = "mypackage.myspace"
"""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

from anglenas.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories of one kind of plug-in (``kind``: "search space", "searcher"), found in package ``home``."""

    def __init__(self, kind: str, home: str, group: str) -> None:
        self.kind, self.home, self.group = kind, home, group
        self._factories: dict[str, Callable[[], T]] = {}
        self._built: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str, factory: Callable[[], T]) -> None:
        """Register ``factory`` under ``name`` (a later registration replaces an earlier one)."""
        self._factories[name] = factory
        self._built.pop(name, None)

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._factories)

    def get(self, name: str) -> T:
        """The plug-in called ``name``, built on first use; an unknown name is a :class:`UserError`."""
        self._discover()
        if name not in self._built:
            if name not in self._factories:
                raise UserError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
            self._built[name] = self._factories[name]()
        return self._built[name]

    def all(self) -> list[T]:
        return [self.get(name) for name in self.names()]

    def _discover(self) -> None:
        """Import the home package's sub-packages and the entry points of ``group`` once (each registers)."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.home)
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg:
                importlib.import_module(f"{self.home}.{info.name}")
        for entry in entry_points(group=self.group):
            entry.load()
