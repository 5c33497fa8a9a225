"""What a method call works with: the signed-in owner's store, the limits, and the request's
creation ids (RFC 8620 3.3: "#k1" names an object created earlier in the same request)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailpipe.jmap import ids
from mailpipe.jmap.errors import MethodError
from mailpipe.jmap.limits import Limits
from mailpipe.store import Mailbox, MailboxSnapshots, MailStore, MessageState, StoredMessage

if TYPE_CHECKING:
    from mailpipe.jmap.blobs import Uploads
    from mailpipe.jmap.outbox import Outbox

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
CAPABILITIES = (CORE, MAIL, SUBMISSION)


@dataclass
class Context:
    owner: str
    store: MailStore
    limits: Limits
    using: frozenset[str] = frozenset()
    created_ids: dict[str, str] = field(default_factory=dict)
    # The process's mailbox snapshots (store/snapshots.py), kept across requests of a warm
    # process: listing a mailbox then costs a Query of its changes, not of all its messages.
    snapshots: MailboxSnapshots | None = None
    # Sending (Identity/*, EmailSubmission/*: jmap/outbox.py) and uploaded blobs (jmap/blobs.py);
    # None where the handler was built without them (then those methods answer serverFail/notFound).
    outbox: Outbox | None = None
    uploads: Uploads | None = None
    _mailboxes: list[Mailbox] | None = None
    # The subscribed names (items apart from the mailboxes: a subscription may outlive its
    # mailbox), read with the mailboxes.
    subscribed_names: set[str] = field(default_factory=set)
    # What a request computed over the owner's mailboxes (all messages, threads), until a change.
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def account_id(self) -> str:
        return ids.account_id(self.owner)

    def mailboxes(self) -> list[Mailbox]:
        """The owner's mailboxes, read once per request until a method changes them (changed())."""
        if self._mailboxes is None:
            self.store.ensure_inbox(self.owner)
            self._mailboxes, self.subscribed_names = self.store.mailboxes_and_subscriptions(self.owner)
        return self._mailboxes

    def is_subscribed(self, mailbox: Mailbox) -> bool:
        self.mailboxes()
        return mailbox.name in self.subscribed_names

    def messages(self, mailbox: Mailbox) -> list[StoredMessage]:
        """The mailbox's live messages in UID order (at least as new as `mailbox`); kept for the
        rest of the request (until a change), so Email/get after Email/query reads nothing again."""
        key = "messages:" + mailbox.mailbox_id
        if key not in self.cache:
            if self.snapshots is None:
                self.cache[key] = self.store.messages_in(mailbox)
            else:
                # `mailbox` was read by this request (mailboxes()): no read of it again.
                self.cache[key], self.cache["memo:" + mailbox.mailbox_id] = self.snapshots.listing(mailbox)
        return self.cache[key]  # type: ignore[no-any-return]

    def memo(self, mailbox: Mailbox) -> dict[Any, Any] | None:
        """Where to keep what is computed from the messages messages() gave (store/snapshots.py):
        it lasts while they do, across requests; None without snapshots."""
        self.messages(mailbox)
        return self.cache.get("memo:" + mailbox.mailbox_id)  # type: ignore[no-any-return]

    def changes_since(self, mailbox: Mailbox, modseq: int) -> list[MessageState]:
        """MailStore.changes_since, from the process's last list for the mailbox where it answers
        (store/change_lists.py): the pages of one long sync read the index once."""
        if self.snapshots is None:
            return self.store.changes_since(mailbox, modseq)
        return self.snapshots.change_lists.changes_since(mailbox, modseq)

    def listed(self, mailbox_id: str) -> list[StoredMessage] | None:
        """The mailbox's messages if this request listed them already."""
        return self.cache.get("messages:" + mailbox_id)

    def changed(self) -> None:
        self._mailboxes = None
        self.cache.clear()

    def mailbox(self, mailbox_id: str) -> Mailbox | None:
        """The owner's mailbox with this store id; None for anyone else's or none at all."""
        return next((m for m in self.mailboxes() if m.mailbox_id == mailbox_id), None)

    def mailbox_by_jmap_id(self, jmap_id: Any) -> Mailbox | None:
        if _is_ref(jmap_id):
            jmap_id = self.created_ids.get(jmap_id[1:])
        store_id = ids.store_mailbox_id(jmap_id)
        return self.mailbox(store_id) if store_id else None

    def resolve(self, value: Any) -> Any:
        """An id, or "#creationId" of an object created earlier in this request."""
        if _is_ref(value):
            created = self.created_ids.get(value[1:])
            if created is None:
                raise MethodError("invalidArguments", f"no object was created as {value!r}")
            return created
        return value


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("#")
