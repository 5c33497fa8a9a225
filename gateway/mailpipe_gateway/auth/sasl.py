"""SASL as the gateways speak it (RFC 4422): base64 responses, PLAIN (RFC 4616) and LOGIN credentials.

The protocols differ only in how they carry a challenge and its response (SMTP `334`, IMAP and
POP3 `+`); what a response means is the same everywhere, and decoded here.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

# RFC 4422 3.5: a client answers a challenge with `*` to abort the exchange.
CANCEL = b"*"


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    @classmethod
    def from_bytes(cls, user: bytes, password: bytes) -> Credentials:
        # RFC 4616 says UTF-8; bytes that are not still reach the directory, which refuses them.
        return cls(user.decode("utf-8", "replace"), password.decode("utf-8", "replace"))


def decode_response(response: str | bytes) -> bytes | None:
    """A client's base64 response, or None when it is not base64 (strictly: no stray characters)."""
    try:
        return base64.b64decode(response.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def encode_challenge(challenge: str) -> bytes:
    return base64.b64encode(challenge.encode())


def plain_credentials(response: bytes) -> Credentials | None:
    """RFC 4616: `[authzid] NUL authcid NUL passwd`; None when malformed. The authzid is ignored:
    nobody may log in as someone else."""
    parts = response.split(b"\0")
    if len(parts) != 3:
        return None
    _authzid, user, password = parts
    return Credentials.from_bytes(user, password)
