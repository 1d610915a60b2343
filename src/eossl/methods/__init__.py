"""Self-supervised pretraining methods, selectable by name (``method.name`` in the pretrain config).

:data:`METHODS` maps each name to its LightningModule class (its config class is ``METHODS[name].config``);
the methods are the files of :mod:`eossl.methods.zoo`, found when the registry is first read. This
package's own import stays light (pydantic only): the method modules load on that first read.
"""

from __future__ import annotations

from eossl.methods.registry import METHODS, MethodConfig

__all__ = ["METHODS", "MethodConfig"]
