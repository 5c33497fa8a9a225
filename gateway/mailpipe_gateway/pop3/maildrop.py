"""A POP3 session's view of a user's INBOX: numbered messages, deletion marks, the exclusive lock."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from mailpipe.mime.lines import crlf_lines
from mailpipe.store import Mailbox, MailMemory, MailStore, StoredMessage
from mailpipe.store.locks import Leases

INBOX = "INBOX"
LOCK_NAME = "pop3"
LOCK_TTL = 15 * 60  # longer than the 10-minute autologout
# The lease is renewed by a command at least this long after the last renewal: renewing at every
# command made a client listing a maildrop with TOP n 0 pay a DynamoDB write per message.
RENEW_AFTER = 60


class MaildropLocked(RuntimeError):
    """Another POP3 session holds this maildrop."""


@dataclass
class Maildrop:
    owner: str
    memory: MailMemory  # the process's: the UPDATE state's expunge goes through it (see commit)
    leases: Leases
    mailbox: Mailbox | None = None  # INBOX as opened
    messages: list[StoredMessage] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    renewed: float = 0.0  # time.monotonic() of the last acquire

    def open(self) -> None:
        if not self.leases.acquire(self.owner, LOCK_NAME, self.holder, LOCK_TTL):
            raise MaildropLocked(self.owner)
        self.renewed = time.monotonic()
        self.store.ensure_inbox(self.owner)
        # The header blocks come with the listing and stay in this process (as a SELECT's do), so
        # that TOP n 0, how clients list a maildrop, reads neither S3 nor DynamoDB.
        self.mailbox, self.messages = self.store.list_messages(self.owner, INBOX, keep_headers=True)

    @property
    def store(self) -> MailStore:
        return self.memory.store

    def renew(self) -> None:
        if time.monotonic() - self.renewed >= RENEW_AFTER:
            self.leases.acquire(self.owner, LOCK_NAME, self.holder, LOCK_TTL)
            self.renewed = time.monotonic()

    def close(self) -> None:
        self.leases.release(self.owner, LOCK_NAME, self.holder)

    def message(self, number: int) -> StoredMessage | None:
        """Message `number` (1-based), unless it does not exist or is marked deleted."""
        if 1 <= number <= len(self.messages) and number not in self.deleted:
            return self.messages[number - 1]
        return None

    def live(self) -> list[tuple[int, StoredMessage]]:
        return [(n, m) for n, m in enumerate(self.messages, 1) if n not in self.deleted]

    def unique_id(self, message: StoredMessage) -> str:
        # Stable across sessions for as long as the mailbox exists (RFC 1939 7: 1-70 printable chars).
        assert self.mailbox is not None
        return f"{self.mailbox.uidvalidity:x}.{message.uid:x}"

    def lines(self, message: StoredMessage, header_only: bool = False) -> list[bytes]:
        """The message's lines; `header_only` (TOP n 0, how clients list a maildrop): those of its
        header and the empty line after it, from the index rather than the body in S3."""
        if header_only:
            assert self.mailbox is not None
            header = self.store.read_headers(self.mailbox.mailbox_id, [message]).get(message.uid)
            if header is not None:
                return crlf_lines(header)
        return crlf_lines(self.store.read_body(message))

    def commit(self) -> list[int]:
        """The UPDATE state: expunge what was marked deleted. Through the process's memory, as IMAP's
        own expunges go: its IMAP sessions of the user hear of it at their next command (IDLE at
        once) from memory, not only when the change feed's notice comes back."""
        uids = [self.messages[n - 1].uid for n in sorted(self.deleted)]
        if not uids:
            return []
        assert self.mailbox is not None
        return self.memory.expunge(self.owner, INBOX, uids, mailbox=self.mailbox)
