"""State strings derived from the store's counters, so a change by IMAP, by delivery or by JMAP moves
them alike, and nothing extra is written to keep them.

Email (and Thread) state: per mailbox, a short prefix of its id, its UIDNEXT and its HIGHESTMODSEQ.
Since a state names where each mailbox was, /changes asks the store what changed since then
(`changes_since`, the `by_modseq` index): a UID at or above the old UIDNEXT is new (created),
below it changed (updated) or, as a tombstone, expunged (destroyed).

Mailbox state: per mailbox, its whole id (so Mailbox/changes can name a destroyed one), a short
hash of what describes it (name, role, subscription) and its HIGHESTMODSEQ (which moves with its
counts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mailpipe.store import Mailbox

PREFIX_LENGTH = 12
EMAIL_VERSION = "e1"
MAILBOX_VERSION = "m1"


@dataclass(frozen=True)
class MailboxMark:
    uidnext: int
    highestmodseq: int


def short(mailbox_id: str) -> str:
    return mailbox_id[:PREFIX_LENGTH]


def email_state(mailboxes: list[Mailbox], marks: dict[str, MailboxMark] | None = None) -> str:
    """The Email state of `mailboxes` as read, or at `marks` (an intermediate state) where given."""
    parts = []
    for mailbox in sorted(mailboxes, key=lambda m: m.mailbox_id):
        mark = (marks or {}).get(mailbox.mailbox_id) or MailboxMark(mailbox.uidnext, mailbox.highestmodseq)
        parts.append(f"{short(mailbox.mailbox_id)}.{mark.uidnext}.{mark.highestmodseq}")
    return EMAIL_VERSION + ":" + "~".join(parts)


def parse_email_state(state: object) -> dict[str, MailboxMark] | None:
    if not isinstance(state, str) or not state.startswith(EMAIL_VERSION + ":"):
        return None
    marks: dict[str, MailboxMark] = {}
    body = state[len(EMAIL_VERSION) + 1 :]
    for part in body.split("~") if body else []:
        fields = part.split(".")
        if len(fields) != 3 or not all(f.isdigit() for f in fields[1:]):
            return None
        marks[fields[0]] = MailboxMark(int(fields[1]), int(fields[2]))
    return marks


def describe(mailbox: Mailbox, subscribed: bool) -> str:
    text = f"{mailbox.name}\0{mailbox.special_use or ''}\0{int(subscribed)}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def mailbox_state(mailboxes: list[Mailbox], subscribed: set[str]) -> str:
    return format_mailbox_state(
        {m.mailbox_id: (describe(m, m.name in subscribed), m.highestmodseq) for m in mailboxes}
    )


def format_mailbox_state(marks: dict[str, tuple[str, int]]) -> str:
    return MAILBOX_VERSION + ":" + "~".join(f"{i}.{d}.{h}" for i, (d, h) in sorted(marks.items()))


def parse_mailbox_state(state: object) -> dict[str, tuple[str, int]] | None:
    if not isinstance(state, str) or not state.startswith(MAILBOX_VERSION + ":"):
        return None
    marks: dict[str, tuple[str, int]] = {}
    body = state[len(MAILBOX_VERSION) + 1 :]
    for part in body.split("~") if body else []:
        fields = part.split(".")
        if len(fields) != 3 or not fields[2].isdigit():
            return None
        marks[fields[0]] = (fields[1], int(fields[2]))
    return marks
