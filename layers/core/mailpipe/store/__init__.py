"""The mail store: message bodies in S3, the mailbox index in DynamoDB."""

from mailpipe.store.mailstore import (
    FlagChange,
    MailboxExists,
    MailStore,
    MessageState,
    NoSuchMailbox,
    StoreError,
)
from mailpipe.store.model import DEFAULT_MAILBOXES, Mailbox, StoredMessage

__all__ = [
    "DEFAULT_MAILBOXES",
    "FlagChange",
    "MailStore",
    "Mailbox",
    "MailboxExists",
    "MessageState",
    "NoSuchMailbox",
    "StoreError",
    "StoredMessage",
]
