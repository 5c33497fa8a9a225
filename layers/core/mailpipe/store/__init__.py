"""The mail store: message bodies in S3, the mailbox index in DynamoDB."""

from mailpipe.store.mailbox_items import MailboxItems
from mailpipe.store.mailstore import (
    AppendedBatch,
    FlagChange,
    MailboxExists,
    MailStore,
    NewMessage,
    NoSuchMailbox,
    StoreError,
)
from mailpipe.store.memory import MailMemory
from mailpipe.store.model import DEFAULT_MAILBOXES, Mailbox, MessageState, StoredMessage
from mailpipe.store.snapshots import Changes, MailboxSnapshots

__all__ = [
    "DEFAULT_MAILBOXES",
    "AppendedBatch",
    "Changes",
    "FlagChange",
    "MailMemory",
    "MailStore",
    "Mailbox",
    "MailboxExists",
    "MailboxItems",
    "MailboxSnapshots",
    "MessageState",
    "NewMessage",
    "NoSuchMailbox",
    "StoreError",
    "StoredMessage",
]
