"""The outbound queue: remote recipients of authenticated mail, waiting for the delivery function.

The inbound function puts one message per spooled envelope here, with every remote
recipient and its DSN parameters; the body stays in the spool. A redelivered inbound
record may put the same envelope here twice: the delivery function keeps per-recipient
state keyed by envelope id and recipient, so a second copy finds them done.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mailpipe.spool import EnvelopeRecipient

# A remote recipient is the envelope's recipient handed on as it is: address, NOTIFY, ORCPT as sent.
OutboundRecipient = EnvelopeRecipient


@dataclass(frozen=True)
class OutboundMessage:
    envelope_id: str
    s3_key: str
    mail_from: str
    auth_user: str
    received_at: str
    size: int
    recipients: list[OutboundRecipient] = field(default_factory=list)
    dsn_ret: str | None = None
    dsn_envid: str | None = None
    not_before: str | None = None  # ISO time: a retry waits in hops of at most 15 minutes (SQS delay)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> OutboundMessage:
        data: dict[str, Any] = json.loads(text)
        recipients = [OutboundRecipient(**r) for r in data.pop("recipients", [])]
        return cls(recipients=recipients, **data)


class OutboundQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self.queue_url = queue_url

    def put(self, message: OutboundMessage, delay_seconds: int = 0) -> None:
        self._sqs.send_message(
            QueueUrl=self.queue_url, MessageBody=message.to_json(), DelaySeconds=delay_seconds
        )
