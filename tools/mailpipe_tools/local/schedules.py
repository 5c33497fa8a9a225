"""EventBridge's `rate(...)` schedules, locally: call a function's handler at its rate.

The dev stack runs each scheduled function (today the prune function) once at start and then
every interval, as EventBridge would, with a scheduled event; a run that raises is logged and
the next one comes at its time, as on AWS.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from mailpipe_tools.local.functions import LocalFunction, LocalLambdaContext

log = logging.getLogger(__name__)


class ScheduledRuns:
    def __init__(self, function: LocalFunction, interval: float) -> None:
        self._function = function
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"schedule-{function.logical_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def run_once(self) -> None:
        event = {
            "version": "0",
            "source": "aws.events",
            "detail-type": "Scheduled Event",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "detail": {},
        }
        with self._function.invocation:
            self._function.handler(event, LocalLambdaContext(self._function.name, self._function.timeout))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("scheduled run of %s failed", self._function.logical_id)
            self._stop.wait(self._interval)
