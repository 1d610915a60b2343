"""An evaluation protocol: what is trained or fitted on top of an init's encoder, per task, label
fraction and seed. Each registers in :data:`eossl.evaluation.registry.PROTOCOLS` and owns the config
section named after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from eossl.errors import ConfigError
from eossl.evaluation.context import CellScope, InitRun
from eossl.evaluation.protocols._trained_config import ProtocolConfig, TrainedProtocolConfig
from eossl.evaluation.sink import Cell
from eossl.evaluation.tasks._base import Task

if TYPE_CHECKING:
    from eossl.evaluation.config import EvaluateBase


@dataclass(frozen=True)
class Plan:
    """What an evaluation will run, for the protocols' checks before any work: the config, the resolved
    tasks, the modality combinations, the encoder's timm name (None while a checkpoint decides it) and
    the combinations that are the two dates of a store pair (change detection)."""

    cfg: EvaluateBase
    tasks: list[Task]
    combos: list[tuple[str, ...]]
    encoder_name: str | None
    pairs: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def fused(self) -> list[tuple[str, ...]]:
        """Combinations of several modalities (the two dates of a pair are not: they are one sensor)."""
        return [c for c in self.combos if len(c) > 1 and c not in self.pairs]


class Protocol:
    """One protocol; ``order`` places it in reports, ``config`` is its section's model."""

    name: ClassVar[str]
    order: ClassVar[int]
    config: ClassVar[type[ProtocolConfig]] = ProtocolConfig
    needs_encoder: ClassVar[bool] = True  # False: works on any init's features (image statistics included)

    def __init__(self, section: ProtocolConfig, cfg: EvaluateBase) -> None:
        self.section, self.cfg = section, cfg

    @property
    def enabled(self) -> bool:
        return self.section.enabled

    def check(self, plan: Plan) -> None:
        """Raise a ConfigError naming the key when this protocol cannot run the plan."""

    def trains(self, plan: Plan) -> set[str]:
        """Names of the tasks whose heads or decoders this protocol trains (dense tasks need one)."""
        return set()

    def cells(self, scope: CellScope) -> list[Cell]:  # pragma: no cover - abstract
        """Every cell :meth:`run` measures for ``scope``'s init and setting, done or not (for resuming and
        progress); ``run`` goes through them with ``scope.runs(self.name, ...)`` of the same selection."""
        raise NotImplementedError

    def run(self, run: InitRun) -> None:  # pragma: no cover - abstract
        """Measure the cells of ``run`` not done yet (``run.runs`` skips the others and writes results)."""
        raise NotImplementedError


class TrainedProtocol(Protocol):
    """A protocol that trains a head (and the part of the encoder its modes allow) with gradient descent."""

    config: ClassVar[type[ProtocolConfig]] = TrainedProtocolConfig

    def tasks(self) -> list[str]:
        return list(self.section.tasks or self.cfg.tasks)

    def fractions(self) -> list[float]:
        return list(self.section.fractions or self.cfg.fractions)

    def check(self, plan: Plan) -> None:
        extra = set(self.section.tasks or []) - set(self.cfg.tasks)
        if extra:
            raise ConfigError(f"'{self.name}.tasks' lists {sorted(extra)}, which are not in 'tasks'")
        extra = set(self.section.fractions or []) - set(self.cfg.fractions)
        if extra:
            raise ConfigError(f"'{self.name}.fractions' lists {sorted(extra)}, which are not in 'fractions'")

    def trains(self, plan: Plan) -> set[str]:
        return set(self.tasks()) if self.enabled else set()

    def cells(self, scope: CellScope) -> list[Cell]:
        return scope.cells(self.name, tasks=self.tasks(), fractions=self.fractions())
