"""eossl: self-supervised, label-efficient deep learning for Earth observation.

``import eossl`` registers eossl's encoders with timm (the timm model ``eossl_encoder``, see
:mod:`eossl.models.timm_export`), so ``timm.create_model("local-dir:FOLDER", pretrained=True)`` loads
any folder written by ``eossl export``. The registration happens as soon as timm is imported (at once
if it already is), so ``import eossl`` alone stays cheap.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import sys
from types import ModuleType

try:
    __version__ = importlib.metadata.version("eossl")
except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"


def _register_with_timm() -> None:
    import eossl.models.timm_export  # noqa: F401  (its @register_model runs on import)


class _AfterTimmImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps timm's loader so that eossl's models register once timm is loaded."""

    def find_spec(self, name: str, path=None, target=None):  # type: ignore[no-untyped-def]
        if name != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            _register_with_timm()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "timm" in sys.modules:
    _register_with_timm()
elif not any(isinstance(f, _AfterTimmImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterTimmImport())
