"""OBJECTID's EMAILID and THREADID (RFC 8474) and PREVIEW (RFC 8970): per-message values that
delivery and APPEND put in the summary (mailpipe.mime.summary.object_fields), served from memory.

Messages stored before those fields existed have none; for them:

- EMAILID is "M" + a hash of the message's blob key: stable, as RFC 8474 5.1 requires, but not
  shared by the message's copies (each has a body of its own), which it allows;
- THREADID is computed from the header block (kept in the index: no S3 for most messages) by the
  same rule as at delivery (mailpipe.mime.threading), so it agrees with newer messages';
- PREVIEW is computed from the body; PREVIEW (LAZY) answers NIL instead (RFC 8970 3.1: the
  client asks again without LAZY when it wants it).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from mailpipe.mime.text_preview import preview_of
from mailpipe.mime.threading import thread_id
from mailpipe.store import StoredMessage
from mailpipe_gateway.imap import serializer
from mailpipe_gateway.imap.commands import FetchAttr, FetchItem

OBJECT_ATTRS = frozenset(("EMAILID", "THREADID", "PREVIEW", "PREVIEW.LAZY"))


def email_id(message: StoredMessage) -> str:
    stored = message.summary.get("email_id") if message.packed_summary else None
    if stored:
        return str(stored)
    digest = hashlib.sha256(message.blob_key.encode("utf-8")).digest()[:15]
    return "M" + base64.b32encode(digest).decode("ascii").lower()


def stored_thread_id(message: StoredMessage) -> str | None:
    stored = message.summary.get("thread_id") if message.packed_summary else None
    return str(stored) if stored else None


def object_id(kind: str, message: StoredMessage, header: Callable[[], bytes]) -> str:
    """EMAILID or THREADID of the message; ``header`` gives its header block (or whole bytes),
    called only for a THREADID not in the summary."""
    if kind == "EMAILID":
        return email_id(message)
    return stored_thread_id(message) or thread_id(header())


def bytes_needed(items: tuple[FetchItem, ...], message: StoredMessage) -> str | None:
    """What of the message rendering these items needs: "body" (a PREVIEW not stored),
    "header" (a THREADID not stored), or None."""
    names = {item.name for item in items if isinstance(item, FetchAttr)} & OBJECT_ATTRS
    if not names:
        return None
    summary = message.summary
    if "PREVIEW" in names and "preview" not in summary:
        return "body"
    if "THREADID" in names and not summary.get("thread_id"):
        return "header"
    return None


def render(
    name: str, message: StoredMessage, summary: Callable[[], dict[str, Any]], body: bytes | None
) -> bytes:
    """The value of one of OBJECT_ATTRS in a FETCH response."""
    if name == "EMAILID":
        return b"(" + email_id(message).encode("ascii") + b")"
    if name == "THREADID":
        if body is None and not stored_thread_id(message):
            return b"NIL"  # nothing to tell it from (the caller loads the header when it can)
        return b"(" + object_id("THREADID", message, lambda: body or b"").encode("ascii") + b")"
    stored = message.summary.get("preview")
    if stored is None and name == "PREVIEW" and body is not None:
        stored = preview_of(body, summary()["bodystructure"])
    if stored is None:
        return b"NIL"
    # Quoted when ASCII, else a literal: right whether or not the client enabled UTF8=ACCEPT.
    return serializer.string(str(stored).encode("utf-8"))
