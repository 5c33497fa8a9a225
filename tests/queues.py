"""Test queues wired like the stack's, run by a local poller, and envelopes to put on them."""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mailpipe import aws
from mailpipe.spool import Envelope, EnvelopeRecipient, new_queue_id, now_utc, spool_key
from mailpipe_tools.local.event_source import SqsPoller
from mailpipe_tools.local.moto_server import HIDDEN_PATH

MOTO_ACCOUNT = "123456789012"
MOTO_REGION = "us-east-1"


@dataclass
class FunctionQueue:
    sqs: Any
    url: str
    dlq: str
    poller: SqsPoller

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def drain(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            self.poller.poll_once()

    def depth(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def seconds_hidden(self, message_id: str) -> float:
        """How long SQS still hides the message: asked of the moto server (moto_server.HIDDEN_PATH),
        the one thing the SQS API does not tell."""
        endpoint = self.sqs.meta.endpoint_url
        with urllib.request.urlopen(f"{endpoint}{HIDDEN_PATH}?queue={self.name}", timeout=10) as answer:
            return json.loads(answer.read())[message_id]


@contextmanager
def function_queue(stack, function: str, max_receives: int) -> Iterator[FunctionQueue]:
    """A queue with a DLQ of its own and a poller on it running the stack's real handler."""
    sqs = aws.client("sqs")
    name = f"test-{function.lower()}-{secrets.token_hex(4)}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    poller = SqsPoller(sqs, url, arn, stack.functions[function], wait_seconds=0, retry_after=0)
    try:
        yield FunctionQueue(sqs, url, dlq_url, poller)
    finally:
        for queue_url in (url, dlq_url):
            sqs.delete_queue(QueueUrl=queue_url)


def spooled(
    stack,
    rcpts: list[str],
    body: bytes | None = None,
    upload: bool = True,
    mail_from: str = "a@remote.test",
    auth_user: str | None = None,
) -> tuple[Envelope, bytes]:
    queue_id = new_queue_id()
    when = now_utc()
    raw = body or f"Subject: {queue_id}\r\nFrom: {mail_from}\r\n\r\nhello\r\n".encode()
    envelope = Envelope(
        id=queue_id,
        mail_from=mail_from,
        recipients=tuple(EnvelopeRecipient(rcpt) for rcpt in rcpts),
        s3_key=spool_key(queue_id, when),
        size=len(raw),
        received_at=when.isoformat(),
        auth_user=auth_user,
    )
    if upload:
        upload_raw(stack, envelope, raw)
    return envelope, raw


def upload_raw(stack, envelope: Envelope, raw: bytes) -> None:
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=envelope.s3_key, Body=raw)


def in_spool(stack, envelope: Envelope) -> bool:
    listed = aws.client("s3").list_objects_v2(Bucket=stack.resources.mail_bucket, Prefix=envelope.s3_key)
    return listed.get("KeyCount", 0) > 0
