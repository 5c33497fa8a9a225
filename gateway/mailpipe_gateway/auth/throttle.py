"""Failed-login throttling for the access gateways, per client address and per user.

One instance per process, shared by every protocol it serves (submission, IMAP, POP3): the
guesses an attacker gets for a user are the same whichever door they knock on. Counted per
process: with several instances an attacker gets a few more tries in all, still far too few
to guess a password.

Users are counted under the address the directory would check (see `login_key`), never
under the text the client sent: `CAROL@Example.Test.`, `<carol@example.test>` and
`carol+x@example.test` are all carol, or each spelling would get its own five guesses.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable

from mailpipe.addresses import MAX_ADDRESS_LENGTH, AddressError, parse_address

log = logging.getLogger(__name__)

MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60


def login_key(login: str) -> str:
    """The user a login names, spelt as the directory spells it, without any `+tag`.

    Purely syntactic, with no directory lookup: a user who does not exist is counted (and
    answered) exactly like one who does, so the throttle tells an attacker nothing about
    which users exist. A login that is no address at all can never succeed; it is counted
    under a bounded, printable form of itself.
    """
    try:
        return parse_address(login).base.text
    except AddressError:
        return printable(login.strip().lower()[:MAX_ADDRESS_LENGTH])


def printable(text: str) -> str:
    """`text` safe for one log line: no spaces or control characters a log parser could be fooled by."""
    return "".join(ch if ch.isprintable() and not ch.isspace() else f"\\x{ord(ch):02x}" for ch in text)


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

    def blocked(self, client: str, login: str, protocol: str) -> bool:
        """True (and logged) while too many recent failures came from `client` or for this user."""
        user = login_key(login)
        blocked = self._count("address", client) >= self._limits["address"] or (
            self._count("user", user) >= self._limits["user"]
        )
        if blocked:
            log.warning("auth throttled: client=%s protocol=%s user=%s", client, protocol, user)
        return blocked

    def failed(self, client: str, login: str, protocol: str) -> None:
        # One line per failure for fail2ban and the like. The client comes first: the user
        # part is the attacker's text, so a filter must find the client before it.
        user = login_key(login)
        log.warning("auth failed: client=%s protocol=%s user=%s", client, protocol, user)
        now = self._clock()
        self._failures[("address", client)].append(now)
        self._failures[("user", user)].append(now)

    def succeeded(self, client: str, login: str) -> None:
        self._failures.pop(("user", login_key(login)), None)

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
