"""Importers: turn a dataset's on-disk layout (GeoTIFF folders, public dataset formats) into a v2 store.

One importer is one file in this package whose class registers itself::

    @IMPORTERS.register("eurosat")
    class EuroSAT(Importer):
        config = EuroSATOptions        # its options (pydantic), validated before any work
        def write(self, source: Path, store: Path, options: EuroSATOptions) -> Path: ...

and declares what the store holds (modalities, targets, dates, splits) through
:meth:`eossl.data.store.StoreWriter.close`. ``eossl data import KIND SOURCE STORE`` (next issue) looks
``KIND`` up in :data:`IMPORTERS`; none are registered yet.
"""

from __future__ import annotations

from eossl.data.importers._base import IMPORTERS, Importer

__all__ = ["IMPORTERS", "Importer"]
