"""Storage quotas: how much mail each user may keep, and what happens when it is reached.

A user's limit is `quota_bytes` on their directory item (`mailpipe quota set`); without one the
default applies. Usage is what IMAP's QUOTA reports: the RFC822.SIZE (bare LFs counted as CRLF)
of every live message in every mailbox of the user, read from the running totals on the mailbox
items (one Query of a few items: store/transactions.py keeps them, store/totals.py counts a
mailbox made before they existed, once).

Enforcement, softest first, for every user (the default limit too):
- RCPT: a recipient whose every mailbox owner is at or over the limit gets `452 4.2.2` (the
  sender's server keeps the message and retries: the user may make room meanwhile);
- delivery: mail accepted before the limit was reached is still stored up to the limit plus a
  grace of GRACE_FRACTION of it; past that the copy is not stored and the sender gets a bounce
  (5.2.2) on the existing bounce path (poison.py);
- IMAP APPEND: refused with `NO [OVERQUOTA]` if the message would take the user over the limit
  (counted again only near the limit or after a minute: quota_cache.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailpipe.directory import Directory
from mailpipe.store.mailstore import MailStore, NoSuchMailbox
from mailpipe.store.totals import counted

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
    messages: int = 0

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
        self, directory: Directory, store: MailStore, default: int = DEFAULT_LIMIT, *, read_only: bool = False
    ) -> None:
        """`read_only`: for a caller that may only read the mail store (the recipient check); a
        mailbox made before the totals existed is then counted without storing the count."""
        self._directory = directory
        self._store = store
        self._default = default
        self._read_only = read_only

    def state(self, owner: str) -> QuotaState:
        """The user's limit and usage: a GetItem of the directory and a Query of their mailbox items."""
        own = self._directory.quota(owner)
        used, messages = self.usage(owner)
        return QuotaState(own if own is not None else self._default, used, own is not None, messages)

    def usage(self, owner: str) -> tuple[int, int]:
        """Octets and messages the user stores, summed over their mailboxes' running totals."""
        size = count = 0
        for mailbox in self._store.list_mailboxes(owner):
            try:
                mailbox = counted(self._store, mailbox, keep=not self._read_only)
            except NoSuchMailbox:  # deleted since it was listed: it holds nothing now
                continue
            size += mailbox.size_total or 0
            count += mailbox.message_total or 0
        return size, count
