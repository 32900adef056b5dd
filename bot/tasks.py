"""Background work started after a Slack acknowledgement, tracked so shutdown can finish it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    """Keep a reference to every running task, log its failure, and wait for all on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run `work` as a task that lives until it finishes or `drain()` cancels it."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for running tasks, then cancel the rest."""
        if not self._tasks:
            return

        logger.info("tasks.draining", extra={"running": len(self._tasks), "timeout": timeout})
        done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            logger.warning("tasks.cancelled_at_shutdown", extra={"task": task.get_name()})
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        logger.info("tasks.drained", extra={"finished": len(done), "cancelled": len(pending)})

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return

        error = task.exception()
        if error is not None:
            logger.error("tasks.failed", extra={"task": task.get_name()}, exc_info=error)
