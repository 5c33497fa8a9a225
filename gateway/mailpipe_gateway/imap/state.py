"""What IMAP command handlers share: the session's state, its context, and how they answer."""

from __future__ import annotations

import enum
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mailpipe.auth.throttle import AuthThrottle
from mailpipe.changes.feed import ChangeFeed
from mailpipe.directory import Directory
from mailpipe.quota import DEFAULT_LIMIT, Quotas
from mailpipe.quota_cache import QuotaUsageCache
from mailpipe.store import MailboxSnapshots, MailMemory, MailStore
from mailpipe_gateway.imap.user_sessions import UserSessions
from mailpipe_gateway.imap.view import MailboxView
from mailpipe_gateway.imap.wakeups import Wakeups

DELIMITER = "/"
APPEND_LIMIT = 40 * 1024 * 1024  # the SMTP gateway's SIZE: what can arrive can be appended
AUTOLOGOUT_SECONDS = 30 * 60  # RFC 9051 5.4: at least 30 minutes outside IDLE
IDLE_KEEPALIVE_SECONDS = 2 * 60  # a network load balancer drops idle TCP at 350 s
IDLE_POLL_SECONDS = 0.5  # without a healthy change feed: new mail reaches an IDLE-ing client within 1 s
QUOTA_STORAGE_BYTES = DEFAULT_LIMIT  # what a user without a quota of their own may store (RFC 9208)


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass
class IMAPContext:
    """What every session of one IMAP server shares."""

    directory: Directory
    store: MailStore
    memory: MailMemory  # the mailboxes as this process knows them, shared by sessions (store/memory.py)
    throttle: AuthThrottle
    hostname: str
    tls_context: ssl.SSLContext | None
    run: Callable[..., Awaitable[Any]]  # runs a blocking store call off the event loop
    plaintext_loopback: bool = False
    autologout: float = AUTOLOGOUT_SECONDS
    idle_keepalive: float = IDLE_KEEPALIVE_SECONDS
    idle_poll: float = IDLE_POLL_SECONDS
    append_limit: int = APPEND_LIMIT
    quota_storage: int = QUOTA_STORAGE_BYTES
    user_sessions: UserSessions = field(default_factory=UserSessions.from_env)  # the per-user cap
    # The process's change feed (mailpipe.changes.feed), started and closed by whoever runs the
    # servers; None without a changes topic (then sessions poll the store). `memory` follows it.
    changes: ChangeFeed | None = None
    wakeups: Wakeups = field(default_factory=Wakeups)  # IDLE sessions woken by the change feed
    # APPEND's quota check: counted again only near the limit or after a minute (quota_cache.py)
    append_quota: QuotaUsageCache = field(init=False)

    observing: bool = field(init=False, default=False)  # memory wakes this context's sessions

    def __post_init__(self) -> None:
        self.open()
        self.append_quota = QuotaUsageCache(lambda owner: self.quotas.state(owner))

    def open(self) -> None:
        """Memory's changes wake this context's waiting sessions (from construction, or again after
        close)."""
        if not self.observing:
            self.memory.add_observer(self.wakeups.changed)
            self.observing = True

    def close(self) -> None:
        """The server stopped: memory (shared with the process's other servers, which may outlive
        this one) lets go of this context's wake-ups."""
        if self.observing:
            self.memory.remove_observer(self.wakeups.changed)
            self.observing = False

    @property
    def snapshots(self) -> MailboxSnapshots:
        return self.memory.snapshots

    @property
    def quotas(self) -> Quotas:
        # Usage from the mailbox items' running totals, read from the store: memory's items do
        # not follow the totals (a notice carries only the counters).
        return Quotas(self.directory, self.store, self.quota_storage)


class SessionEnded(Exception):
    """The client went away, or the session ended: handlers that catch failures let it through."""


@dataclass(frozen=True)
class Done:
    """A command's tagged completion: OK, NO or BAD, an optional response code, and text."""

    status: str = "OK"
    text: str = "completed"
    code: str | None = None


@dataclass(frozen=True)
class Entry:
    """How a command runs (imap/dispatch.py): its handler, called with the session and the command,
    and the states it is allowed in."""

    handler: Callable[[Any, Any], Awaitable[Done]]
    states: frozenset[State]


def no(text: str, code: str | None = None) -> Done:
    return Done("NO", text, code)


def bad(text: str, code: str | None = None) -> Done:
    return Done("BAD", text, code)


@dataclass
class SessionState:
    """The per-connection state command handlers read and change."""

    state: State = State.NOT_AUTHENTICATED
    user: str | None = None
    view: MailboxView | None = None
    enabled: set[str] = field(default_factory=set)
    saved_search: list[int] = field(default_factory=list)  # UIDs saved by SEARCH RETURN (SAVE)

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def utf8_accept(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled

    @property
    def utf8(self) -> bool:
        """Mailbox names and strings in UTF-8: UTF8=ACCEPT, or IMAP4rev2 which includes that much."""
        return self.utf8_accept or self.rev2
