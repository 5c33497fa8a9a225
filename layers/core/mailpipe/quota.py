"""Storage quotas: how much mail each user may keep, and what happens when it is reached.

A user's limit is `quota_bytes` on their directory item (`mailpipe quota set`); without one the
default applies, which is what IMAP's GETQUOTA reported before limits could be set. Usage is
what IMAP's QUOTA reports: the RFC822.SIZE (bare LFs counted as CRLF) of every live message in
every mailbox of the user.

Enforcement, softest first (RCPT and delivery for users with a quota of their own; APPEND, which
reads the gateway's cached snapshots, for everyone):
- RCPT: a recipient whose every mailbox owner is at or over the limit gets `452 4.2.2` (the
  sender's server keeps the message and retries: the user may make room meanwhile);
- delivery: mail accepted before the limit was reached is still stored up to the limit plus a
  grace of GRACE_FRACTION of it; past that the copy is not stored and the sender gets a bounce
  (5.2.2) on the existing bounce path (poison.py);
- IMAP APPEND: refused with `NO [OVERQUOTA]` if the message would take the user over the limit.

Usage is counted by listing the user's messages (one Query per mailbox), as GETQUOTA did: exact,
but its cost grows with the mailbox. A running total kept on the mailbox items would make it one
Query of a few items; that is left for when mailboxes that large meet quotas.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailpipe.directory import Directory
from mailpipe.store.mailstore import MailStore, NoSuchMailbox
from mailpipe.store.model import Mailbox, StoredMessage

# (owner, mailbox name) -> the mailbox and its live messages: MailStore.list_messages, or the IMAP
# gateway's MailboxSnapshots.list_messages, which rereads only what changed since its last look.
Lister = Callable[[str, str], tuple[Mailbox, Sequence[StoredMessage]]]

DEFAULT_LIMIT = 10 * 1024**3
GRACE_FRACTION = 0.10
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class QuotaError(ValueError):
    """A size that cannot be read."""


def parse_size(text: str) -> int:
    """Octets of `500M`, `2G`, `1.5GiB`, `1048576` (units are powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise QuotaError(f"not a size: {text!r} (say e.g. 500M, 2G or 1048576)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise QuotaError(f"a quota must be above zero: {text!r} (`mailpipe quota clear` removes one)")
    return size


@dataclass(frozen=True)
class QuotaState:
    limit: int
    used: int
    own: bool  # set for this user (else the default)

    @property
    def full(self) -> bool:
        """At or over the limit: new mail is refused at RCPT."""
        return self.used >= self.limit

    def fits(self, size: int) -> bool:
        """Whether `size` more octets stay within the limit (APPEND)."""
        return self.used + size <= self.limit

    def within_grace(self, size: int) -> bool:
        """Whether `size` more octets stay within the limit plus the grace (delivery)."""
        return self.used + size <= self.limit + int(self.limit * GRACE_FRACTION)


class Quotas:
    def __init__(
        self,
        directory: Directory,
        store: MailStore,
        default: int = DEFAULT_LIMIT,
        lister: Lister | None = None,
        *,
        mailboxes: Callable[[str], Sequence[Mailbox]] | None = None,
    ) -> None:
        self._directory = directory
        self._store = store
        self._default = default
        self._list = lister or store.list_messages
        # The user's mailboxes: MailStore.list_mailboxes, or the gateway's memory of them.
        self._mailboxes = mailboxes or store.list_mailboxes

    def state(self, owner: str) -> QuotaState:
        own = self._directory.quota(owner)
        return QuotaState(own if own is not None else self._default, self.usage(owner), own is not None)

    def set_state(self, owner: str) -> QuotaState | None:
        """The state of a user with a quota of their own; None (and no listing) for the others.

        RCPT and delivery check only these: counting usage lists every message of the user, which
        for everyone at every RCPT would cost more than the default limit protects.
        """
        own = self._directory.quota(owner)
        return None if own is None else QuotaState(own, self.usage(owner), True)

    def usage(self, owner: str) -> int:
        used = 0
        for mailbox in self._mailboxes(owner):
            try:
                used += sum(message.crlf_size for message in self._list(owner, mailbox.name)[1])
            except NoSuchMailbox:  # deleted since it was listed: it holds nothing now
                continue
        return used
