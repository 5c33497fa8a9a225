"""Mailboxes and messages: bodies in S3 under messages/<owner>/, the index in DynamoDB.

Every change to a mailbox is one DynamoDB transaction guarded on the mailbox item
(store/transactions.py), retried with backoff when another change got in first.
docs/mail-store.md explains why this keeps UIDs visible in ascending order.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from mailpipe.dynamo import query_all
from mailpipe.dynamo_transactions import Transactions
from mailpipe.lazy import Lazy
from mailpipe.mime import lines
from mailpipe.mime.summary import summarize
from mailpipe.s3_puts import ObjectPuts
from mailpipe.store import transactions as tx
from mailpipe.store.bodies import BodyReader
from mailpipe.store.body_deletes import BodyDeletes
from mailpipe.store.headers import HeaderReader, header_end, pack_header
from mailpipe.store.model import (
    CHANGES_INDEX,
    COUNTED,
    DEFAULT_MAILBOXES,
    MAILBOX_PREFIX,
    MESSAGE_TOTAL,
    PRUNED_MODSEQ,
    SIZE_TOTAL,
    SUBSCRIPTION_PREFIX,
    UID_PREFIX,
    UIDVALIDITY_COUNTER_KEY,
    Mailbox,
    MessageState,
    StoredMessage,
    delivery_sk,
    mailbox_sk,
    message_projection,
    messages_pk,
    owner_pk,
    pack_summary,
    subscription_sk,
    uid_sk,
)
from mailpipe.store.recent import RecentClaims
from mailpipe.store.writers import MailboxWriters
from mailpipe.thread_pools import LazyPool

log = logging.getLogger(__name__)

MESSAGES_PREFIX = "messages/"
BODY_TYPE = "message/rfc822"  # the Content-Type of every stored message body
MAX_COMMIT_ATTEMPTS = 200
BATCH_READ_LIMIT = 300  # beyond this many UIDs, one Query of the mailbox is cheaper than BatchGets
INBOX = "INBOX"
REMEMBERED_OWNERS = 100_000
# Threads reading many headers or bodies at once for one caller (BatchGetItems, S3 GETs), shared by
# every store and caller of the process: enough to hide request latency, few enough to bound what
# the process asks of S3 and DynamoDB at a time. Made when first needed: a Lambda never reads many at once.
READ_THREADS = 8
_readers = LazyPool(READ_THREADS, "mailstore-read")


T = TypeVar("T")
_DESERIALIZE = TypeDeserializer()
FlagMode = Literal["add", "remove", "replace"]


class StoreError(RuntimeError):
    """The store could not do what was asked (no such mailbox, too much contention, ...)."""


class MailboxExists(StoreError):
    """CREATE or RENAME onto a name that is taken."""


class NoSuchMailbox(StoreError):
    """The mailbox is not there (any more)."""


@dataclass(frozen=True)
class Appended:
    """What an APPEND did: the mailbox as it was read (for UIDVALIDITY), the message as stored,
    and the HIGHESTMODSEQ its commit started from."""

    mailbox: Mailbox
    message: StoredMessage
    started_from: int


@dataclass(frozen=True)
class NewMessage:
    """One message of a MULTIAPPEND, as the client sent it."""

    raw: bytes
    flags: tuple[str, ...] = ()
    internaldate: int | None = None


@dataclass(frozen=True)
class AppendedBatch:
    """What a MULTIAPPEND did: the mailbox as first read (for UIDVALIDITY), and for each of its
    transactions the HIGHESTMODSEQ it started from and the messages it stored, in order."""

    mailbox: Mailbox
    transactions: list[tuple[int, list[StoredMessage]]]

    @property
    def messages(self) -> list[StoredMessage]:
        return [m for _, stored in self.transactions for m in stored]


@dataclass(frozen=True)
class FlagChange:
    """What a STORE did: the messages as they are now, and those UNCHANGEDSINCE kept as they were."""

    changed: list[StoredMessage]
    modified: list[int]


@dataclass(frozen=True)
class PurgeReport:
    mailboxes: int
    messages: int


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class MailStore:
    def __init__(self, table: Any, s3: Any, bucket: str) -> None:
        self._table = table
        # The table resource's client takes and gives plain Python values, not typed ones.
        self._client = table.meta.client
        self._s3 = s3
        self._bucket = bucket
        self._writers = MailboxWriters()
        self._recent = RecentClaims(table, self._writers)
        self._provisioned: set[str] = set()  # owners known to have their default mailboxes
        self._bodies = BodyReader(s3, bucket, _readers)
        # Made at the first APPEND and the first change to a mailbox: each asks botocore for its
        # endpoint first, and a Lambda may never need one.
        self._puts = Lazy(lambda: ObjectPuts(s3, bucket))
        self._transactions = Lazy(lambda: Transactions(self._client))
        self._body_deletes = BodyDeletes(self._delete_chunk)
        self._headers = HeaderReader(
            self._client, table.name, self._bodies.read_range, self._bodies.read, _readers
        )

    @property
    def table(self) -> Any:
        """The DynamoDB table resource (for store/totals.py and store/pruning.py)."""
        return self._table

    # -- mailboxes ---------------------------------------------------------------

    def ensure_mailboxes(self, owner: str) -> list[Mailbox]:
        """Create whichever of the default mailboxes `owner` lacks; harmless to repeat."""
        for name, special_use in DEFAULT_MAILBOXES.items():
            with contextlib.suppress(MailboxExists):
                self.create_mailbox(owner, name, special_use)
        return self.list_mailboxes(owner)

    def ensure_inbox(self, owner: str) -> None:
        """At login: give `owner` the default mailboxes if they were never made (users are given
        them when added; this is the fallback). Remembered per process: INBOX cannot be deleted."""
        if owner in self._provisioned:
            return
        if self.get_mailbox(owner, INBOX) is None:
            self.ensure_mailboxes(owner)
        if len(self._provisioned) >= REMEMBERED_OWNERS:
            self._provisioned.clear()
        self._provisioned.add(owner)

    def inbox_ensured(self, owner: str) -> bool:
        """Whether ensure_inbox(owner) has nothing left to do (no request): an event loop then
        need not hand it to a thread."""
        return owner in self._provisioned

    def _new_uidvalidity(self) -> int:
        """A UIDVALIDITY no mailbox of this table had before, from any process: one atomic ADD to
        a counter item. A mailbox deleted (or renamed away) and created again at once gets a new
        one (RFC 9051 2.3.1.1). The counter starts at the clock's second, so its values follow the
        creation seconds UIDVALIDITY used to be; at one a mailbox creation it stays within 32 bits
        for as long as that clock would have (2106)."""
        response = self._table.update_item(
            Key=UIDVALIDITY_COUNTER_KEY,
            UpdateExpression="SET uidvalidity = if_not_exists(uidvalidity, :now) + :one",
            ExpressionAttributeValues={":now": int(time.time()), ":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["uidvalidity"])

    def create_mailbox(self, owner: str, name: str, special_use: str | None = None) -> Mailbox:
        item: dict[str, Any] = {
            "pk": owner_pk(owner),
            "sk": mailbox_sk(name),
            "mailbox_id": uuid.uuid4().hex,
            "uidvalidity": self._new_uidvalidity(),
            "uidnext": 1,
            "highestmodseq": 1,
            # Empty, so its totals are exact from the start (store/totals.py counts older ones).
            SIZE_TOTAL: 0,
            MESSAGE_TOTAL: 0,
            COUNTED: True,
        }
        if special_use:
            item["special_use"] = special_use
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise MailboxExists(f"mailbox {name!r} exists") from None
            raise
        # A mailbox made is subscribed (clients that show subscribed folders only then show it);
        # the subscription is an item of its own, which outlives the mailbox (RFC 9051 6.3.7).
        self.subscribe(owner, name)
        return Mailbox.from_item(item)

    def get_mailbox(self, owner: str, name: str) -> Mailbox | None:
        item = self._table.get_item(
            Key={"pk": owner_pk(owner), "sk": mailbox_sk(name)}, ConsistentRead=True
        ).get("Item")
        return Mailbox.from_item(item) if item else None

    def list_mailboxes(self, owner: str) -> list[Mailbox]:
        items = query_all(self._table, Key("pk").eq(owner_pk(owner)) & Key("sk").begins_with(MAILBOX_PREFIX))
        return [Mailbox.from_item(item) for item in items]

    def rename_mailbox(self, owner: str, old: str, new: str) -> Mailbox:
        """Same mailbox, new name: its id, UIDs and UIDVALIDITY stay.

        The item moves with the counters it had when read, so the move is conditioned on them:
        a change committed meanwhile (which advanced them) makes it read again and retry, instead
        of putting UIDNEXT and HIGHESTMODSEQ back.
        """
        if old == INBOX:
            raise StoreError("INBOX is renamed by moving its messages, not by renaming it")
        key = {"pk": owner_pk(owner), "sk": mailbox_sk(old)}
        with self._writers.turn(owner, old):
            for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
                item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
                if item is None:
                    raise NoSuchMailbox(f"no mailbox {old!r}")
                try:
                    self._client.transact_write_items(
                        TransactItems=[
                            {
                                "Put": {
                                    "TableName": self._table.name,
                                    "Item": {**item, "sk": mailbox_sk(new)},
                                    "ConditionExpression": "attribute_not_exists(pk)",
                                }
                            },
                            {
                                "Delete": {
                                    "TableName": self._table.name,
                                    "Key": key,
                                    # Pruning's floor too: moving it back down would hide
                                    # pruned tombstones from changes_since.
                                    "ConditionExpression": "mailbox_id = :id AND uidnext = :uid"
                                    " AND highestmodseq = :modseq"
                                    " AND (attribute_not_exists(#floor) OR #floor = :floor)",
                                    "ExpressionAttributeNames": {"#floor": PRUNED_MODSEQ},
                                    "ExpressionAttributeValues": {
                                        ":id": item["mailbox_id"],
                                        ":uid": item["uidnext"],
                                        ":modseq": item["highestmodseq"],
                                        ":floor": item.get(PRUNED_MODSEQ, -1),
                                    },
                                }
                            },
                        ]
                    )
                    self._move_subscription(owner, old, new)
                    return Mailbox.from_item({**item, "sk": mailbox_sk(new)})
                except ClientError as exc:
                    reasons = _cancellation_reasons(exc)
                    if reasons and reasons[0] == "ConditionalCheckFailed":
                        raise MailboxExists(f"mailbox {new!r} exists") from None
                    if not reasons:
                        raise
                _back_off(attempt)  # the mailbox changed (or went) meanwhile: read it again
        raise StoreError(f"too much contention on {owner}/{old}")

    def delete_mailbox(self, owner: str, name: str) -> None:
        """Remove the mailbox and, after it, its messages and their bodies."""
        if name == INBOX:
            raise StoreError("INBOX cannot be deleted")
        mailbox = self.require_mailbox(owner, name)
        try:
            self._table.delete_item(
                Key={"pk": owner_pk(owner), "sk": mailbox_sk(name)},
                ConditionExpression="mailbox_id = :id",
                ExpressionAttributeValues={":id": mailbox.mailbox_id},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise NoSuchMailbox(f"no mailbox {name!r}") from None
            raise
        if mailbox.legacy_subscribed:  # its subscription outlives it (RFC 9051 6.3.7)
            self.subscribe(owner, name)
        # The mailbox is gone for every reader now; what follows only reclaims space.
        self._purge_messages(mailbox)

    def purge_owner(self, owner: str) -> PurgeReport:
        """Delete everything `owner` has: every mailbox (INBOX too), its messages, delivery
        markers and bodies, and the owner's subscriptions and leases. For a deleted user: a user
        added again under the address starts empty, with new UIDVALIDITYs (the counter's)."""
        items = query_all(self._table, Key("pk").eq(owner_pk(owner)))
        mailboxes = [Mailbox.from_item(item) for item in items if item["sk"].startswith(MAILBOX_PREFIX)]
        with self._table.batch_writer() as batch:
            for item in items:
                batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
        self._provisioned.discard(owner)
        messages = sum(self._purge_messages(mailbox) for mailbox in mailboxes)
        # Bodies no index item points at any more (a delivery cut short) go too.
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{MESSAGES_PREFIX}{owner}/"):
            self._delete_blobs([entry["Key"] for entry in page.get("Contents", [])])
        # (A mailbox made again gets a new UIDVALIDITY from the counter: nothing to wait for.)
        return PurgeReport(len(mailboxes), messages)

    def _purge_messages(self, mailbox: Mailbox) -> int:
        """Delete a deleted mailbox's index items and bodies; returns how many messages it held."""
        items = query_all(self._table, Key("pk").eq(messages_pk(mailbox.mailbox_id)))
        with self._table.batch_writer() as batch:
            for item in items:
                batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
        self._delete_blobs([item["blob_key"] for item in items if "blob_key" in item])
        return sum(1 for item in items if item["sk"].startswith(UID_PREFIX))

    # -- subscriptions: names, kept apart from the mailboxes (RFC 9051 6.3.7) ----------------

    def subscribe(self, owner: str, name: str) -> None:
        """Subscribe `name`, whether or not a mailbox has it; harmless to repeat."""
        self._table.put_item(Item={"pk": owner_pk(owner), "sk": subscription_sk(name)})

    def unsubscribe(self, owner: str, name: str) -> None:
        """Unsubscribe `name`; harmless if it was not subscribed."""
        self._table.delete_item(Key={"pk": owner_pk(owner), "sk": subscription_sk(name)})
        self._drop_legacy_subscription(owner, name)

    def _drop_legacy_subscription(self, owner: str, name: str) -> None:
        """Take off the `subscribed` attribute a mailbox item made before subscription items may carry."""
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._table.update_item(
                Key={"pk": owner_pk(owner), "sk": mailbox_sk(name)},
                UpdateExpression="REMOVE subscribed",
                ConditionExpression="attribute_exists(subscribed)",
            )

    def mailboxes_and_subscriptions(self, owner: str) -> tuple[list[Mailbox], set[str]]:
        """The owner's mailboxes and subscribed names, with one Query of the owner's partition."""
        items = query_all(self._table, Key("pk").eq(owner_pk(owner)))
        mailboxes = [Mailbox.from_item(item) for item in items if item["sk"].startswith(MAILBOX_PREFIX)]
        subscribed = {
            item["sk"][len(SUBSCRIPTION_PREFIX) :]
            for item in items
            if item["sk"].startswith(SUBSCRIPTION_PREFIX)
        }
        return mailboxes, subscribed | {m.name for m in mailboxes if m.legacy_subscribed}

    def _move_subscription(self, owner: str, old: str, new: str) -> None:
        """RENAME takes the subscription along (a legacy attribute moves with the item itself)."""
        key = {"pk": owner_pk(owner), "sk": subscription_sk(old)}
        if self._table.get_item(Key=key, ConsistentRead=True).get("Item") is not None:
            self.subscribe(owner, new)
            self._table.delete_item(Key=key)

    def claim_recent(self, mailbox: Mailbox) -> tuple[int, int]:
        """Claim the messages no session has seen as \\Recent yet, up to `mailbox.uidnext`, for
        the caller; returns the UID range [start, end) it got (store/recent.py)."""
        return self._recent.claim(mailbox)

    def writer_turn(self, owner: str, name: str) -> contextlib.AbstractContextManager[None]:
        """This process's turn to write to the mailbox (store/writers.py; re-entrant): the writes
        made while holding it, and what the holder does with their results, come in commit order."""
        return self._writers.turn(owner, name)

    def last_written(self, owner: str, name: str) -> Mailbox | None:
        """The mailbox item as this process's latest commit to it left it (UIDNEXT and HIGHESTMODSEQ
        of one moment), if it wrote to it lately."""
        return self._writers.remembered(owner, name)

    def require_mailbox(self, owner: str, name: str) -> Mailbox:
        mailbox = self.get_mailbox(owner, name)
        if mailbox is None:
            raise NoSuchMailbox(f"no mailbox {name!r} for {owner}")
        return mailbox

    def _mailbox_for_delivery(self, owner: str, name: str) -> Mailbox:
        mailbox = self.get_mailbox(owner, name)
        if mailbox is None and name in DEFAULT_MAILBOXES:
            self.ensure_mailboxes(owner)
            mailbox = self.get_mailbox(owner, name)
        if mailbox is None:
            raise NoSuchMailbox(f"no mailbox {name!r} for {owner}")
        return mailbox

    # -- new messages ------------------------------------------------------------

    def deliver(
        self,
        owner: str,
        mailbox_name: str,
        *,
        delivery_id: str,
        source_bucket: str,
        source_key: str,
        size: int,
        summary: dict[str, Any],
        internaldate: int | None = None,
        flags: Iterable[str] = (),
        crlf_size: int | None = None,
        header: bytes | None = None,
    ) -> int:
        """Store a spooled message in a mailbox; returns its UID. `header` is its top-level header
        block (headers.header_end), kept in the index for header fetches.

        Idempotent per (mailbox, delivery_id): a repeated delivery returns the UID the
        first one got and writes nothing new, which is what makes a redelivered SQS
        record harmless.
        """
        mailbox = self._mailbox_for_delivery(owner, mailbox_name)
        existing = self._delivered_uid(mailbox, delivery_id)
        if existing is not None:
            return existing
        blob_key = f"{MESSAGES_PREFIX}{owner}/{delivery_id}.eml"
        # Server-side copy: the body never passes through this process twice.
        self._s3.copy_object(
            Bucket=self._bucket, Key=blob_key, CopySource={"Bucket": source_bucket, "Key": source_key}
        )
        message = self._kept(
            _message_item(blob_key, size, summary, internaldate, flags, delivery_id, crlf_size, header)
        )

        def build(mailbox: Mailbox) -> tuple[list[dict[str, Any]], int]:
            uid, modseq = mailbox.uidnext, mailbox.highestmodseq + 1
            table, size = self._table.name, message["crlf_size"]
            return [
                tx.mailbox_guard(table, mailbox, new_messages=1, size_delta=size, count_delta=1),
                tx.put_message(table, mailbox, uid, modseq, message),
                tx.put_delivery_marker(table, mailbox, delivery_id, uid),
            ], uid

        def on_conflict(mailbox: Mailbox, reasons: list[str]) -> int | None:
            # The marker's condition failed: another delivery of the same record got there first.
            return (
                self._delivered_uid(mailbox, delivery_id)
                if reasons[2:3] == ["ConditionalCheckFailed"]
                else None
            )

        return self._commit(owner, mailbox.name, build, on_conflict, mailbox=mailbox)

    def append(
        self,
        owner: str,
        mailbox_name: str,
        raw: bytes,
        *,
        flags: Iterable[str] = (),
        internaldate: int | None = None,
    ) -> tuple[Mailbox, int]:
        """IMAP APPEND: a client's message into a mailbox; returns the mailbox (for UIDVALIDITY) and UID."""
        appended = self.append_message(owner, mailbox_name, raw, flags=flags, internaldate=internaldate)
        return appended.mailbox, appended.message.uid

    def append_message(
        self,
        owner: str,
        mailbox_name: str,
        raw: bytes,
        *,
        flags: Iterable[str] = (),
        internaldate: int | None = None,
        import_id: str | None = None,
        then: Callable[[Appended], None] | None = None,
    ) -> Appended:
        """APPEND, telling the caller the message as stored and the HIGHESTMODSEQ its commit started
        from: a session whose view was there knows the mailbox changed by this alone.

        With `import_id` (`mailpipe import`), the message is stored at most once per mailbox under
        that id, as deliver() does per delivery id: an import run again after an interruption
        skips what the first run stored. `Appended.started_from` is then -1 for a message that
        was there already (its UID is the one it got then).

        Costs the S3 PUT and one transaction: it starts from the mailbox item as this process's
        last writer left it, when there was one, not from a read. A stale item only makes the guard
        fail, and the cancellation returns the item to retry from (a new message, unlike a flag
        change, depends on nothing else read with it).

        `then`, if given, is called with the result once committed, still in the writer's turn
        (store/memory.py follows this process's writes in commit order so).
        """
        mailbox = self._writers.remembered(owner, mailbox_name) or self.require_mailbox(owner, mailbox_name)
        if import_id is not None:
            existing = self._already_there(mailbox, import_id)
            if existing is not None:
                return existing
        message_id = uuid.uuid4().hex
        blob_key = f"{MESSAGES_PREFIX}{owner}/{message_id}.eml"
        self._puts().put(blob_key, raw, BODY_TYPE)
        self._bodies.keep(blob_key, raw)
        summary = summarize(raw)
        message = self._kept(
            _message_item(
                blob_key,
                len(raw),
                summary,
                internaldate,
                flags,
                import_id or message_id,
                lines.crlf_size(raw),
                raw[: header_end(raw, summary)],
            )
        )

        def build(mailbox: Mailbox) -> tuple[list[dict[str, Any]], Appended]:
            uid, modseq = mailbox.uidnext, mailbox.highestmodseq + 1
            stored = StoredMessage.from_item({**message, "uid": uid, "modseq": modseq})
            items = [
                tx.mailbox_guard(
                    self._table.name, mailbox, new_messages=1, size_delta=message["crlf_size"], count_delta=1
                ),
                tx.put_message(self._table.name, mailbox, uid, modseq, message),
            ]
            if import_id is not None:
                items.append(tx.put_delivery_marker(self._table.name, mailbox, import_id, uid))
            return items, Appended(mailbox, stored, mailbox.highestmodseq)

        def on_conflict(mailbox: Mailbox, reasons: list[str]) -> Appended | None:
            # The marker's condition failed: the same message was imported meanwhile.
            if import_id is None or reasons[2:3] != ["ConditionalCheckFailed"]:
                return None
            self._delete_blobs([blob_key])
            return self._already_there(mailbox, import_id)

        try:
            return self._commit(owner, mailbox_name, build, on_conflict, mailbox=mailbox, then=then)
        except NoSuchMailbox:
            self._delete_blobs([blob_key])  # deleted meanwhile: nothing points at the body
            raise

    def append_batch(self, owner: str, mailbox_name: str, messages: Sequence[NewMessage]) -> AppendedBatch:
        """MULTIAPPEND (RFC 3502): several messages into one mailbox, all or none.

        Costs one S3 PUT per message (made concurrently on the store's threads) and one
        transaction per MAX_MESSAGES_PER_TRANSACTION messages. Up to that many the batch is
        atomic by the transaction itself; beyond it, a later transaction that fails takes back
        the messages the earlier ones committed (expunged: a session that looked meanwhile saw
        them come and go, but none stays), and deletes every body.
        """
        if not messages:
            raise ValueError("an empty batch")
        mailbox = self._writers.remembered(owner, mailbox_name) or self.require_mailbox(owner, mailbox_name)
        ids = [uuid.uuid4().hex for _ in messages]
        keys = [f"{MESSAGES_PREFIX}{owner}/{message_id}.eml" for message_id in ids]

        def put(index: int) -> dict[str, Any]:
            new = messages[index]
            self._puts().put(keys[index], new.raw, BODY_TYPE)
            summary = summarize(new.raw)
            return self._kept(
                _message_item(
                    keys[index],
                    len(new.raw),
                    summary,
                    new.internaldate,
                    new.flags,
                    ids[index],
                    lines.crlf_size(new.raw),
                    new.raw[: header_end(new.raw, summary)],
                )
            )

        try:
            items = list(_readers().map(put, range(len(messages))))
        except Exception:
            self._delete_blobs(keys)
            raise
        committed: list[StoredMessage] = []
        chunks: list[tuple[int, list[StoredMessage]]] = []
        first: Mailbox | None = None
        try:
            for chunk in _chunks(items, tx.MAX_MESSAGES_PER_TRANSACTION):

                def build(
                    mailbox: Mailbox, chunk: Sequence[dict[str, Any]] = chunk
                ) -> tuple[list[dict[str, Any]], tuple[Mailbox, int, list[StoredMessage]]]:
                    modseq = mailbox.highestmodseq + 1
                    writes = [tx.mailbox_guard(self._table.name, mailbox, new_messages=len(chunk))]
                    stored = []
                    for offset, item in enumerate(chunk):
                        uid = mailbox.uidnext + offset
                        writes.append(tx.put_message(self._table.name, mailbox, uid, modseq, item))
                        stored.append(StoredMessage.from_item({**item, "uid": uid, "modseq": modseq}))
                    return writes, (mailbox, mailbox.highestmodseq, stored)

                read, started_from, stored = self._commit(owner, mailbox_name, build, mailbox=mailbox)
                first = first or read
                committed += stored
                chunks.append((started_from, stored))
        except Exception:
            self._take_back(owner, mailbox_name, [m.uid for m in committed])
            self._delete_blobs(keys)
            raise
        assert first is not None
        return AppendedBatch(first, chunks)

    def _take_back(self, owner: str, mailbox_name: str, uids: list[int]) -> None:
        """Undo the committed part of a batch that failed later (best effort: it is failing already)."""
        if not uids:
            return
        try:
            self.expunge(owner, mailbox_name, uids)
        except (NoSuchMailbox, StoreError, ClientError) as exc:
            log.warning("could not take back %d appended messages of %s: %s", len(uids), owner, exc)

    def _already_there(self, mailbox: Mailbox, import_id: str) -> Appended | None:
        uid = self._delivered_uid(mailbox, import_id)
        if uid is None:
            return None
        if uid >= mailbox.uidnext:  # committed by another writer after `mailbox` was read
            mailbox = self.require_mailbox(mailbox.owner, mailbox.name)
        found = self._messages_by_uid(mailbox, {uid})
        if not found:  # imported, then expunged: the marker stays, and the import skips it
            return Appended(mailbox, StoredMessage(uid, 0, (), 0, 0, "", import_id, expunged=True), -1)
        return Appended(mailbox, found[0], -1)

    def copy(
        self, owner: str, source: str, uids: Iterable[int], target: str
    ) -> tuple[Mailbox, list[tuple[int, int]]]:
        """COPY: each message gets a body of its own (server-side S3 copy) and the target's next UIDs.

        Returns the target mailbox and (source UID, target UID) pairs, for COPYUID.
        """
        source_mailbox, messages = self.list_messages(owner, source)
        wanted = set(uids)
        originals = [m for m in messages if m.uid in wanted]
        target_mailbox = self.require_mailbox(owner, target)
        headers = self.read_headers(source_mailbox.mailbox_id, originals)
        copies = []
        for original in originals:
            copy_id = uuid.uuid4().hex
            blob_key = f"{MESSAGES_PREFIX}{owner}/{copy_id}.eml"
            self._s3.copy_object(
                Bucket=self._bucket,
                Key=blob_key,
                CopySource={"Bucket": self._bucket, "Key": original.blob_key},
            )
            copies.append(
                self._kept(
                    _message_item(
                        blob_key,
                        original.size,
                        original.summary,
                        original.internaldate,
                        original.flags,
                        copy_id,
                        original.crlf_size,
                        headers.get(original.uid),
                    )
                )
            )
        pairs: list[tuple[int, int]] = []
        for chunk_start in range(0, len(copies), tx.MAX_MESSAGES_PER_TRANSACTION):
            chunk = copies[chunk_start : chunk_start + tx.MAX_MESSAGES_PER_TRANSACTION]
            sources = originals[chunk_start : chunk_start + len(chunk)]

            def build(mailbox: Mailbox, chunk=chunk, sources=sources) -> tuple[list[dict[str, Any]], list]:
                modseq = mailbox.highestmodseq + 1
                items = [
                    tx.mailbox_guard(
                        self._table.name,
                        mailbox,
                        new_messages=len(chunk),
                        size_delta=sum(message["crlf_size"] for message in chunk),
                        count_delta=len(chunk),
                    )
                ]
                result = []
                for offset, (message, source_message) in enumerate(zip(chunk, sources, strict=True)):
                    uid = mailbox.uidnext + offset
                    items.append(tx.put_message(self._table.name, mailbox, uid, modseq, message))
                    result.append((source_message.uid, uid))
                return items, result

            pairs += self._commit(owner, target, build)
        return self.get_mailbox(owner, target) or target_mailbox, pairs

    def has_delivery(self, owner: str, mailbox_name: str, delivery_id: str) -> bool:
        """Whether deliver() stored `delivery_id` in the mailbox already (a redelivered record)."""
        mailbox = self.get_mailbox(owner, mailbox_name)
        return mailbox is not None and self._delivered_uid(mailbox, delivery_id) is not None

    def _delivered_uid(self, mailbox: Mailbox, delivery_id: str) -> int | None:
        item = self._table.get_item(
            Key={"pk": messages_pk(mailbox.mailbox_id), "sk": delivery_sk(delivery_id)}, ConsistentRead=True
        ).get("Item")
        return int(item["uid"]) if item else None

    # -- changes to messages -----------------------------------------------------

    def update_flags(
        self,
        owner: str,
        mailbox_name: str,
        uids: Iterable[int],
        mode: FlagMode,
        flags: Iterable[str],
        *,
        unchanged_since: int | None = None,
        commits: list[int] | None = None,
        mailbox: Mailbox | None = None,
        seen: Mapping[int, StoredMessage] | None = None,
    ) -> FlagChange:
        """STORE: add, remove or replace flags; each message whose flags change gets a new MODSEQ.

        With `unchanged_since` (CONDSTORE), messages modified after that MODSEQ are left
        alone and reported in `modified`. `mailbox`, if given, is the caller's last picture of
        the mailbox item, tried before reading it, and `seen` its picture of the messages, by
        UID (see _change_messages).
        """
        new_flags = set(flags)
        modified: set[int] = set()
        after: dict[int, StoredMessage] = {}  # each message as its committed update leaves it

        def change(mailbox: Mailbox, message: StoredMessage, modseq: int) -> dict[str, Any] | None:
            if unchanged_since is not None and message.modseq > unchanged_since:
                modified.add(message.uid)
                return None
            modified.discard(message.uid)
            result = sorted(_apply_flags(set(message.flags), mode, new_flags))
            if result == sorted(message.flags):
                return None
            after[message.uid] = replace(message, flags=tuple(result), modseq=modseq)
            return tx.set_flags(self._table.name, mailbox, message.uid, modseq, result)

        changed = self._change_messages(
            owner, mailbox_name, uids, change, commits, mailbox=mailbox, seen=seen
        )
        return FlagChange([after[uid] for uid in sorted(changed)], sorted(modified))

    def expunge(
        self,
        owner: str,
        mailbox_name: str,
        uids: Iterable[int],
        *,
        only_deleted: bool = False,
        commits: list[int] | None = None,
        mailbox: Mailbox | None = None,
        seen: Mapping[int, StoredMessage] | None = None,
        bodies: list[str] | None = None,
    ) -> list[int]:
        """Remove messages; returns the UIDs expunged. Their bodies are deleted after the index says so.

        With `only_deleted` (IMAP EXPUNGE), a message is removed only if it has the \\Deleted flag
        when the transaction is built: another session may have taken the flag off meanwhile.
        With `bodies`, the bodies are left for the caller to delete (delete_bodies): their keys
        are added to that list (a caller holding the writer's turn deletes them after it).
        """
        blobs: dict[int, str] = {}

        def change(mailbox: Mailbox, message: StoredMessage, modseq: int) -> dict[str, Any] | None:
            if only_deleted and "\\Deleted" not in message.flags:
                return None
            blobs[message.uid] = message.blob_key
            return tx.expunge(self._table.name, mailbox, message.uid, modseq)

        expunged: list[int] = []
        try:
            self._change_messages(
                owner,
                mailbox_name,
                uids,
                change,
                commits,
                mailbox=mailbox,
                seen=seen,
                committed=expunged,
                removes=True,
            )
        finally:
            # Even if a later transaction failed: the bodies of what was expunged go.
            gone = [blobs[uid] for uid in expunged]
            if bodies is None:
                self._delete_blobs(gone)
            else:
                bodies += gone
        return sorted(expunged)

    def _change_messages(
        self,
        owner: str,
        mailbox_name: str,
        uids: Iterable[int],
        change: Callable[[Mailbox, StoredMessage, int], dict[str, Any] | None],
        commits: list[int] | None = None,
        *,
        mailbox: Mailbox | None = None,
        seen: Mapping[int, StoredMessage] | None = None,
        committed: list[int] | None = None,
        removes: bool = False,
    ) -> list[int]:
        """Apply `change` to the listed messages, at most 99 per transaction; returns the UIDs changed.
        With `removes` (expunge), each transaction takes the messages it changes off the mailbox's
        totals.

        Each transaction gives its messages the next MODSEQ. `change` sees each message as it
        is when the transaction commits and returns its update, or None to leave it: messages
        are read once, and each update is conditioned on the MODSEQ the message was read with.
        So when another change to the mailbox commits first, the next attempt needs only the
        mailbox item DynamoDB returns with the cancellation, and rereads just the messages that
        changed: losing a race costs one request, not three. `mailbox` is a first guess of the
        mailbox item (a session's view); the guard corrects a stale one. `seen` is a first guess
        of the messages (the process's snapshot, kept current by the change feed): those in it
        are not read at all, and a stale one fails its MODSEQ condition and is reread like a
        message that lost a race. So a STORE or EXPUNGE from a current snapshot costs its
        transaction alone. (What `change` decides to leave alone it decides from the guess:
        from what the sessions of this process are shown, as of the feed's latest notice.)

        `committed`, if given, receives the UIDs changed as each transaction commits, so a caller
        learns of them even if a later transaction fails.

        `commits` receives the HIGHESTMODSEQ each committed transaction started from: a caller
        whose picture of the mailbox was at the first of them, with no gaps, knows that the
        mailbox changed only through these commits (the IMAP session then need not relist it).
        """
        with self._writers.turn(owner, mailbox_name):
            return self._change_in_turn(
                owner,
                mailbox_name,
                uids,
                change,
                commits,
                mailbox,
                seen or {},
                [] if committed is None else committed,
                removes,
            )

    def _change_in_turn(
        self,
        owner: str,
        mailbox_name: str,
        uids: Iterable[int],
        change: Callable[[Mailbox, StoredMessage, int], dict[str, Any] | None],
        commits: list[int] | None,
        mailbox: Mailbox | None,
        seen: Mapping[int, StoredMessage],
        changed: list[int],
        removes: bool,
    ) -> list[int]:
        current = self._starting_point(owner, mailbox_name, mailbox)
        wanted = set(uids)
        known = {uid: seen[uid] for uid in wanted if uid in seen}
        unseen = wanted - known.keys()
        if unseen:
            known.update((m.uid, m) for m in self._messages_by_uid(current, unseen))
        remaining = set(known)
        attempt = 0
        while remaining:
            modseq = current.highestmodseq + 1
            updates: list[tuple[int, dict[str, Any]]] = []
            for uid in sorted(remaining):
                update = change(current, known[uid], modseq)
                if update is not None:
                    updates.append((uid, tx.unless_changed(update, known[uid].modseq)))
                    if len(updates) == tx.MAX_MESSAGES_PER_TRANSACTION:
                        break
            if not updates:
                break
            guard = tx.mailbox_guard(
                self._table.name,
                current,
                size_delta=-sum(known[uid].crlf_size for uid, _ in updates) if removes else 0,
                count_delta=-len(updates) if removes else 0,
            )
            try:
                self._transact([guard, *(u for _, u in updates)])
            except ClientError as exc:
                reasons = _cancellation_reasons(exc)
                if not reasons:
                    raise
                attempt += 1
                if attempt >= MAX_COMMIT_ATTEMPTS:
                    raise StoreError(f"too much contention on {owner}/{mailbox_name}") from None
                _back_off(attempt)
                now = _mailbox_in(exc) or self.require_mailbox(owner, mailbox_name)
                if now.mailbox_id != current.mailbox_id:
                    # Deleted or renamed away, and another mailbox took the name: the messages
                    # read belong to the one that is gone.
                    raise NoSuchMailbox(f"mailbox {mailbox_name!r} was replaced") from None
                # Reread what changed meanwhile: the messages whose own condition failed, and any
                # other still to decide (one whose decision was "nothing to do" may now need it).
                outcomes = zip(updates, reasons[1:], strict=False)
                stale = {uid for (uid, _), reason in outcomes if reason != "None"}
                stale |= {c.uid for c in self.changes_since(now, current.highestmodseq)} & remaining
                if stale:
                    fresh = {m.uid: m for m in self._messages_by_uid(now, stale)}
                    for uid in stale:
                        if uid in fresh:
                            known[uid] = fresh[uid]
                        else:  # expunged meanwhile
                            remaining.discard(uid)
                current = now
                continue
            if commits is not None:
                commits.append(current.highestmodseq)
            done = [uid for uid, _ in updates]
            changed += done
            remaining.difference_update(done)
            current = tx.advanced(current, guard)
            self._writers.committed(current)
            attempt = 0  # each transaction of a large change has its own budget
        return changed

    # -- reading -----------------------------------------------------------------

    def list_messages(
        self, owner: str, mailbox_name: str, *, include_expunged: bool = False, keep_headers: bool = False
    ) -> tuple[Mailbox, list[StoredMessage]]:
        """The mailbox and its messages in UID order, as of one consistent point.

        Reads the mailbox first and lists only UIDs below the `uidnext` seen there:
        every such message was committed before that read, so a later listing can
        add only higher UIDs. `keep_headers`: as messages_in.
        """
        mailbox = self.require_mailbox(owner, mailbox_name)
        messages = self.messages_in(mailbox, include_expunged=include_expunged, keep_headers=keep_headers)
        return mailbox, messages

    def changes_since(self, mailbox: Mailbox, modseq: int) -> list[MessageState]:
        """Each message changed after `modseq` (new, flags changed, or expunged), in UID order, as of
        `mailbox` (just read): one Query of the MODSEQ index, of the changes only.

        A message changed again while the Query runs moves up the index, never down, so it
        is seen at least once (the latest state wins). The index is read to its end, not to
        the mailbox's HIGHESTMODSEQ, for that reason; new messages from `mailbox.uidnext` on
        are left for the next call, since only those below it were all committed before
        `mailbox` was read (docs/mail-store.md).
        """
        if mailbox.highestmodseq <= modseq:
            return []
        if modseq < mailbox.prunedmodseq:
            return self._changes_below_floor(mailbox, modseq)
        items = query_all(
            self._table,
            Key("pk").eq(messages_pk(mailbox.mailbox_id)) & Key("modseq").gt(modseq),
            IndexName=CHANGES_INDEX,
            ProjectionExpression="uid, modseq, flags, expunged",
        )
        # Pruning may have raised the floor above `modseq` after `mailbox` was read, and deleted
        # tombstones this Query was to find. It raises the floor only to the mark the item held
        # (store/pruning.py), so below that mark the floor is read again, after the Query: if
        # it moved, the tombstones may be gone, and the answer is the one below the floor.
        if modseq < mailbox.prunemark and self._floor(mailbox) > modseq:
            return self._changes_below_floor(mailbox, modseq)
        latest: dict[int, MessageState] = {}
        for item in items:
            uid, item_modseq = int(item["uid"]), int(item["modseq"])
            if uid < mailbox.uidnext and (uid not in latest or latest[uid].modseq < item_modseq):
                flags = tuple(item.get("flags", []))
                latest[uid] = MessageState(uid, item_modseq, flags, bool(item.get("expunged")))
        return [latest[uid] for uid in sorted(latest)]

    def _changes_below_floor(self, mailbox: Mailbox, modseq: int) -> list[MessageState]:
        """changes_since for a MODSEQ below the pruning floor: tombstones up to the floor may be
        gone, so every UID under UIDNEXT that is not live is answered as expunged (RFC 7162 3.2.10
        lets a server report UIDs the client never knew), and the live messages changed since
        `modseq` as usual. Costs a listing of the mailbox's UIDs and flags."""
        items = query_all(
            self._table,
            Key("pk").eq(messages_pk(mailbox.mailbox_id))
            & Key("sk").between(uid_sk(1), uid_sk(max(mailbox.uidnext - 1, 1))),
            ProjectionExpression="uid, modseq, flags, expunged",
        )
        live = {
            int(item["uid"]): MessageState(
                int(item["uid"]), int(item["modseq"]), tuple(item.get("flags", []))
            )
            for item in items
            if not item.get("expunged") and int(item["uid"]) < mailbox.uidnext
        }
        gone = mailbox.prunedmodseq or mailbox.highestmodseq
        return [
            live[uid] if uid in live else MessageState(uid, gone, (), expunged=True)
            for uid in range(1, mailbox.uidnext)
            if uid not in live or live[uid].modseq > modseq
        ]

    def _floor(self, mailbox: Mailbox) -> int:
        """The mailbox's pruning floor as it is now (0 if it is gone or replaced)."""
        item = self._table.get_item(
            Key={"pk": owner_pk(mailbox.owner), "sk": mailbox_sk(mailbox.name)},
            ConsistentRead=True,
            ProjectionExpression="mailbox_id, #floor",
            ExpressionAttributeNames={"#floor": PRUNED_MODSEQ},
        ).get("Item")
        if not item or item["mailbox_id"] != mailbox.mailbox_id:
            return 0
        return int(item.get(PRUNED_MODSEQ, 0))

    def messages_by_uid(
        self, mailbox: Mailbox, uids: Iterable[int], *, keep_headers: bool = False
    ) -> list[StoredMessage]:
        """The live messages among `uids`, whole, in UID order; `keep_headers` as for messages_in."""
        return self._messages_by_uid(mailbox, set(uids), keep_headers)

    def read_body(self, message: StoredMessage) -> bytes:
        return self._bodies.read(message)

    def cached_body(self, message: StoredMessage) -> bytes | None:
        """The body if this process's body cache holds it; None without a request otherwise."""
        return self._bodies.cached(message)

    def read_ahead(self, message: StoredMessage) -> Future[bytes]:
        """The body, read meanwhile on the store's reader threads (store/bodies.py)."""
        return self._bodies.read_ahead(message)

    def read_range(self, message: StoredMessage, start: int, end: int) -> bytes:
        """Bytes [start, end) of the body, with one ranged GET (for BODY[section] and partial fetches)."""
        return self._bodies.read_range(message, start, end)

    def _kept(self, item: dict[str, Any]) -> dict[str, Any]:
        """A new message item, its compressed header remembered: this process has the bytes, so
        its own mail's header fetches read nothing (store/headers.py)."""
        self._headers.keep(item["blob_key"], item.get("header"))
        return item

    def cached_header(self, message: StoredMessage) -> bytes | None:
        """The message's top-level header block if this process holds it; reads nothing."""
        return self._headers.cached(message)

    def read_headers(self, mailbox_id: str, messages: Sequence[StoredMessage]) -> dict[int, bytes]:
        """The top-level header block of each of `messages` (of mailbox `mailbox_id`) by UID, as
        the body holds it, mostly from the index (store/headers.py); expunged ones are left out."""
        return self._headers.read(mailbox_id, messages)

    def _messages_by_uid(
        self, mailbox: Mailbox, uids: set[int], keep_headers: bool = False
    ) -> list[StoredMessage]:
        """The live messages among `uids`, in UID order: a few by BatchGetItem, many by one Query.

        A STORE or EXPUNGE of a handful of messages then costs reads of those messages only,
        not of the whole mailbox.
        """
        wanted = sorted(uid for uid in uids if 0 < uid < mailbox.uidnext)
        if len(wanted) > BATCH_READ_LIMIT:
            return [m for m in self.messages_in(mailbox, keep_headers=keep_headers) if m.uid in uids]
        found: list[StoredMessage] = []
        for start in range(0, len(wanted), 100):
            keys = [
                {"pk": messages_pk(mailbox.mailbox_id), "sk": uid_sk(uid)}
                for uid in wanted[start : start + 100]
            ]
            pending: dict[str, Any] = {
                self._table.name: {"Keys": keys, "ConsistentRead": True, **message_projection(keep_headers)}
            }
            while pending:
                response = self._client.batch_get_item(RequestItems=pending)
                for item in response["Responses"].get(self._table.name, []):
                    message = StoredMessage.from_item(item)
                    if keep_headers and not message.expunged:
                        self._headers.keep(message.blob_key, item.get("header"))
                    found.append(message)
                pending = response.get("UnprocessedKeys") or {}
        return sorted((m for m in found if not m.expunged), key=lambda m: m.uid)

    def messages_in(
        self, mailbox: Mailbox, *, include_expunged: bool = False, keep_headers: bool = False
    ) -> list[StoredMessage]:
        """The mailbox's messages in UID order. With `keep_headers` the listing also reads each
        compressed header block and keeps it in this process's header cache (what a snapshot's
        listing does: the folder-open fetch that follows then reads nothing)."""
        if mailbox.uidnext <= 1:
            return []
        condition = Key("pk").eq(messages_pk(mailbox.mailbox_id)) & Key("sk").between(
            uid_sk(1), uid_sk(mailbox.uidnext - 1)
        )
        messages = []
        for item in query_all(self._table, condition, **message_projection(keep_headers)):
            if item["sk"].startswith(UID_PREFIX):
                message = StoredMessage.from_item(item)
                if keep_headers and not message.expunged:
                    self._headers.keep(message.blob_key, item.get("header"))
                messages.append(message)
        return messages if include_expunged else [m for m in messages if not m.expunged]

    # -- committing --------------------------------------------------------------

    def _commit(
        self,
        owner: str,
        mailbox_name: str,
        build: Callable[[Mailbox], tuple[list[dict[str, Any]], T]],
        on_conflict: Callable[[Mailbox, list[str]], T | None] | None = None,
        *,
        mailbox: Mailbox | None = None,
        then: Callable[[T], None] | None = None,
    ) -> T:
        """Run `build`'s transaction against the mailbox as read; rebuild until it commits. Writers
        in this process take turns (store/writers.py); `then` gets the result in the turn."""
        with self._writers.turn(owner, mailbox_name):
            result = self._commit_in_turn(owner, mailbox_name, build, on_conflict, mailbox)
            if then is not None:
                then(result)
            return result

    def _commit_in_turn(
        self,
        owner: str,
        mailbox_name: str,
        build: Callable[[Mailbox], tuple[list[dict[str, Any]], T]],
        on_conflict: Callable[[Mailbox, list[str]], T | None] | None,
        mailbox: Mailbox | None,
    ) -> T:
        mailbox = self._starting_point(owner, mailbox_name, mailbox)
        for attempt in range(MAX_COMMIT_ATTEMPTS):
            items, result = build(mailbox)
            if len(items) <= 1:  # only the guard: nothing to change
                return result
            try:
                self._transact(items)
                self._writers.committed(tx.advanced(mailbox, items[0]))
                return result
            except ClientError as exc:
                reasons = _cancellation_reasons(exc)
                if not reasons:
                    raise
                if on_conflict is not None:
                    settled = on_conflict(mailbox, reasons)
                    if settled is not None:
                        return settled
                # Someone else changed the mailbox first: back off, and rebuild on the mailbox
                # as the cancellation returned it (or as read again).
                _back_off(attempt + 1)
                mailbox = _mailbox_in(exc) or self.require_mailbox(owner, mailbox_name)
        raise StoreError(f"too much contention on {owner}/{mailbox_name}")

    def _transact(self, items: list[dict[str, Any]]) -> None:
        """One TransactWriteItems of plain-valued items (mailpipe/dynamo_transactions.py)."""
        self._transactions().write(items)

    def _starting_point(self, owner: str, mailbox_name: str, guess: Mailbox | None) -> Mailbox:
        """The mailbox item a writer first tries: the caller's guess, or the item as this process's
        last writer left it if that is newer; without a guess, the item as read now (a caller
        with no picture of the mailbox gets no stale one)."""
        if guess is None:
            return self.require_mailbox(owner, mailbox_name)
        return self._writers.newest(owner, mailbox_name, guess)

    def delete_bodies(self, keys: list[str]) -> None:
        """Delete the bodies of expunged messages (those expunge() left to its caller) soon, in
        the background and in batches (store/body_deletes.py); they leave the body cache now."""
        self._bodies.forget(keys)
        self._body_deletes.later(keys)

    def finish_body_deletes(self, timeout: float = 10.0) -> bool:
        """Delete the bodies still waiting (the process is stopping); whether none is left."""
        return self._body_deletes.flush(timeout)

    @property
    def body_deletes_waiting(self) -> int:
        """Bodies handed to delete_bodies and not deleted yet."""
        return self._body_deletes.waiting

    def delete_bodies_now(self, keys: list[str]) -> list[str]:
        """Delete bodies now (store/pruning.py's sweep); returns the keys that could not be."""
        self._bodies.forget(keys)
        failed: list[str] = []
        for chunk in _chunks(keys, 1000):
            failed += self._delete_chunk(list(chunk))
        return failed

    def _delete_blobs(self, keys: list[str]) -> None:
        failed = self.delete_bodies_now(keys)
        if failed:
            # The index no longer points at them; the pruning of their tombstones deletes them.
            log.warning("could not delete %d message bodies: left to pruning", len(failed))

    def _delete_chunk(self, keys: list[str]) -> list[str]:
        """One DeleteObjects of up to 1,000 keys; the keys it did not delete."""
        try:
            answer = self._s3.delete_objects(
                Bucket=self._bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
            )
        except ClientError as exc:
            log.warning("could not delete %d message bodies: %s", len(keys), exc)
            return keys
        return [error["Key"] for error in answer.get("Errors", [])]


def _message_item(
    blob_key: str,
    size: int,
    summary: dict[str, Any],
    internaldate: int | None,
    flags: Iterable[str],
    delivery_id: str,
    crlf_size: int | None,
    header: bytes | None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "size": size,
        "crlf_size": crlf_size if crlf_size is not None else size,
        "blob_key": blob_key,
        "delivery_id": delivery_id,
        "internaldate": internaldate if internaldate is not None else int(time.time()),
        "flags": sorted(set(flags)),
        "summary": pack_summary(summary),
    }
    packed = pack_header(header) if header is not None else None
    if packed is not None:  # else too big for the index: header fetches read it from S3
        item["header"] = packed
    return item


def _apply_flags(current: set[str], mode: FlagMode, flags: set[str]) -> set[str]:
    if mode == "add":
        return current | flags
    if mode == "remove":
        return current - flags
    return set(flags)


def _back_off(attempt: int) -> None:
    """A jittered pause before retrying a lost race, growing with the attempts."""
    time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt - 1, 8))))


def _mailbox_in(exc: ClientError) -> Mailbox | None:
    """The mailbox item as a cancelled transaction's guard found it (the guard asks for it with
    ReturnValuesOnConditionCheckFailure), or None if the guard held or the mailbox is gone."""
    reasons = exc.response.get("CancellationReasons") or []
    item = reasons[0].get("Item") if reasons and reasons[0].get("Code") == "ConditionalCheckFailed" else None
    if not item:
        return None
    # The error is not run through the table resource's type conversion: values come typed.
    plain = {key: _DESERIALIZE.deserialize(value) for key, value in item.items()}
    return Mailbox.from_item(plain)


def _cancellation_reasons(exc: ClientError) -> list[str]:
    if exc.response["Error"]["Code"] != "TransactionCanceledException":
        return []
    return [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
