"""Checking a login against the directory, behind the failed-login throttle: one way for every protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mailpipe.directory import Directory, User
from mailpipe_gateway.auth.sasl import Credentials
from mailpipe_gateway.auth.throttle import AuthThrottle

Runner = Callable[..., Awaitable[Any]]


class Throttled(Exception):
    """Too many failed logins for this user or from this address: the password was not checked."""


@dataclass(frozen=True)
class Logins:
    directory: Directory
    throttle: AuthThrottle
    # Runs the directory's check (an argon2id hash, tens of milliseconds) off the event loop.
    run: Runner

    async def check(self, credentials: Credentials, client: str, protocol: str) -> User | None:
        """The user, or None for wrong credentials (counted against the client and the user).

        Raises Throttled, without looking at the password, while the throttle holds.
        """
        user, password = credentials.user, credentials.password
        if not await self.throttle.admits(client, user, protocol, self._unlocked_at):
            raise Throttled(user)
        account = await self.run(self.directory.authenticate, user, password)
        if account is None:
            self.throttle.failed(client, user, protocol)
            return None
        self.throttle.succeeded(client, user)
        return account

    async def _unlocked_at(self, user: str) -> float | None:
        return await self.run(self.directory.unlocked_at, user)
