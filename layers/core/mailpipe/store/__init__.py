"""The mail store: message bodies in S3, the mailbox index in DynamoDB."""

from mailpipe.store.mailstore import (
    AppendedBatch,
    FlagChange,
    MailboxExists,
    MailStore,
    NewMessage,
    NoSuchMailbox,
    StoreError,
)
from mailpipe.store.model import DEFAULT_MAILBOXES, Mailbox, MessageState, StoredMessage
from mailpipe.store.snapshots import Changes, MailboxSnapshots

__all__ = [
    "DEFAULT_MAILBOXES",
    "AppendedBatch",
    "Changes",
    "FlagChange",
    "MailStore",
    "Mailbox",
    "MailboxExists",
    "MailboxSnapshots",
    "MessageState",
    "NewMessage",
    "NoSuchMailbox",
    "StoreError",
    "StoredMessage",
]
