"""Who a JMAP request is: HTTP Basic against the directory, or a session token (Bearer).

Basic goes the gateways' way (mailpipe/auth/): the failed-login throttle is asked first, then the
directory item is read, then the verified-credentials cache spares the argon2id check a password
verified lately (a warm Lambda environment keeps it across requests), and only a miss pays the
hash. A token (auth/tokens.py, issued by POST /jmap/login after the same password check) costs a
GetItem of the token and one of the user, never a hash, and is not throttled: it is 256 random
bits, not a guess at a password.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from mailpipe.auth.cache import VerifiedCredentials, shared_cache
from mailpipe.auth.throttle import printable
from mailpipe.auth.tokens import SessionTokens
from mailpipe.directory import Directory, StoredLogin

log = logging.getLogger(__name__)

PROTOCOL = "jmap"
# argon2id checks at once in one process (64 MiB and a core each): a Lambda environment runs one
# request at a time anyway, but the local server runs a thread per request, and a flood of wrong
# passwords must queue here rather than take every core and gigabytes (as the gateways' login.py).
_CHECKS = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2) - 1))


class Throttle(Protocol):
    """auth/throttle.py's AuthThrottle (in memory) or auth/stored_throttle.py's (in the JMAP table)."""

    def admits_now(
        self, client: str, login: str, protocol: str, unlocked_at: Callable[[str], float | None]
    ) -> bool: ...
    def failed(self, client: str, login: str, protocol: str) -> None: ...
    def succeeded(self, client: str, login: str) -> None: ...


class Throttled(Exception):
    """Too many failed logins for this user from this address, or from this address: not checked."""


@dataclass
class JmapAuth:
    directory: Directory
    throttle: Throttle
    tokens: SessionTokens | None = None  # None: Basic only (no JMAP table configured)
    cache: VerifiedCredentials = field(default_factory=shared_cache)

    def password(self, user: str, password: str, client: str) -> str | None:
        """The address, if the password is right; raises Throttled without checking it."""
        stored = self._verified(user, password, client)
        return stored.address.text if stored else None

    def login(self, user: str, password: str, client: str) -> str | None:
        """A new session token, if the password is right (POST /jmap/login); raises Throttled."""
        stored = self._verified(user, password, client)
        if stored is None or self.tokens is None:
            return None
        # Bound to the hash the password was verified against: a passwd meanwhile revokes it.
        return self.tokens.issue(stored)

    def logout(self, token: str) -> None:
        if self.tokens is not None:
            self.tokens.revoke(token)

    def _verified(self, user: str, password: str, client: str) -> StoredLogin | None:
        if not user or len(user) > 1000 or len(password) > 1000:
            return None
        if not self.throttle.admits_now(client or "-", user, PROTOCOL, self.directory.unlocked_at):
            raise Throttled(user)
        stored = self.directory.stored_login(user)
        if stored is not None and self.cache.verified(stored, password) is not None:
            return stored
        with _CHECKS:
            account = self.directory.check_password(stored, password)
        if account is None or stored is None:
            self.throttle.failed(client or "-", user, PROTOCOL)
            return None
        self.cache.remember(stored, password)
        self.throttle.succeeded(client or "-", user)
        return stored

    def authorization(self, header: str, client: str) -> str | None:
        """The address an Authorization header signs in (Basic or Bearer); raises Throttled."""
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            return self.token(credentials.strip())
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            log.info("jmap: malformed Basic credentials from %s", printable(client or "?"))
            return None
        if not sep:
            return None
        return self.password(user, password, client)

    def token(self, token: str) -> str | None:
        return self.tokens.owner(token) if self.tokens and token else None

    def token_by_key(self, key: str) -> str | None:
        """The owner of the token kept under `key` (auth/tokens.py token_key), if it still holds."""
        return self.tokens.owner_by_key(key) if self.tokens and key else None
