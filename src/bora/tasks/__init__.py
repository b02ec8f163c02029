"""Tasks of the shared trainer: ``build_task(cfg.task)`` picks the implementation by ``task.source``."""

from __future__ import annotations

from bora.errors import BoraError
from bora.tasks.base import Metrics, Task

SOURCES = ("glue", "llm_adapters")


def build_task(task_cfg) -> Task:
    if task_cfg.source == "glue":
        from bora.tasks.glue import GlueTask

        return GlueTask(task_cfg)
    if task_cfg.source == "llm_adapters":
        from bora.tasks.llm_adapters import ReasoningTask

        return ReasoningTask(task_cfg)
    raise BoraError(f"task.source={task_cfg.source!r}: use one of {', '.join(SOURCES)}")


__all__ = ["Metrics", "Task", "build_task"]
