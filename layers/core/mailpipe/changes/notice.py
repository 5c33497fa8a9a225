"""A mailbox notice: one mailbox item as a change left it, small enough to batch hundreds a message."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The wire format's version, so a gateway older than the relay can tell and ignore what it cannot read.
WIRE_VERSION = 1


@dataclass(frozen=True)
class MailboxNotice:
    """One mailbox changed: every change to a mailbox (new mail, APPEND, COPY into it, a flag
    change, an expunge, CREATE/RENAME/DELETE) writes its mailbox item, so the item's counters say
    that something changed and from which MODSEQ to look (`MailStore.changes_since`).

    owner: the user's address (the item's pk `user#<owner>`).
    name: the mailbox's name (its sk `mailbox#<name>`).
    mailbox_id: the item's mailbox_id, from the new image, or the old one when `removed`.
    uidnext, highestmodseq: the item's counters (the old image's when `removed`).
    removed: the item is gone: the mailbox was deleted, or renamed away from this name (a rename
      gives a `removed` notice for the old name and one for the new name, same mailbox_id).
    recent_from: the item's first UID no session has claimed as \\Recent (store/recent.py); a claim
      changes only this, so a reader can follow it without reading the user's items again (0: a
      notice from a relay that did not send it).
    size_total, message_total: the item's running totals (store/totals.py), None when not counted
      or not sent.
    prunedmodseq: the item's pruning floor (store/pruning.py), -1 when not sent.

    A subscription item (`subscription#<name>`: a subscribed name, kept apart from the mailboxes)
    gives a notice with an empty mailbox_id and zero counters: the user's subscriptions changed.
    """

    owner: str
    name: str
    mailbox_id: str
    uidnext: int
    highestmodseq: int
    removed: bool
    recent_from: int = 0
    size_total: int | None = None
    message_total: int | None = None
    prunedmodseq: int = -1

    def to_json(self) -> dict[str, Any]:
        """The notice as a JSON object (the wire form; `from_json` reads it back)."""
        return {
            "owner": self.owner,
            "name": self.name,
            "mailbox_id": self.mailbox_id,
            "uidnext": self.uidnext,
            "highestmodseq": self.highestmodseq,
            "removed": self.removed,
            "recent_from": self.recent_from,
            "size_total": self.size_total,
            "message_total": self.message_total,
            "prunedmodseq": self.prunedmodseq,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MailboxNotice:
        """The notice of a JSON object made by `to_json`; ValueError if it is not one."""
        try:
            notice = cls(
                owner=obj["owner"],
                name=obj["name"],
                mailbox_id=obj["mailbox_id"],
                uidnext=int(obj["uidnext"]),
                highestmodseq=int(obj["highestmodseq"]),
                removed=bool(obj["removed"]),
                recent_from=int(obj.get("recent_from", 0)),
                size_total=_count(obj.get("size_total")),
                message_total=_count(obj.get("message_total")),
                prunedmodseq=int(obj.get("prunedmodseq", -1)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a mailbox notice: {exc!r}") from None
        if not all(isinstance(v, str) for v in (notice.owner, notice.name, notice.mailbox_id)):
            raise ValueError("not a mailbox notice: owner, name and mailbox_id must be strings")
        return notice


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def encode_batch(notices: Iterable[MailboxNotice]) -> str:
    """One message body (SNS message, then SQS body through raw delivery) holding the notices."""
    return json.dumps({"v": WIRE_VERSION, "notices": [n.to_json() for n in notices]}, separators=(",", ":"))


def decode_batch(body: str) -> list[MailboxNotice]:
    """The notices of a body made by `encode_batch`; ValueError if it is not one."""
    try:
        obj = json.loads(body)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != WIRE_VERSION or not isinstance(obj.get("notices"), list):
        raise ValueError("not a notice batch of this version")
    return [MailboxNotice.from_json(n) for n in obj["notices"]]
