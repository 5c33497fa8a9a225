"""Failed-login throttling, per (user, client address) and per address: the access gateways' and JMAP's.

One instance per process, shared by every protocol it serves (submission, IMAP, POP3, JMAP): the
guesses an attacker gets for a user are the same whichever door they knock on. Counted per
process: with several instances an attacker gets a few more tries in all, still far too few
to guess a password.

A user's failures count per client address: five wrong passwords from an attacker's address
hold that address back for that user, never the real user elsewhere. Each address also has a
budget across all users (MAX_FAILURES_PER_ADDRESS), against one address trying many users.
Spread over many addresses, an attacker gets five guesses per address and user per window.

Users are counted under the address the directory would check (see `login_key`), never
under the text the client sent: `CAROL@Example.Test.`, `<carol@example.test>` and
`carol+x@example.test` are all carol, or each spelling would get its own five guesses.

`mailpipe user unlock` cannot reach into running gateways: it writes the time into the
directory, and a gateway holding a user back reads it (one GetItem, and only then) and
forgets that user's failures from before it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable

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


UnlockedAt = Callable[[str], Awaitable[float | None]]


class AuthThrottle:
    def __init__(
        self,
        max_per_user: int = MAX_FAILURES_PER_USER,
        max_per_address: int = MAX_FAILURES_PER_ADDRESS,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,  # wall clock: compared with `mailpipe user unlock`'s
    ) -> None:
        self._max_per_user = max_per_user
        self._max_per_address = max_per_address
        self._window = window
        self._clock = clock
        self._by_address: dict[str, deque[float]] = defaultdict(deque)
        self._by_user: dict[str, dict[str, deque[float]]] = defaultdict(lambda: defaultdict(deque))

    async def admits(self, client: str, login: str, protocol: str, unlocked_at: UnlockedAt) -> bool:
        """Whether to check the password: not while too many recent failures came from `client`,
        or from it for this user, unless the user was unlocked (`mailpipe user unlock`) since.
        A refusal is logged."""
        user = login_key(login)
        if self._address_held(client):
            self._log_refusal(client, protocol, user)
            return False
        if self._user_held(user, client):
            self._forget_before(user, await unlocked_at(user))
            return self._still_admits(client, protocol, user)
        return True

    def admits_now(
        self, client: str, login: str, protocol: str, unlocked_at: Callable[[str], float | None]
    ) -> bool:
        """`admits` for a caller with no event loop (the JMAP function): the same decision."""
        user = login_key(login)
        if self._address_held(client):
            self._log_refusal(client, protocol, user)
            return False
        if self._user_held(user, client):
            self._forget_before(user, unlocked_at(user))
            return self._still_admits(client, protocol, user)
        return True

    def _still_admits(self, client: str, protocol: str, user: str) -> bool:
        if self._user_held(user, client):
            self._log_refusal(client, protocol, user)
            return False
        return True

    def failed(self, client: str, login: str, protocol: str) -> None:
        # One line per failure for fail2ban and the like. The client comes first: the user
        # part is the attacker's text, so a filter must find the client before it.
        user = login_key(login)
        log.warning("auth failed: client=%s protocol=%s user=%s", client, protocol, user)
        now = self._clock()
        self._by_address[client].append(now)
        self._by_user[user][client].append(now)

    def succeeded(self, client: str, login: str) -> None:
        user = login_key(login)
        clients = self._by_user.get(user)
        if clients is not None:
            clients.pop(client, None)
            if not clients:
                del self._by_user[user]

    def _log_refusal(self, client: str, protocol: str, user: str) -> None:
        log.warning("auth throttled: client=%s protocol=%s user=%s", client, protocol, user)

    def _address_held(self, client: str) -> bool:
        return self._recent(self._by_address, client) >= self._max_per_address

    def _user_held(self, user: str, client: str) -> bool:
        clients = self._by_user.get(user)
        if clients is None:
            return False
        held = self._recent(clients, client) >= self._max_per_user
        if not clients:
            del self._by_user[user]
        return held

    def _forget_before(self, user: str, unlocked_at: float | None) -> None:
        if unlocked_at is None or user not in self._by_user:
            return
        clients = self._by_user[user]
        forgotten = 0
        for client, failures in list(clients.items()):
            while failures and failures[0] <= unlocked_at:
                failures.popleft()
                forgotten += 1
            if not failures:
                del clients[client]
        if not clients:
            del self._by_user[user]
        if forgotten:
            log.warning("auth unlocked: user=%s forgotten=%d", user, forgotten)

    def _recent(self, failures_by_key: dict[str, deque[float]], key: str) -> int:
        """How many failures under `key` are within the window; drops older ones (and empty keys)."""
        failures = failures_by_key.get(key)
        if not failures:
            return 0
        horizon = self._clock() - self._window
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del failures_by_key[key]
        return len(failures)
