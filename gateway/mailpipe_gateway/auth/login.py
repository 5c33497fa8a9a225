"""Checking a login against the directory, behind the failed-login throttle: one way for every protocol."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mailpipe.auth.cache import VerifiedCredentials, shared_cache
from mailpipe.auth.throttle import AuthThrottle
from mailpipe.directory import Directory, User
from mailpipe_gateway.auth.sasl import Credentials

Runner = Callable[..., Awaitable[Any]]

ENV_CONCURRENT_CHECKS = "MAILPIPE_CONCURRENT_PASSWORD_CHECKS"
# Password checks at once in one process. Each argon2id check takes 64 MiB and a core for tens of
# milliseconds: a login flood (1,000 connections may be open before login) must queue here rather
# than take every executor thread, gigabytes of memory and the CPU the event loop needs. Dovecot
# checks them one at a time in its auth process; one core is left to the sessions.
CONCURRENT_CHECKS = int(os.environ.get(ENV_CONCURRENT_CHECKS, "0")) or max(1, (os.cpu_count() or 2) - 1)

_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _gate() -> asyncio.Semaphore:
    """The process's bound on password checks, for the running loop (a semaphore serves one loop)."""
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(CONCURRENT_CHECKS)
    return gate


class Throttled(Exception):
    """Too many failed logins for this user or from this address: the password was not checked."""


@dataclass(frozen=True)
class Logins:
    directory: Directory
    throttle: AuthThrottle
    # Runs the directory's read and check (an argon2id hash, tens of milliseconds) off the event loop.
    run: Runner
    # Passwords verified lately, so that logging in again costs no hash (auth/cache.py).
    cache: VerifiedCredentials = field(default_factory=shared_cache)

    async def check(self, credentials: Credentials, client: str, protocol: str) -> User | None:
        """The user, or None for wrong credentials (counted against the client and the user).

        Raises Throttled, without looking at the password, while the throttle holds.
        """
        user, password = credentials.user, credentials.password
        if not await self.throttle.admits(client, user, protocol, self._unlocked_at):
            raise Throttled(user)
        # Read at every login, cached or not: it is what tells a cached verification that the
        # password, or the account, changed since (passwd, disable and del in another process).
        stored = await self.run(self.directory.stored_login, user)
        account = self.cache.verified(stored, password)
        if account is None:
            async with _gate():
                account = await self.run(self.directory.check_password, stored, password)
            if account is None:
                self.throttle.failed(client, user, protocol)
                return None
            if stored is not None:  # always so: check_password finds no user without one
                self.cache.remember(stored, password)
        self.throttle.succeeded(client, user)
        return account

    async def _unlocked_at(self, user: str) -> float | None:
        return await self.run(self.directory.unlocked_at, user)
