"""Task kinds, one file each, registered in :data:`eossl.evaluation.registry.TASK_KINDS` by the name of
the target kind they evaluate (see :class:`TaskKind`); a :class:`Task` is one declared target of a store
evaluated as its kind (:func:`eossl.evaluation.data.resolve_tasks` builds them from a store)."""

from eossl.evaluation.tasks._base import DenseOptions, Task, TaskKind, task_of_kind

__all__ = ["DenseOptions", "Task", "TaskKind", "task_of_kind"]
