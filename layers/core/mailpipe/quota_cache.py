"""APPEND's quota check without counting the user's mail every time (issue 14).

Counting usage lists every mailbox of the user (quota.Quotas.usage): a dozen requests and a sum
over every message, which was most of what an APPEND cost. Far from the limit that exactness buys
nothing, so a process keeps each user's state as last counted, adds what it appends itself, and
counts again only when the state is older than `ttl` or when the message would bring the use
within `margin` of the limit: near the limit the check is exact, as before. What other processes
store meanwhile (deliveries, another gateway) is missed for at most `ttl` seconds, and only while
the user is further than the margin from the limit; delivery enforces the quota on its own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from mailpipe.quota import QuotaState

TTL_SECONDS = 60.0
MARGIN_FRACTION = 0.10
REMEMBERED_USERS = 10_000


class QuotaUsageCache:
    def __init__(
        self,
        count: Callable[[str], QuotaState],
        *,
        ttl: float = TTL_SECONDS,
        margin: float = MARGIN_FRACTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count  # Quotas.state: exact, and costly
        self._ttl = ttl
        self._margin = margin
        self._clock = clock
        self._states: OrderedDict[str, tuple[float, QuotaState]] = OrderedDict()
        self._lock = threading.Lock()

    def fits(self, owner: str, size: int) -> bool:
        """Whether `size` more octets keep `owner` within the limit (exact whenever it is close)."""
        known = self.fits_as_known(owner, size)
        return known if known is not None else self._recount(owner).fits(size)

    def fits_as_known(self, owner: str, size: int) -> bool | None:
        """fits() when it needs no count (no request: the caller may ask on its event loop);
        None when it does (no state, a stale one, or near the limit)."""
        state = self._fresh(owner)
        if state is None or state.used + size > state.limit - int(state.limit * self._margin):
            return None
        return True

    def added(self, owner: str, size: int) -> None:
        """This process stored `size` more octets for `owner`."""
        with self._lock:
            entry = self._states.get(owner)
            if entry is not None:
                self._states[owner] = (entry[0], replace(entry[1], used=entry[1].used + size))

    def _fresh(self, owner: str) -> QuotaState | None:
        with self._lock:
            entry = self._states.get(owner)
        if entry is None or self._clock() - entry[0] > self._ttl:
            return None
        return entry[1]

    def _recount(self, owner: str) -> QuotaState:
        counted_at = self._clock()
        state = self._count(owner)
        with self._lock:
            self._states[owner] = (counted_at, state)
            self._states.move_to_end(owner)
            while len(self._states) > REMEMBERED_USERS:
                self._states.popitem(last=False)
        return state
