"""Checks of an evaluation plan before any work: every key that cannot be served fails here, by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eossl.errors import ConfigError
from eossl.evaluation.protocols._base import Plan, Protocol
from eossl.evaluation.registry import PROTOCOLS

if TYPE_CHECKING:
    from eossl.evaluation.config import EvaluateBase
    from eossl.evaluation.data import EvalData


def enabled_protocols(cfg: EvaluateBase) -> list[Protocol]:
    """The enabled protocols, each built with its config section, in report order."""
    protocols = [cls(cfg.section(cls), cfg) for cls in PROTOCOLS.values()]
    return sorted((p for p in protocols if p.enabled), key=lambda p: p.order)


def check_plan(cfg: EvaluateBase, data: EvalData, encoder_name: str | None) -> list[Protocol]:
    """Fail before any training on settings that cannot run (``encoder_name`` None: not known yet, because
    a checkpoint decides the architecture); return the enabled protocols."""
    tasks = data.tasks
    plan = Plan(cfg, tasks, data.combos, encoder_name, list(data.pairs))
    protocols = enabled_protocols(cfg)
    for protocol in protocols:
        protocol.check(plan)
    if plan.fused and not cfg.fusion.modes:
        raise ConfigError("'fusion.modes' is empty but 'modalities' has combinations of several modalities")
    named = {m for c in plan.combos for m in c}
    unknown_missing = sorted(set(cfg.fusion.missing_at_test) - named)
    if unknown_missing:
        raise ConfigError(f"'fusion.missing_at_test' lists {unknown_missing}, which no evaluated combination has")
    covered = set().union(*(p.trains(plan) for p in protocols))
    for task in tasks:
        if task.dense and task.name not in covered:
            trained = ", ".join(p.name for p in PROTOCOLS.values() if p.needs_encoder)
            raise ConfigError(
                f"task '{task.name}' is dense ({task.kind.name}): enable a trained protocol for it ({trained}); "
                "linear and knn work on pooled features only"
            )
    return protocols
