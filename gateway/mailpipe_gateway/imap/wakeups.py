"""Waking the IMAP sessions that wait (IDLE) when their user's mailboxes change, instead of polling.

MailMemory tells its observers, on the change feed's thread, which users' mailboxes changed (or
that everything may have, when the feed's health changed). This hands that to the event loop with
call_soon_threadsafe and sets the event of every waiting session of those users: one handoff per
batch of notices, whatever the number of sessions, and no timer per session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict


class Wakeups:
    """Per-user events of the sessions waiting for changes; watch/unwatch on the event loop only."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def watch(self, user: str) -> asyncio.Event:
        """An event set when `user`'s mailboxes change; give it back with unwatch()."""
        self._loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._waiting[user].add(event)
        return event

    def unwatch(self, user: str, event: asyncio.Event) -> None:
        events = self._waiting.get(user)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiting[user]

    @property
    def waiting(self) -> int:
        """Sessions waiting now (each watch not yet unwatched)."""
        return sum(len(events) for events in self._waiting.values())

    def changed(self, users: set[str] | None) -> None:
        """From any thread: these users' mailboxes changed (None: anyone's may have)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(self._wake, users)

    def _wake(self, users: set[str] | None) -> None:
        chosen = self._waiting.keys() if users is None else users & self._waiting.keys()
        for user in list(chosen):
            for event in self._waiting[user]:
                event.set()
