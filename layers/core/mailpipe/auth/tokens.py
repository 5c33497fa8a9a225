"""Session tokens: what a webmail keeps instead of the password (POST /jmap/login).

A token is 32 random bytes (base64url); the JMAP table keeps only its SHA-256, so a copy of the
table signs no one in. Each token item holds its owner and a digest of the password hash the
login was verified against, and `expires` (DynamoDB's TTL attribute). A token is good while:

- it has not expired (checked here too: TTL deletion runs late, up to days),
- its owner still exists, is enabled, and has the same password hash: `mailpipe user passwd`
  (a fresh salt every time), `disable` and `del` therefore revoke every token of the user at
  once, without the CLI knowing of tokens; the user's directory item is read at each use anyway,
- it was not deleted by POST /jmap/logout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from mailpipe.directory import Directory, StoredLogin

TOKEN_BYTES = 32
DEFAULT_LIFETIME = 7 * 24 * 3600  # a week: a webmail left open signs in again after that
_PREFIX = "token#"
_SK = "token"


def login_digest(stored: StoredLogin) -> str:
    """Names the password hash (and so the password's version) without revealing it."""
    return hashlib.sha256(stored.password_hash.encode()).hexdigest()[:32]


class SessionTokens:
    def __init__(
        self,
        table: Any,
        directory: Directory,
        lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._directory = directory
        self.lifetime = lifetime
        self._clock = clock

    def issue(self, stored: StoredLogin) -> str:
        """A new token for a login whose password was just verified against `stored`."""
        token = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode()
        self._table.put_item(
            Item={
                "pk": _key(token),
                "sk": _SK,
                "owner": stored.address.text,
                "login": login_digest(stored),
                "expires": Decimal(int(self._clock() + self.lifetime)),
            }
        )
        return token

    def owner(self, token: str) -> str | None:
        """The address the token signs in, or None (unknown, expired, revoked, or malformed)."""
        key = token_key(token)
        return self.owner_by_key(key) if key else None

    def owner_by_key(self, key: str) -> str | None:
        """As owner(), for a token known by its key only (a WebSocket connection keeps that, not
        the token, to check at each frame that the token it signed in with still holds)."""
        item = self._table.get_item(Key={"pk": key, "sk": _SK}, ConsistentRead=True).get("Item")
        if item is None or float(item.get("expires", 0)) <= self._clock():
            return None
        stored = self._directory.stored_login(str(item["owner"]))
        if (
            stored is None
            or stored.disabled
            or not hmac.compare_digest(login_digest(stored), str(item["login"]))
        ):
            return None
        return stored.address.text

    def revoke(self, token: str) -> None:
        if 20 <= len(token) <= 100:
            self._table.delete_item(Key={"pk": _key(token), "sk": _SK})


def token_key(token: str) -> str | None:
    """The table key a token is kept under (from its SHA-256), or None for a malformed token."""
    return _key(token) if 20 <= len(token) <= 100 else None


def _key(token: str) -> str:
    return _PREFIX + hashlib.sha256(token.encode()).hexdigest()
