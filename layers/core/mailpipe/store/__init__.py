"""The mail store: message bodies in S3, the mailbox index in DynamoDB."""

from mailpipe.store.mailstore import MailStore, StoreError
from mailpipe.store.model import DEFAULT_MAILBOXES, Mailbox, StoredMessage

__all__ = ["DEFAULT_MAILBOXES", "MailStore", "Mailbox", "StoreError", "StoredMessage"]
