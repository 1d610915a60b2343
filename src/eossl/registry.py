"""Registries: names -> units (methods, protocols, inits, encoders, task kinds, fusion modes, adapters,
importers), filled by a decorator in the unit's own file.

A unit is one file whose class (or builder function) registers itself::

    @METHODS.register("simclr")
    class SimCLR(PretrainMethod):
        config = SimCLRConfig          # the unit owns its config section
        ...

Nothing else lists it: a registry created with ``packages`` imports every module of those packages
the first time it is read, so dropping a new file into the package is enough. Unknown names raise
:class:`eossl.errors.UnknownNameError` naming what is available. This module is a leaf of the
package (it imports only :mod:`eossl.errors`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from eossl.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered mapping ``name -> unit`` filled by :meth:`register`.

    ``kind`` names what it holds (for messages). ``packages``: modules whose submodules are imported
    on first read, so their decorators run (registration by file, with no central list).
    """

    def __init__(self, kind: str, packages: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.packages = packages
        self._units: dict[str, T] = {}
        self._discovered = not packages

    # -- filling -----------------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under ``name`` (set as its ``name``)."""

        def decorate(unit: T) -> T:
            if name in self._units and self._units[name] is not unit:
                existing = self._units[name]
                raise RuntimeError(f"{self.kind} '{name}' is registered twice: {existing!r} and {unit!r}")
            if isinstance(unit, type):
                unit.name = name  # type: ignore[attr-defined]
            self._units[name] = unit
            return unit

        return decorate

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for package_name in self.packages:
            package = importlib.import_module(package_name)
            for info in pkgutil.iter_modules(package.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{package_name}.{info.name}")

    # -- reading -----------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        self._discover()
        if name not in self._units:
            raise UnknownNameError(f"unknown {self.kind} '{name}' (available: {', '.join(self._units) or 'none'})")
        return self._units[name]

    def get(self, name: str, default: Any = None) -> T | Any:
        self._discover()
        return self._units.get(name, default)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._units

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(list(self._units))

    def __len__(self) -> int:
        self._discover()
        return len(self._units)

    def names(self) -> list[str]:
        self._discover()
        return list(self._units)

    def items(self) -> list[tuple[str, T]]:
        self._discover()
        return list(self._units.items())

    def values(self) -> list[T]:
        self._discover()
        return list(self._units.values())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._units)})"
