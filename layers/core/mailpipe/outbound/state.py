"""Per-recipient delivery state in DynamoDB: what `mailpipe queue list` shows and steers.

pk=msg#<envelope id>  sk=rcpt#<address>  status, attempts, first_attempt, next_attempt,
                                         last_reply, mail_from, warned, s3_key
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from mailpipe.dynamo import query_all, scan_all

QUEUED, DEFERRED, DELIVERED, FAILED, DELETED = "queued", "deferred", "delivered", "failed", "deleted"
FINAL = (DELIVERED, FAILED, DELETED)


@dataclass
class QueueEntry:
    envelope_id: str
    recipient: str
    status: str = QUEUED
    attempts: int = 0
    first_attempt: str = ""
    next_attempt: str = ""
    last_reply: str = ""
    mail_from: str = ""
    warned: bool = False
    message: str = ""  # the OutboundMessage (JSON) this recipient came in, for `queue retry`

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> QueueEntry:
        return cls(
            envelope_id=item["pk"][len("msg#") :],
            recipient=item["sk"][len("rcpt#") :],
            status=item.get("status", QUEUED),
            attempts=int(item.get("attempts", 0)),
            first_attempt=item.get("first_attempt", ""),
            next_attempt=item.get("next_attempt", ""),
            last_reply=item.get("last_reply", ""),
            mail_from=item.get("mail_from", ""),
            warned=bool(item.get("warned", False)),
            message=item.get("message", ""),
        )

    def to_item(self) -> dict[str, Any]:
        return {
            "pk": f"msg#{self.envelope_id}",
            "sk": f"rcpt#{self.recipient}",
            "status": self.status,
            "attempts": self.attempts,
            "first_attempt": self.first_attempt,
            "next_attempt": self.next_attempt,
            "last_reply": self.last_reply[:1000],
            "mail_from": self.mail_from,
            "warned": self.warned,
            "message": self.message,
        }


class QueueState:
    def __init__(self, table: Any) -> None:
        self._table = table

    def entries(self, envelope_id: str) -> dict[str, QueueEntry]:
        items = query_all(self._table, Key("pk").eq(f"msg#{envelope_id}"))
        return {entry.recipient: entry for entry in map(QueueEntry.from_item, items)}

    def save(self, entry: QueueEntry) -> None:
        self._table.put_item(Item=entry.to_item())

    def pending(self) -> list[QueueEntry]:
        """Every recipient not yet delivered or bounced (a scan: the queue is small by nature)."""
        items = scan_all(self._table, FilterExpression=Attr("status").is_in([QUEUED, DEFERRED]))
        return sorted(map(QueueEntry.from_item, items), key=lambda e: (e.first_attempt, e.envelope_id))

    def delete(self, envelope_id: str) -> int:
        """Give up on the message's pending recipients, without a bounce; returns how many."""
        pending = [e for e in self.entries(envelope_id).values() if not e.final]
        for entry in pending:
            entry.status = DELETED
            self.save(entry)
        return len(pending)


def iso(moment: datetime) -> str:
    return moment.isoformat()
