"""How many IMAP sessions each user has logged in to this process, and how many they may.

Every session of a user costs the process its own polling (IDLE) and store reads: 150 IDLE
sessions of one user took the access gateway from 1% to 93% CPU and slowed everyone else's
commands tenfold. Dovecot caps this per user and address (``mail_max_userip_connections``,
10); here the cap is per user, whatever the address, so that a leaked password cannot be used
from many addresses at once either. Real clients open a handful: one per watched folder.
"""

from __future__ import annotations

import os
from collections import Counter

ENV = "MAILPIPE_IMAP_MAX_SESSIONS_PER_USER"
DEFAULT_LIMIT = 20


def limit_from_env(environ: dict[str, str] | None = None) -> int:
    """The cap from ``MAILPIPE_IMAP_MAX_SESSIONS_PER_USER`` (default 20); a bad value is an error."""
    env = os.environ if environ is None else environ
    value = env.get(ENV, "").strip()
    if not value:
        return DEFAULT_LIMIT
    limit = int(value)
    if limit < 1:
        raise ValueError(f"{ENV} must be at least 1, not {limit}")
    return limit


class UserSessions:
    """Counts the logged-in sessions per user of one process (the event loop's thread only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    @classmethod
    def from_env(cls) -> UserSessions:
        return cls(limit_from_env())

    def acquire(self, user: str) -> bool:
        """Count one more session of ``user``, unless it already has ``limit``."""
        if self._open[user] >= self.limit:
            return False
        self._open[user] += 1
        return True

    def release(self, user: str) -> None:
        self._open[user] -= 1
        if self._open[user] <= 0:
            del self._open[user]

    def count(self, user: str) -> int:
        return self._open[user]
