"""The evaluation's registries: task kinds, protocols and inits, each unit one file in its package.

- :data:`TASK_KINDS` (``eossl.evaluation.tasks``): what a head predicts for a declared target kind
  (single-label, multi-label, segmentation, regression, pixel-regression): its loss, metrics, primary
  metric and how label fractions are stratified.
- :data:`PROTOCOLS` (``eossl.evaluation.protocols``): kNN, linear probe, frozen, fine-tuning, the
  adapters and multi-task learning; each owns its config section (``knn:``, ``linear:``, ...).
- :data:`INITS` (``eossl.evaluation.inits``): the encoder initialisations compared (checkpoint, random,
  external weights, image statistics).
"""

from __future__ import annotations

from eossl.registry import Registry

TASK_KINDS: Registry = Registry("task kind", packages=("eossl.evaluation.tasks",))
PROTOCOLS: Registry = Registry("protocol", packages=("eossl.evaluation.protocols",))
INITS: Registry = Registry("init", packages=("eossl.evaluation.inits",))


def protocol_rank(protocol: str) -> int:
    """Report order of a protocol as it appears in results (``adapter-spectral`` -> the adapter
    protocol's ``order``); unknown protocols go last."""
    for cls in PROTOCOLS.values():
        if protocol == cls.name or protocol.startswith(f"{cls.name}-"):
            return cls.order
    return len(PROTOCOLS) + 100


def baseline_inits() -> tuple[str, ...]:
    """The init names reported as baselines (random, image statistics, external weights)."""
    return tuple(name for name, cls in INITS.items() if cls.baseline)


def kind_order(kind: str) -> int:
    """Report order of a task kind (unknown kinds last)."""
    cls = TASK_KINDS.get(kind)
    return cls.order if cls is not None else 100
