"""Mailboxes and messages: bodies in S3 under messages/<owner>/, the index in DynamoDB.

How UIDs stay visible in ascending order (RFC 9051 2.3.1.1) even with concurrent
deliveries is told in docs/mail-store.md; in short, a message's UID is taken from
the mailbox's `uidnext` in the same DynamoDB transaction that writes the message,
conditional on `uidnext` still being what the writer read, and readers list only
UIDs below the `uidnext` they read first.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from mailpipe.dynamo import query_all
from mailpipe.store.model import (
    DEFAULT_MAILBOXES,
    MAILBOX_PREFIX,
    UID_PREFIX,
    Mailbox,
    StoredMessage,
    delivery_sk,
    mailbox_sk,
    messages_pk,
    owner_pk,
    pack_summary,
    uid_sk,
)

log = logging.getLogger(__name__)

MESSAGES_PREFIX = "messages/"
MAX_APPEND_ATTEMPTS = 200


class StoreError(RuntimeError):
    """The store could not do what was asked (no such mailbox, too much contention, ...)."""


def _new_uidvalidity() -> int:
    # Seconds since the epoch: a mailbox deleted and created again gets a new value
    # (RFC 9051 2.3.1.1), and it stays within 32 bits until 2106.
    return int(time.time())


class MailStore:
    def __init__(self, table: Any, s3: Any, bucket: str) -> None:
        self._table = table
        # The table resource's client takes and gives plain Python values, not typed ones.
        self._client = table.meta.client
        self._s3 = s3
        self._bucket = bucket

    # -- mailboxes ---------------------------------------------------------------

    def ensure_mailboxes(self, owner: str) -> list[Mailbox]:
        """Create whichever of the default mailboxes `owner` lacks; harmless to repeat."""
        for name, special_use in DEFAULT_MAILBOXES.items():
            self._create_mailbox(owner, name, special_use)
        return self.list_mailboxes(owner)

    def _create_mailbox(self, owner: str, name: str, special_use: str | None) -> None:
        item: dict[str, Any] = {
            "pk": owner_pk(owner),
            "sk": mailbox_sk(name),
            "mailbox_id": uuid.uuid4().hex,
            "uidvalidity": _new_uidvalidity(),
            "uidnext": 1,
            "highestmodseq": 1,
            "subscribed": True,
        }
        if special_use:
            item["special_use"] = special_use
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def get_mailbox(self, owner: str, name: str) -> Mailbox | None:
        item = self._table.get_item(
            Key={"pk": owner_pk(owner), "sk": mailbox_sk(name)}, ConsistentRead=True
        ).get("Item")
        return Mailbox.from_item(item) if item else None

    def list_mailboxes(self, owner: str) -> list[Mailbox]:
        items = query_all(self._table, Key("pk").eq(owner_pk(owner)) & Key("sk").begins_with(MAILBOX_PREFIX))
        return [Mailbox.from_item(item) for item in items]

    def _mailbox_for_delivery(self, owner: str, name: str) -> Mailbox:
        mailbox = self.get_mailbox(owner, name)
        if mailbox is None and name in DEFAULT_MAILBOXES:
            self.ensure_mailboxes(owner)
            mailbox = self.get_mailbox(owner, name)
        if mailbox is None:
            raise StoreError(f"no mailbox {name!r} for {owner}")
        return mailbox

    # -- messages ----------------------------------------------------------------

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
    ) -> int:
        """Store a spooled message in a mailbox; returns its UID.

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
        message = {
            "size": size,
            "blob_key": blob_key,
            "delivery_id": delivery_id,
            "internaldate": internaldate if internaldate is not None else int(time.time()),
            "flags": sorted(set(flags)),
            "summary": pack_summary(summary),
        }
        return self._append_index(owner, mailbox, message, delivery_id)

    def _append_index(self, owner: str, mailbox: Mailbox, message: dict[str, Any], delivery_id: str) -> int:
        for attempt in range(MAX_APPEND_ATTEMPTS):
            uid, modseq = mailbox.uidnext, mailbox.highestmodseq + 1
            try:
                self._client.transact_write_items(
                    TransactItems=self._append_transaction(owner, mailbox, message, delivery_id, uid, modseq)
                )
                return uid
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if len(reasons) == 3 and reasons[2] == "ConditionalCheckFailed":
                    # Another delivery of the same record got there first.
                    duplicate = self._delivered_uid(mailbox, delivery_id)
                    if duplicate is not None:
                        return duplicate
            # Someone else took this UID (or touched the mailbox): back off, reread, retry.
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 8))))
            mailbox = self._mailbox_for_delivery(owner, mailbox.name)
        raise StoreError(f"too much contention appending to {owner}/{mailbox.name}")

    def _append_transaction(
        self, owner: str, mailbox: Mailbox, message: dict[str, Any], delivery_id: str, uid: int, modseq: int
    ) -> list[dict[str, Any]]:
        table = self._table.name
        pk = messages_pk(mailbox.mailbox_id)
        return [
            {
                "Update": {
                    "TableName": table,
                    "Key": ({"pk": owner_pk(owner), "sk": mailbox_sk(mailbox.name)}),
                    "UpdateExpression": "SET uidnext = :next, highestmodseq = :modseq",
                    "ConditionExpression": "uidnext = :uid AND highestmodseq = :prev AND mailbox_id = :id",
                    "ExpressionAttributeValues": (
                        {
                            ":next": uid + 1,
                            ":uid": uid,
                            ":modseq": modseq,
                            ":prev": mailbox.highestmodseq,
                            ":id": mailbox.mailbox_id,
                        }
                    ),
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "Item": ({"pk": pk, "sk": uid_sk(uid), "uid": uid, "modseq": modseq, **message}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "Item": ({"pk": pk, "sk": delivery_sk(delivery_id), "uid": uid}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]

    def _delivered_uid(self, mailbox: Mailbox, delivery_id: str) -> int | None:
        item = self._table.get_item(
            Key={"pk": messages_pk(mailbox.mailbox_id), "sk": delivery_sk(delivery_id)}, ConsistentRead=True
        ).get("Item")
        return int(item["uid"]) if item else None

    def list_messages(self, owner: str, mailbox_name: str) -> tuple[Mailbox, list[StoredMessage]]:
        """The mailbox and its messages in UID order, as of one consistent point.

        Reads the mailbox first and lists only UIDs below the `uidnext` seen there:
        every such message was committed before that read, so a later listing can
        add only higher UIDs.
        """
        mailbox = self.get_mailbox(owner, mailbox_name)
        if mailbox is None:
            raise StoreError(f"no mailbox {mailbox_name!r} for {owner}")
        if mailbox.uidnext <= 1:
            return mailbox, []
        condition = Key("pk").eq(messages_pk(mailbox.mailbox_id)) & Key("sk").between(
            uid_sk(1), uid_sk(mailbox.uidnext - 1)
        )
        items = query_all(self._table, condition)
        return mailbox, [StoredMessage.from_item(item) for item in items if item["sk"].startswith(UID_PREFIX)]

    def read_body(self, message: StoredMessage) -> bytes:
        return self._s3.get_object(Bucket=self._bucket, Key=message.blob_key)["Body"].read()
