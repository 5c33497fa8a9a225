"""Verified credentials, remembered for a few minutes so that a login does not cost an argon2id hash each.

Dovecot's `auth_cache` does the same: a client that logs in every minute (or a webmail that
logs in at every page) would otherwise pay ~0.1 s of CPU and 64 MiB each time.

- Keyed by HMAC-SHA256(user, password) under a key made at random when the process starts:
  the cache holds no password, and its keys are worthless outside the process.
- Only a right password is remembered (Logins.check calls `remember` after a successful
  check); a wrong one always goes to argon2id and to the throttle.
- Each entry remembers a digest of the password hash it was verified against. The directory
  item is read at every login anyway (enabled? exists?); a hit needs that read to show the same
  hash and an enabled user. `mailpipe user passwd` writes a new hash (a fresh salt, even for the
  same password), `disable` sets the flag and `del` removes the item, all from another process:
  the next login of that user here misses, at once, with no message between processes.
- TTL (MAILPIPE_AUTH_CACHE_TTL, seconds; 0 turns the cache off) and size
  (MAILPIPE_AUTH_CACHE_SIZE entries, least recently used dropped first) bound how long and how
  much. The throttle is asked before the cache: a throttled user is refused even when cached.

One per process (`shared_cache`), shared by submission, IMAP and POP3, whose servers may run on
event loops of their own (the dev stack's tests): its few dictionary operations hold a lock.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mailpipe.directory import StoredLogin, User

ENV_TTL = "MAILPIPE_AUTH_CACHE_TTL"
ENV_SIZE = "MAILPIPE_AUTH_CACHE_SIZE"
# Dovecot's auth_cache_ttl is an hour; a password change is seen at once here anyway.
DEFAULT_TTL_SECONDS = 300.0
DEFAULT_SIZE = 10_000  # ~200 bytes an entry: 2 MB at most


@dataclass(frozen=True)
class _Entry:
    hash_digest: bytes  # of the password hash the password was verified against
    expires: float


class VerifiedCredentials:
    def __init__(
        self,
        ttl: float = DEFAULT_TTL_SECONDS,
        size: int = DEFAULT_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_env(cls) -> VerifiedCredentials:
        return cls(
            ttl=float(os.environ.get(ENV_TTL) or DEFAULT_TTL_SECONDS),
            size=int(os.environ.get(ENV_SIZE) or DEFAULT_SIZE),
        )

    def __len__(self) -> int:
        return len(self._entries)

    def verified(self, stored: StoredLogin | None, password: str) -> User | None:
        """The user, if `password` was verified against `stored` (as just read) within the TTL."""
        if stored is None or stored.disabled or self.ttl <= 0:
            return None
        key = self._entry_key(stored, password)
        digest = self._digest(stored.password_hash)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (
                entry.expires <= self._clock() or not hmac.compare_digest(entry.hash_digest, digest)
            ):
                del self._entries[key]  # expired, or the password changed (or the user was made again)
                entry = None
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return User(stored.address.text)

    def remember(self, stored: StoredLogin, password: str) -> None:
        """Call only once `password` has been verified against `stored`."""
        if self.ttl <= 0 or self.size <= 0:
            return
        key = self._entry_key(stored, password)
        entry = _Entry(self._digest(stored.password_hash), self._clock() + self.ttl)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def _entry_key(self, stored: StoredLogin, password: str) -> bytes:
        user = stored.address.text.encode()
        # Length-prefixed: no (user, password) pair can be spelt as another.
        message = len(user).to_bytes(4, "big") + user + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _digest(self, password_hash: str) -> bytes:
        return hmac.new(self._key, password_hash.encode(), hashlib.sha256).digest()[:16]


_shared: VerifiedCredentials | None = None


def shared_cache() -> VerifiedCredentials:
    """The process's cache, made from the environment on first use."""
    global _shared
    if _shared is None:
        _shared = VerifiedCredentials.from_env()
    return _shared
