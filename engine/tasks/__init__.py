"""TASKS: the segmentation tasks, the only place that knows how instance and semantic models differ.

`TASKS[spec.task]` (or `task_of(spec)`, which names the model in its error) gives the trainer, the
Predictor, segment_raster, the CLI and scripts/ship_model.py everything task-specific (engine.tasks.base).
"""
from __future__ import annotations

from engine.errors import UserError
from engine.spec import ModelSpec
from engine.tasks.base import Task
from engine.tasks.instance import InstanceTask
from engine.tasks.semantic import SemanticTask

TASKS: dict[str, Task] = {"instance": InstanceTask(), "semantic": SemanticTask()}


def task_of(spec: ModelSpec) -> Task:
    """The Task of `spec.task`; UserError naming the model and the known tasks otherwise."""
    try:
        return TASKS[spec.task]
    except KeyError:
        raise UserError(f"model '{spec.name}': unknown task '{spec.task}' in its spec; known tasks: "
                        f"{', '.join(TASKS)}") from None


__all__ = ["TASKS", "Task", "task_of"]
