"""The relay: mailbox table stream records in, mailbox notices out, published to the changes topic.

The stream's one reader (the mailbox_changes function on AWS, the dev stack's stream source
locally). It reads only mailbox items: every change to a mailbox's messages also writes the
mailbox item (the guard of store/transactions.py advances `highestmodseq`, and `uidnext` for new
mail), so the mailbox items alone say which mailbox changed and from which MODSEQ to look.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer

from mailpipe.changes.notice import MailboxNotice, encode_batch
from mailpipe.store.model import MAILBOX_PREFIX, SUBSCRIPTION_PREFIX, USER_PREFIX, Mailbox

log = logging.getLogger(__name__)

# SNS takes at most 256 KiB per message (body and attributes); a notice is ~150 bytes, so one
# message holds well over a thousand. The margin keeps JSON escaping of odd names inside it.
MAX_MESSAGE_BYTES = 256 * 1024 - 8 * 1024

_deserializer = TypeDeserializer()


def notice_of(record: Mapping[str, Any]) -> MailboxNotice | None:
    """The notice of one stream record (Lambda's shape: eventName, dynamodb.Keys/NewImage/
    OldImage in DynamoDB JSON), or None if it is not a mailbox item's or cannot be read."""
    change = record.get("dynamodb") or {}
    keys = change.get("Keys") or {}
    pk = keys.get("pk", {}).get("S", "")
    sk = keys.get("sk", {}).get("S", "")
    if not pk.startswith(USER_PREFIX):
        return None
    removed = record.get("eventName") == "REMOVE"
    if sk.startswith(SUBSCRIPTION_PREFIX):
        # A subscription (a name apart from the mailboxes): no id, no counters; readers of the
        # user's items read them again.
        return MailboxNotice(pk[len(USER_PREFIX) :], sk[len(SUBSCRIPTION_PREFIX) :], "", 0, 0, removed)
    if not sk.startswith(MAILBOX_PREFIX):
        return None
    image = change.get("OldImage" if removed else "NewImage")
    if not image:
        log.warning("stream record without its image (is the view NEW_AND_OLD_IMAGES?): %s %s", pk, sk)
        return None
    try:
        item = {name: _deserializer.deserialize(value) for name, value in image.items()}
        mailbox = Mailbox.from_item(item)
        return MailboxNotice(
            owner=mailbox.owner,
            name=mailbox.name,
            mailbox_id=mailbox.mailbox_id,
            uidnext=mailbox.uidnext,
            highestmodseq=mailbox.highestmodseq,
            removed=removed,
            recent_from=mailbox.recent_from,
            size_total=mailbox.size_total,
            message_total=mailbox.message_total,
            prunedmodseq=mailbox.prunedmodseq,
        )
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("unreadable mailbox item in the stream (%r): %s %s", exc, pk, sk)
        return None


def notices_of(records: Iterable[Mapping[str, Any]]) -> list[MailboxNotice]:
    """The notices of a batch of stream records, in stream order, one per mailbox name: a later
    record of the same item says all an earlier one did (counters only grow; a mailbox deleted
    and made again under its name carries the new mailbox_id)."""
    latest: dict[tuple[str, str], MailboxNotice] = {}
    for record in records:
        notice = notice_of(record)
        if notice is not None:
            key = (notice.owner, notice.name, notice.mailbox_id == "")
            latest.pop(key, None)  # re-inserted last: the batch keeps stream order
            latest[key] = notice
    return list(latest.values())


def batches(notices: list[MailboxNotice], max_bytes: int = MAX_MESSAGE_BYTES) -> list[str]:
    """Message bodies (encode_batch) of at most `max_bytes` bytes each, together holding every
    notice in order (the JSON is ASCII: characters are bytes)."""
    empty = len(encode_batch([]))
    bodies: list[str] = []
    current: list[MailboxNotice] = []
    size = empty
    for notice in notices:
        cost = len(json.dumps(notice.to_json(), separators=(",", ":")))
        if current and size + 1 + cost > max_bytes:
            bodies.append(encode_batch(current))
            current, size = [], empty
        size += cost + (1 if current else 0)  # the comma before every notice but the first
        current.append(notice)
    if current:
        bodies.append(encode_batch(current))
    return bodies


class Pushes(Protocol):
    def push(self, owners: set[str]) -> int: ...


class Relay:
    """Publishes the notices of stream records to the changes topic, and tells the owners' JMAP
    WebSocket connections (jmap/push.py), since it sees every mailbox change anyway."""

    def __init__(self, sns: Any, topic_arn: str, pusher: Pushes | None = None) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._pusher = pusher

    def relay(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Publishes the notices of `records`; returns how many. Raises if a publish fails, so the
        event source retries the batch (a repeat notice is harmless)."""
        notices = notices_of(records)
        for body in batches(notices):
            self._sns.publish(TopicArn=self._topic_arn, Message=body)
        if self._pusher is not None and notices:
            # After the publish: a retried batch must not be for a push (which never raises).
            self._pusher.push({notice.owner for notice in notices})
        return len(notices)
