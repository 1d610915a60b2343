"""Evaluation: task kinds x protocols x inits x label fractions x seeds on a store's declared targets.

``PROTOCOLS``, ``INITS`` and ``TASK_KINDS`` are the registries (one file per unit in
``eossl.evaluation.protocols``, ``.inits`` and ``.tasks``); :func:`eossl.evaluation.runner.run_evaluate`
runs an :class:`eossl.evaluation.config.EvaluateConfig`.
"""

from eossl.evaluation.registry import INITS, PROTOCOLS, TASK_KINDS

__all__ = ["INITS", "PROTOCOLS", "TASK_KINDS"]
