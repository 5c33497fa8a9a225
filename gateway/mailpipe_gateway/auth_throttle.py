"""Failed-login throttling for the access gateways, per client address and per user.

Counted per gateway process: with several instances an attacker gets a few more tries
in all, still far too few to guess a password.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60


class AuthThrottle:
    def __init__(
        self,
        max_per_user: int = MAX_FAILURES_PER_USER,
        max_per_address: int = MAX_FAILURES_PER_ADDRESS,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"user": max_per_user, "address": max_per_address}
        self._window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def blocked(self, address: str, user: str) -> bool:
        """True while too many recent failures came from this address or for this user."""
        return self._count("address", address) >= self._limits["address"] or (
            self._count("user", user.lower()) >= self._limits["user"]
        )

    def failed(self, address: str, user: str) -> None:
        now = self._clock()
        self._failures[("address", address)].append(now)
        self._failures[("user", user.lower())].append(now)

    def succeeded(self, address: str, user: str) -> None:
        self._failures.pop(("user", user.lower()), None)

    def _count(self, kind: str, key: str) -> int:
        failures = self._failures.get((kind, key))
        if not failures:
            return 0
        horizon = self._clock() - self._window
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[(kind, key)]
        return len(failures)
