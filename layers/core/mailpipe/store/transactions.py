"""The DynamoDB transaction items behind every change to a mailbox.

Every change (new message, flag change, expunge) carries the same guard on the
mailbox item: `highestmodseq` (and, for new messages, `uidnext`) must still be
what the writer read. So changes to one mailbox commit one at a time, each with the
next MODSEQ, and a new message's UID is decided in the very transaction that makes
it visible (docs/mail-store.md says why that keeps UIDs appearing in order).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from mailpipe.store.model import (
    MESSAGE_TOTAL,
    SIZE_TOTAL,
    Mailbox,
    delivery_sk,
    mailbox_sk,
    messages_pk,
    owner_pk,
    uid_sk,
)

# TransactWriteItems takes at most 100 items: the mailbox guard plus 99 messages.
MAX_MESSAGES_PER_TRANSACTION = 99


def mailbox_guard(
    table: str, mailbox: Mailbox, *, new_messages: int = 0, size_delta: int = 0, count_delta: int = 0
) -> dict[str, Any]:
    """Advance the mailbox by one MODSEQ (and `new_messages` UIDs), if nobody else has meanwhile,
    and move its running totals by `size_delta` octets and `count_delta` live messages (what the
    quota reads: mailpipe/quota.py). A mailbox not yet counted gets them too; they mean nothing
    until store/totals.py sets them, conditioned on this same MODSEQ."""
    values: dict[str, Any] = {
        ":prev": mailbox.highestmodseq,
        ":modseq": mailbox.highestmodseq + 1,
        ":id": mailbox.mailbox_id,
        ":uid": mailbox.uidnext,
    }
    update = "SET highestmodseq = :modseq"
    if new_messages:
        update += ", uidnext = :next"
        values[":next"] = mailbox.uidnext + new_messages
    if size_delta or count_delta:
        update += f" ADD {SIZE_TOTAL} :size, {MESSAGE_TOTAL} :count"
        values[":size"], values[":count"] = size_delta, count_delta
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": owner_pk(mailbox.owner), "sk": mailbox_sk(mailbox.name)},
            "UpdateExpression": update,
            "ConditionExpression": "uidnext = :uid AND highestmodseq = :prev AND mailbox_id = :id",
            "ExpressionAttributeValues": values,
            # A writer that lost the race learns the mailbox as it now is without reading it again.
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def advanced(mailbox: Mailbox, guard: dict[str, Any]) -> Mailbox:
    """The mailbox item as `guard` (from mailbox_guard) leaves it when its transaction commits."""
    values = guard["Update"]["ExpressionAttributeValues"]
    advanced = replace(mailbox, highestmodseq=values[":modseq"], uidnext=values.get(":next", mailbox.uidnext))
    if mailbox.size_total is not None and mailbox.message_total is not None:
        advanced = replace(
            advanced,
            size_total=mailbox.size_total + values.get(":size", 0),
            message_total=mailbox.message_total + values.get(":count", 0),
        )
    return advanced


def put_message(
    table: str, mailbox: Mailbox, uid: int, modseq: int, message: dict[str, Any]
) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": {
                "pk": messages_pk(mailbox.mailbox_id),
                "sk": uid_sk(uid),
                "uid": uid,
                "modseq": modseq,
                **message,
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def put_delivery_marker(table: str, mailbox: Mailbox, delivery_id: str, uid: int) -> dict[str, Any]:
    """The record that `delivery_id` is stored (as `uid`), so a redelivery stores nothing; `at`
    (epoch seconds) lets pruning drop it once no queue can bring the envelope back."""
    return {
        "Put": {
            "TableName": table,
            "Item": {
                "pk": messages_pk(mailbox.mailbox_id),
                "sk": delivery_sk(delivery_id),
                "uid": uid,
                "at": int(time.time()),
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def set_flags(table: str, mailbox: Mailbox, uid: int, modseq: int, flags: list[str]) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": messages_pk(mailbox.mailbox_id), "sk": uid_sk(uid)},
            "UpdateExpression": "SET flags = :flags, modseq = :modseq",
            "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(expunged)",
            "ExpressionAttributeValues": {":flags": flags, ":modseq": modseq},
        }
    }


def unless_changed(update: dict[str, Any], modseq: int) -> dict[str, Any]:
    """`update` (set_flags or expunge), on the further condition that the message still has the
    MODSEQ it was read with: a writer may then keep what it read across attempts."""
    body = update["Update"]
    return {
        "Update": {
            **body,
            "ConditionExpression": f"({body['ConditionExpression']}) AND modseq = :seen",
            "ExpressionAttributeValues": {**body["ExpressionAttributeValues"], ":seen": modseq},
        }
    }


def expunge(table: str, mailbox: Mailbox, uid: int, modseq: int) -> dict[str, Any]:
    """Turn a message into a tombstone: its UID and MODSEQ stay for QRESYNC's VANISHED."""
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": messages_pk(mailbox.mailbox_id), "sk": uid_sk(uid)},
            "UpdateExpression": "SET expunged = :true, modseq = :modseq REMOVE flags, summary, header",
            "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(expunged)",
            "ExpressionAttributeValues": {":true": True, ":modseq": modseq},
        }
    }
