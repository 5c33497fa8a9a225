"""A message's thread, told from its own header alone: IMAP OBJECTID's THREADID and JMAP's threadId.

A stateless rule, so that any process computes the same id at delivery, APPEND or later, without
looking at other messages: the thread's root is the first Message-ID in References (RFC 5322
3.6.4: the first is the thread's start), else the first in In-Reply-To, else the message's own
Message-ID, else, for a message without any, a hash of its header block (a thread of its own).
``thread_id`` hashes that root into a short id, stored in the message's summary
(``summary["thread_id"]``).

What this cannot do, unlike RFC 5256 REFERENCES threading over a whole mailbox: join a reply
whose References were cut by its client to the thread it answers, or split a thread whose root
id is reused. Replies from ordinary clients carry the full References chain, and then the rule
agrees with the mailbox-wide algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from mailpipe.mime.headers import header_fields
from mailpipe.mime.offsets import scan_header

_MSG_ID = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")
_MAX_IDS = 1000  # References of a long thread hold hundreds; more is abuse, and the first suffice


def message_ids(value: str | None) -> list[str]:
    """The msg-ids in a header value (References, In-Reply-To, Message-ID), in order, each
    without its angle brackets and with folding whitespace removed; empty ones are skipped, as
    are comments and phrases between them (obsolete In-Reply-To syntax)."""
    if not value:
        return []
    found: list[str] = []
    for match in _MSG_ID.finditer(value):
        msg_id = _WHITESPACE.sub("", match.group(1))
        if msg_id:
            found.append(msg_id)
            if len(found) >= _MAX_IDS:
                break
    return found


def thread_root(header: bytes) -> str:
    """The root of the thread of the message whose header block (or whole bytes) is ``header``:
    a Message-ID without brackets, or ``"sha256:<hex>"`` for a message without any."""
    end = scan_header(header, 0, [])[1]
    return root_of_fields(header_fields(header, 0, end), header[:end])


def root_of_fields(fields: Iterable[tuple[str, str]], header_block: bytes) -> str:
    """thread_root for already parsed (lower-cased name, value) fields of ``header_block``."""
    first: dict[str, str] = {}
    for name, value in fields:
        if name in ("references", "in-reply-to", "message-id"):
            first.setdefault(name, value)  # a repeated field is malformed: the first will do
    for name in ("references", "in-reply-to", "message-id"):
        ids = message_ids(first.get(name))
        if ids:
            return ids[0]
    return "sha256:" + hashlib.sha256(header_block).hexdigest()


def thread_id(header: bytes) -> str:
    """The short id of the message's thread (RFC 8474 objectid: letters and digits)."""
    return id_of_root(thread_root(header))


def id_of_root(root: str) -> str:
    """A root (see thread_root) as a thread id: "T" and 16 base32 characters of its SHA-256."""
    digest = hashlib.sha256(root.encode("utf-8", "surrogateescape")).digest()[:10]
    return "T" + base64.b32encode(digest).decode("ascii").lower()
