"""Sending a stored Email the way SMTP submission sends a message: the same send-as rule
(mailpipe/sender_fields.py), then the spool (S3 object + SQS envelope, auth_user set), so the
inbound function stores local copies and queues remote ones for the outbound function, which
DKIM-signs them, exactly as for mail submitted on port 587.

Also keeps the record of what was sent (the EmailSubmission objects) in the mailbox table, beside
the owner's mailboxes: `pk` user#<owner>, `sk` jmapsub#<queue id>. Queue ids are time-ordered, so
the newest record's id is the EmailSubmission state and /changes is a Query from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from boto3.dynamodb.conditions import Key

from mailpipe.directory import Directory
from mailpipe.dynamo import query_all
from mailpipe.message_ids import new_message_id
from mailpipe.mime.headers import header_fields
from mailpipe.mime.offsets import scan_header
from mailpipe.spool import Envelope, EnvelopeRecipient, Spool, new_queue_id, now_utc, spool_key
from mailpipe.store.model import owner_pk

RECORD_PREFIX = "jmapsub#"


@dataclass(frozen=True)
class Sent:
    queue_id: str
    sent_at: str  # UTC, RFC 3339
    size: int


class Outbox:
    def __init__(self, directory: Directory, spool: Spool, table: Any, hostname: str) -> None:
        self._directory = directory
        self._spool = spool
        self._table = table
        self.hostname = hostname

    def owned_addresses(self, owner: str) -> set[str]:
        """What `owner` may send as: the directory's rule, the one SMTP submission applies."""
        return self._directory.owned_addresses(owner)

    def send(self, owner: str, raw: bytes, mail_from: str, recipients: list[str]) -> Sent:
        """Spool `raw` (already checked, Bcc already removed) for `recipients`, as submission does."""
        queue_id = new_queue_id()
        when = now_utc()
        message = _trace(self.hostname, queue_id, when) + _completed(raw, owner, self.hostname, when)
        envelope = Envelope(
            id=queue_id,
            mail_from=mail_from,
            recipients=tuple(EnvelopeRecipient(r) for r in recipients),
            s3_key=spool_key(queue_id, when),
            size=len(message),
            received_at=when.isoformat(),
            client_address="",
            helo="jmap",
            tls=True,
            auth_user=owner,
        )
        self._spool.put(envelope, message)
        return Sent(queue_id, when.strftime("%Y-%m-%dT%H:%M:%SZ"), len(message))

    # -- records of what was sent (EmailSubmission objects) --------------------------------

    def record(self, owner: str, queue_id: str, submission: dict[str, Any]) -> None:
        self._table.put_item(
            Item={"pk": owner_pk(owner), "sk": RECORD_PREFIX + queue_id, "submission": json.dumps(submission)}
        )

    def records(self, owner: str, after: str | None = None) -> list[dict[str, Any]]:
        """The owner's EmailSubmission objects, oldest first; only those newer than `after`."""
        condition = Key("pk").eq(owner_pk(owner))
        if after:
            condition = condition & Key("sk").gt(RECORD_PREFIX + after)
        else:
            condition = condition & Key("sk").begins_with(RECORD_PREFIX)
        items = query_all(self._table, condition)
        return [json.loads(i["submission"]) for i in items if str(i["sk"]).startswith(RECORD_PREFIX)]


def _trace(hostname: str, queue_id: str, when: Any) -> bytes:
    # As the gateway's Received: for submission, naming the protocol the message came by.
    line = f"Received: by {hostname} (mailpipe) with HTTPA id {queue_id};\r\n\t{format_datetime(when)}\r\n"
    return line.encode()


def _completed(raw: bytes, owner: str, hostname: str, when: Any) -> bytes:
    """Date and Message-ID added where missing, as submission adds them (RFC 6409 8)."""
    names = {name for name, _ in header_fields(raw, 0, scan_header(raw, 0, [])[0])}
    added = b""
    if "date" not in names:
        added += b"Date: " + format_datetime(when).encode() + b"\r\n"
    if "message-id" not in names:
        added += b"Message-ID: " + new_message_id(owner.rpartition("@")[2] or hostname).encode() + b"\r\n"
    return added + raw


def without_bcc(raw: bytes) -> bytes:
    """The message without its top-level Bcc fields (RFC 5322 3.6.3: recipients must not see them)."""
    end = raw.find(b"\r\n\r\n")
    sep = b"\r\n"
    if end < 0 or (0 <= raw.find(b"\n\n") < end):
        end, sep = raw.find(b"\n\n"), b"\n"
    if end < 0:
        return raw
    lines = raw[:end].split(sep)
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == b"bcc"
        if not dropping:
            kept.append(line)
    return sep.join(kept) + raw[end:]
