"""Tasks of the shared trainer: ``build_task(cfg.task)`` picks the implementation by ``task.source``.

``Task`` and ``Metrics`` are imported on first use, so light tools (``python -m bora.score``, which needs only
``bora.tasks.answers``) start without loading torch, transformers and datasets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bora.errors import BoraError

if TYPE_CHECKING:
    from bora.tasks.base import Task

SOURCES = ("glue", "llm_adapters")


def build_task(task_cfg) -> Task:
    if task_cfg.source == "glue":
        from bora.tasks.glue import GlueTask

        return GlueTask(task_cfg)
    if task_cfg.source == "llm_adapters":
        from bora.tasks.llm_adapters import ReasoningTask

        return ReasoningTask(task_cfg)
    raise BoraError(f"task.source={task_cfg.source!r}: use one of {', '.join(SOURCES)}")


def __getattr__(name: str):
    if name in ("Metrics", "Task"):
        from bora.tasks import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Metrics", "Task", "build_task"]
