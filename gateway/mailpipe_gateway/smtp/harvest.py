"""Rejected recipients per client address: a directory harvest is many guesses from one place.

Each RCPT for an unknown address costs a call of the validation function; past the limit a
client address gets a temporary failure without that call until its window has passed. Counted
per gateway process, like the connection limits.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from mailpipe_gateway.connection_limits import DEFAULT_EXEMPT, is_exempt, networks

DEFAULT_MAX_REJECTED = 100
DEFAULT_WINDOW = 600.0
# Beyond this many client addresses tracked, those with nothing recent are forgotten.
SWEEP_AT = 10_000


class RejectionLimiter:
    def __init__(
        self,
        max_rejected: int = DEFAULT_MAX_REJECTED,
        window: float = DEFAULT_WINDOW,
        exempt: Iterable[str] = DEFAULT_EXEMPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_rejected
        self._window = window
        self._exempt = networks(exempt)
        self._clock = clock
        # At most the last `max_rejected` rejections per address: enough to tell if it is over.
        self._rejected: dict[str, deque[float]] = {}
        self._sweep_at = SWEEP_AT

    def blocked(self, ip: str) -> bool:
        """True while `ip` has had `max_rejected` recipients refused within the window."""
        times = self._rejected.get(ip)
        if times is None or len(times) < self._max:
            return False
        return times[0] > self._clock() - self._window

    def rejected(self, ip: str) -> None:
        if is_exempt(ip, self._exempt):
            return
        if ip not in self._rejected and len(self._rejected) >= self._sweep_at:
            self._sweep()
        self._rejected.setdefault(ip, deque(maxlen=self._max)).append(self._clock())

    def _sweep(self) -> None:
        horizon = self._clock() - self._window
        for ip in [ip for ip, times in self._rejected.items() if times[-1] <= horizon]:
            del self._rejected[ip]
        # Many addresses all active: sweep again only when the table has doubled (linear overall).
        self._sweep_at = max(SWEEP_AT, 2 * len(self._rejected))
