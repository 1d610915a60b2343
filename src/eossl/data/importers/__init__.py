"""Importers: turn a dataset's on-disk layout (GeoTIFF folders, public dataset formats) into a v2 store.

One importer is one file in this package whose class registers itself::

    @IMPORTERS.register("eurosat")
    class EuroSAT(Importer):
        config = EuroSATOptions        # its options (pydantic), validated before any work
        def plan(self, source: Path, options: EuroSATOptions) -> ImportPlan: ...   # metadata only
        def read(self, item: ImportItem, options: EuroSATOptions) -> list[Sample | Filtered]: ...

``plan`` lists the items (files or tiles) and declares the store's modalities, targets, dates and
splits; ``read`` turns one item into samples and runs on dask workers. The shared pipeline
(:mod:`eossl.data.importers.pipeline`) reads in parallel with bounded memory, checks samples, skips or
stops on bad files, and publishes the store with ``import_report.json``.
``eossl data import KIND SOURCE STORE key=value ...`` looks ``KIND`` up in :data:`IMPORTERS`;
:mod:`eossl.data.importers.raster` holds the raster helpers importers share.
"""

from __future__ import annotations

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample

__all__ = ["IMPORTERS", "Filtered", "ImportItem", "ImportPlan", "Importer", "ImporterOptions", "Sample"]
