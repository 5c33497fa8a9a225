"""JMAP ids of stored things (RFC 8620 1.2: [A-Za-z0-9_-], at most 255).

Every id carries the store's `mailbox_id` (a random 128-bit UUID, never shown to another user) and
is resolved only against the signed-in user's own mailboxes: an id of another user's object, or a
made-up one, is simply not found. Nothing is looked up by an id alone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_HEX = re.compile(r"[0-9a-f]{32}")


def account_id(owner: str) -> str:
    return "A" + hashlib.sha256(owner.encode()).hexdigest()[:24]


def mailbox_jmap_id(mailbox_id: str) -> str:
    return "M" + mailbox_id


def store_mailbox_id(jmap_id: object) -> str | None:
    if isinstance(jmap_id, str) and jmap_id.startswith("M") and _HEX.fullmatch(jmap_id[1:]):
        return jmap_id[1:]
    return None


@dataclass(frozen=True)
class MessageRef:
    """A stored message: its mailbox's store id and its UID there."""

    mailbox_id: str
    uid: int
    part: str | None = None  # blob ids of a MIME part: its partId

    def email_id(self) -> str:
        return f"E{self.mailbox_id}-{self.uid}"

    def thread_id(self) -> str:
        # A message stored before summaries had a thread id (mime/threading.py) is its own thread.
        return f"T{self.mailbox_id}-{self.uid}"

    def blob_id(self) -> str:
        base = f"B{self.mailbox_id}-{self.uid}"
        return base if self.part is None else f"{base}-{self.part.replace('.', '_')}"


_MESSAGE = re.compile(r"([ETB])([0-9a-f]{32})-([1-9][0-9]{0,9})(?:-([0-9_]{1,100}))?")


def parse(jmap_id: object, kind: str) -> MessageRef | None:
    """The message an Email ("E"), Thread ("T") or blob ("B") id names, or None if it is none."""
    if not isinstance(jmap_id, str):
        return None
    match = _MESSAGE.fullmatch(jmap_id)
    if match is None or match.group(1) != kind or (match.group(4) and kind != "B"):
        return None
    part = match.group(4).replace("_", ".") if match.group(4) else None
    return MessageRef(match.group(2), int(match.group(3)), part)
