"""External weights (e.g. ImageNet) of the same architecture from a local timm weights file, reported
under ``external.label``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from eossl.errors import ConfigError
from eossl.evaluation.inits._base import FreshInit
from eossl.evaluation.registry import INITS
from eossl.evaluation.sink import Setting


class ExternalInitConfig(BaseModel):
    """``external:``: an ImageNet-style or other external checkpoint (local timm weights file)."""

    model_config = ConfigDict(extra="forbid")
    weights_file: Path
    label: str = "external"


@INITS.register("external")
class ExternalInit(FreshInit):
    baseline = True
    config = ExternalInitConfig

    def check(self) -> None:
        if self.cfg.external is None:
            raise ConfigError("'inits' contains 'external' but 'external.weights_file' is not set")

    def label(self) -> str:
        return self.cfg.external.label

    def weights_file(self) -> Path:
        return Path(self.cfg.external.weights_file)

    def source(self) -> Path:
        return self.weights_file()

    def unavailable(self, setting: Setting) -> str | None:
        if setting.fusion == "stems":
            return "external weights have a single input convolution, not one per modality"
        return None
