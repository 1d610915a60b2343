"""The importer base class and registry (see :mod:`eossl.data.importers`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from eossl.registry import Registry


class ImporterOptions(BaseModel):
    """Options every importer accepts; an importer's own options derive from this."""

    model_config = ConfigDict(extra="forbid")
    overwrite: bool = False


class Importer:
    """Reads one dataset layout from ``source`` and writes a v2 store at ``store`` (atomically)."""

    name: ClassVar[str]
    config: ClassVar[type[ImporterOptions]] = ImporterOptions

    def write(self, source: Path, store: Path, options: ImporterOptions) -> Path:  # pragma: no cover - abstract
        raise NotImplementedError


IMPORTERS: Registry[type[Importer]] = Registry("importer", packages=("eossl.data.importers",))
