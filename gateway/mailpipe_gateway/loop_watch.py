"""How long the event loop went without running its callbacks: every session on it waited that long.

A task sleeps `interval` again and again; whatever it wakes up late is time the loop spent on
something else without yielding (CPU work on the loop, a blocking call, or waiting for the GIL
held by other threads of the process). The gateways run one in production and log each stall
longer than `warn_after`, so that a command or input that blocks the loop shows in the logs
with its time; the hostile benches read the longest stall from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

ENV_WARN_AFTER_MS = "MAILPIPE_LOOP_STALL_WARNING_MS"
DEFAULT_WARN_AFTER = 0.1  # the stall the hardening issue allows while a fuzzer runs


class LoopWatch:
    def __init__(self, interval: float = 0.005, warn_after: float | None = None) -> None:
        self.interval = interval
        self.warn_after = warn_after
        self.longest = 0.0  # seconds, since the last reset
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LoopWatch:
        env = os.environ if environ is None else environ
        warn_ms = float(env.get(ENV_WARN_AFTER_MS, DEFAULT_WARN_AFTER * 1000))
        return cls(warn_after=warn_ms / 1000 if warn_ms > 0 else None)

    async def start(self) -> None:
        """Start watching the running loop (call it on the loop to be watched)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def reset(self) -> None:
        self.longest, self.samples = 0.0, 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            late = loop.time() - before - self.interval
            self.samples += 1
            self.longest = max(self.longest, late)
            if self.warn_after is not None and late > self.warn_after:
                log.warning("event loop stalled for %.0f ms", late * 1000)
