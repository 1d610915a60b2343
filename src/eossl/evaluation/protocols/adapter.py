"""Adapter fine-tuning: only a spectral adapter, only the first N layers, or LoRA (ViTs) trains; each
mode is its own protocol in the results (``adapter-spectral``, ``adapter-first-2``, ``adapter-lora``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from eossl.errors import ConfigError
from eossl.evaluation.context import CellScope, InitRun
from eossl.evaluation.protocols._base import Plan, TrainedProtocol
from eossl.evaluation.protocols._trained import train_and_test
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.evaluation.registry import PROTOCOLS
from eossl.evaluation.sink import Cell
from eossl.models.adapters import ADAPTERS, AdapterOptions
from eossl.models.encoders import is_vision_transformer

AdapterMode = Literal[tuple(name for name, mode in ADAPTERS.items() if mode.protocol)]  # type: ignore[valid-type]


class AdapterProtocolConfig(TrainedProtocolConfig):
    """``adapter:``: the modes to run (off by default); adapter weights train at the head's rate."""

    enabled: bool = False
    modes: list[AdapterMode] = Field(default_factory=lambda: ["spectral"])
    first_layers: int = Field(1, ge=1)
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    spectral_hidden: int = Field(16, ge=1)  # channels of the spectral adapter's 1-D convolutions
    spectral_kernel: int = Field(5, ge=1)  # odd: the band axis keeps its length
    encoder_lr_factor: list[float] = Field(default_factory=lambda: [1.0], min_length=1)

    @field_validator("spectral_kernel")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"spectral_kernel must be odd so the band axis keeps its length, got {value}")
        return value

    def options(self) -> AdapterOptions:
        return AdapterOptions(self.first_layers, self.lora_rank, self.lora_alpha, self.spectral_hidden,
                              self.spectral_kernel)  # fmt: skip

    def protocol_name(self, mode: str) -> str:
        return ADAPTERS[mode].protocol_name(self.options())


@PROTOCOLS.register("adapter")
class AdapterProtocol(TrainedProtocol):
    order = 3
    config: ClassVar = AdapterProtocolConfig

    def check(self, plan: Plan) -> None:
        super().check(plan)
        if not self.enabled:
            return
        if "lora" in self.section.modes and plan.encoder_name and not is_vision_transformer(plan.encoder_name):
            raise ConfigError(
                f"'adapter.modes' has 'lora', which needs attention blocks, but encoder '{plan.encoder_name}' is "
                "not a ViT (use 'spectral' or 'first-layers')"
            )
        if plan.fused:
            raise ConfigError(
                f"'adapter' protocols adapt one modality's encoder; 'modalities' has fused combinations "
                f"({', '.join('+'.join(c) for c in plan.fused)}): disable 'adapter' or evaluate single modalities"
            )

    def cells(self, scope: CellScope) -> list[Cell]:
        tasks, fractions = self.tasks(), self.fractions()
        names = [self.section.protocol_name(mode) for mode in self.section.modes]
        return [cell for name in names for cell in scope.cells(name, tasks=tasks, fractions=fractions)]

    def run(self, run: InitRun) -> None:
        for mode in self.section.modes:
            name = self.section.protocol_name(mode)
            train_and_test(run, name, mode, self.section, self.tasks(), self.fractions(), self.section.options())
