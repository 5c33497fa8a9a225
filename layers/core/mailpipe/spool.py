"""The spool: raw received messages in S3 plus their envelopes on the inbound queue.

The gateway writes the S3 object first and the SQS envelope second, and answers
250 only after both succeeded. Downstream reads only envelopes, so an object whose
envelope never made it to SQS is never processed; the bucket's lifecycle rule on
`spool/` removes it, long after any envelope could still be queued for it.

The functions delete an object once its message is fully handled (stored, or delivered
and bounced). A redrive from a dead-letter queue `touch`es the object, restarting its
lifecycle age, so that the backstop rule never removes an object whose envelope was put
back on a queue (docs/architecture.md, "Never lost").
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

SPOOL_PREFIX = "spool/"


def new_queue_id() -> str:
    """A time-ordered, unguessable id (ms since epoch + 64 random bits), like Postfix's long queue ids."""
    return f"{int(time.time() * 1000):012X}{secrets.token_hex(8).upper()}"


@dataclass(frozen=True)
class EnvelopeRecipient:
    """One recipient of a message, with its DSN parameters (RFC 3461) as the client sent them.

    The spool's envelopes and the outbound queue's messages both carry these.
    """

    address: str
    notify: tuple[str, ...] | None = None  # ("NEVER",) or some of SUCCESS, FAILURE, DELAY; None: not given
    orcpt: str | None = None  # the original recipient, "addr-type;xtext"

    def __post_init__(self) -> None:
        if self.notify is not None and not isinstance(self.notify, tuple):
            object.__setattr__(self, "notify", tuple(self.notify))  # a JSON list, read back


@dataclass(frozen=True)
class Envelope:
    """What SMTP said about a message, besides the message itself."""

    id: str
    mail_from: str
    recipients: tuple[EnvelopeRecipient, ...]
    s3_key: str
    size: int
    received_at: str
    client_address: str = ""
    helo: str = ""
    tls: bool = False
    auth_user: str | None = None
    mail_options: list[str] = field(default_factory=list)
    # The DSN extension (RFC 3461): RET and ENVID from MAIL FROM (each recipient has its own).
    dsn_ret: str | None = None
    dsn_envid: str | None = None
    # The gateway's checks (DMARC p=quarantine, the spam filter) found the message suspect: local
    # copies go to each recipient's Junk mailbox instead of the INBOX.
    junk: bool = False

    @property
    def rcpt_tos(self) -> list[str]:
        """The recipients' addresses, in RCPT TO order."""
        return [recipient.address for recipient in self.recipients]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        # On the queue the recipients keep their JSON shape: the addresses in `rcpt_tos` and their
        # DSN parameters, in the same order, in `rcpt_dsn`. Envelopes already queued are read
        # as they are, and gateways and functions of different releases (during a deployment,
        # or a redrive of an old dead letter) read each other's.
        data = asdict(self)
        del data["recipients"]
        data["rcpt_tos"] = self.rcpt_tos
        data["rcpt_dsn"] = [
            {"notify": list(r.notify) if r.notify else None, "orcpt": r.orcpt} for r in self.recipients
        ]
        return data

    @classmethod
    def from_json(cls, text: str) -> Envelope:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        if not isinstance(data, dict):
            raise ValueError("envelope is not a JSON object")
        addresses = data.get("rcpt_tos")
        if not isinstance(addresses, list):
            raise ValueError("envelope lacks id, s3_key or rcpt_tos")
        # Envelopes spooled before the DSN extension have no rcpt_dsn.
        dsn = data.get("rcpt_dsn")
        dsn = dsn if isinstance(dsn, list) else []
        recipients = tuple(
            _recipient(address, dsn[index] if index < len(dsn) else None)
            for index, address in enumerate(addresses)
        )
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known.pop("recipients", None)
        envelope = cls(recipients=recipients, **known)
        if not envelope.id or not envelope.s3_key:
            raise ValueError("envelope lacks id, s3_key or rcpt_tos")
        if not str(envelope.s3_key).startswith(SPOOL_PREFIX):
            # The functions delete an envelope's object once done: never one outside the spool.
            raise ValueError(f"envelope's s3_key is outside {SPOOL_PREFIX}")
        return envelope


def _recipient(address: Any, dsn: Any) -> EnvelopeRecipient:
    # Not checked here: an address that is no address is the inbound function's to answer
    # (a poison envelope, reported), not a reason to drop the envelope unread.
    dsn = dsn if isinstance(dsn, dict) else {}
    notify = dsn.get("notify")
    return EnvelopeRecipient(address, tuple(notify) if isinstance(notify, list) else None, dsn.get("orcpt"))


def spool_key(queue_id: str, when: datetime) -> str:
    return f"{SPOOL_PREFIX}{when:%Y/%m/%d}/{queue_id}.eml"


def now_utc() -> datetime:
    return datetime.now(UTC)


class Spool:
    """Writes to and reads from the spool. Clients are passed in so S3 and SQS can fail independently."""

    def __init__(self, s3: Any, sqs: Any, bucket: str, queue_url: str) -> None:
        self._s3 = s3
        self._sqs = sqs
        self.bucket = bucket
        self.queue_url = queue_url

    def put(self, envelope: Envelope, raw: bytes) -> None:
        """Make the message durable, then announce it. Raises if either step fails."""
        self._s3.put_object(Bucket=self.bucket, Key=envelope.s3_key, Body=raw, ContentType="message/rfc822")
        # If SendMessage fails the object stays: the send may have reached SQS even
        # though we saw an error, and then the envelope needs its object. Orphans
        # expire with the spool lifecycle rule.
        self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=envelope.to_json())

    def read(self, envelope: Envelope) -> bytes:
        return self._s3.get_object(Bucket=self.bucket, Key=envelope.s3_key)["Body"].read()

    def discard(self, envelope: Envelope) -> None:
        """Delete the object of a message nobody needs any more.

        A failure is only logged: the message is safe either way, and the lifecycle rule
        removes a leftover object later.
        """
        if not envelope.s3_key.startswith(SPOOL_PREFIX):
            log.warning("%s names %s, outside the spool: not deleted", envelope.id, envelope.s3_key)
            return
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=envelope.s3_key)
        except Exception:
            log.warning("could not delete %s; the lifecycle rule will", envelope.s3_key, exc_info=True)

    def touch(self, key: str) -> bool:
        """Restart the object's lifecycle age (a copy onto itself); False if there is no such object."""
        if not key.startswith(SPOOL_PREFIX):
            return False
        try:
            self._s3.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                ContentType="message/rfc822",
                Metadata={"touched": now_utc().isoformat()},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise
        return True
