"""How long an event loop went without running its callbacks: the longest stall, measured.

A task sleeps ``interval`` again and again; whatever it wakes up late is time the loop spent on
something else without yielding (CPU work on the loop, a blocking call). The maximum is what
every other session on that loop waited at worst. Measured and reported, never asserted on: a
shared test machine's scheduling would make any bound flaky.
"""

from __future__ import annotations

import asyncio
import contextlib


class LoopLag:
    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.longest = 0.0  # seconds
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start measuring on the running loop (call it on the loop to be measured)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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
