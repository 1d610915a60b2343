"""Full fine-tuning: every encoder weight trains, at ``encoder_lr_factor`` x the head's rate."""

from __future__ import annotations

from typing import ClassVar

from eossl.evaluation.context import InitRun
from eossl.evaluation.protocols._base import TrainedProtocol
from eossl.evaluation.protocols._trained import train_and_test
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.evaluation.registry import PROTOCOLS


class FinetuneProtocolConfig(TrainedProtocolConfig):
    """``finetune:``: on by default."""


@PROTOCOLS.register("finetune")
class FinetuneProtocol(TrainedProtocol):
    order = 4
    config: ClassVar = FinetuneProtocolConfig

    def run(self, run: InitRun) -> None:
        train_and_test(run, self.name, "full", self.section, self.tasks(), self.fractions())
