"""Frozen encoder + a trained head (pooled tasks) or decoder (dense tasks); encoder weights and
BatchNorm statistics stay fixed."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from eossl.evaluation.context import InitRun
from eossl.evaluation.protocols._base import TrainedProtocol
from eossl.evaluation.protocols._trained import train_and_test
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.evaluation.registry import PROTOCOLS


class FrozenProtocolConfig(TrainedProtocolConfig):
    """``frozen:``: off by default; the head trains at a higher rate than in fine-tuning."""

    enabled: bool = False
    lr: list[float] = Field(default_factory=lambda: [1e-2], min_length=1)


@PROTOCOLS.register("frozen")
class FrozenProtocol(TrainedProtocol):
    order = 2
    config: ClassVar = FrozenProtocolConfig

    def run(self, run: InitRun) -> None:
        train_and_test(run, self.name, "frozen", self.section, self.tasks(), self.fractions())
