"""The gateways' loop watch: a blocked event loop is measured and logged with its length."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from mailpipe_gateway.loop_watch import ENV_WARN_AFTER_MS, LoopWatch


def test_a_blocked_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> LoopWatch:
        watch = LoopWatch(warn_after=0.05)
        await watch.start()
        await asyncio.sleep(0.02)  # the watch is sleeping now: the next callback blocks it
        time.sleep(0.2)  # what a regex over hostile input, or a blocking call, does to every session
        await asyncio.sleep(0.02)
        await watch.stop()
        return watch

    with caplog.at_level(logging.WARNING, logger="mailpipe_gateway.loop_watch"):
        watch = asyncio.run(scenario())
    assert watch.longest >= 0.15
    assert any("event loop stalled for" in r.getMessage() for r in caplog.records)


def test_the_warning_threshold_comes_from_the_environment() -> None:
    assert LoopWatch.from_env({}).warn_after == 0.1
    assert LoopWatch.from_env({ENV_WARN_AFTER_MS: "250"}).warn_after == 0.25
    assert LoopWatch.from_env({ENV_WARN_AFTER_MS: "0"}).warn_after is None  # 0 turns the log off
