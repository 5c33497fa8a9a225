"""The inbound function fed by the local SQS poller: retries, dead letters, duplicates, aliases."""

from __future__ import annotations

import json
import secrets

import pytest
from conftest import DOMAIN, inbox

from mailpipe import aws
from mailpipe.spool import Envelope, new_queue_id, now_utc, spool_key
from mailpipe_gateway.local.event_source import SqsPoller

MAX_RECEIVES = 5


@pytest.fixture
def queue(stack):
    """A queue with a DLQ of its own and a poller on it running the real inbound handler."""
    sqs = aws.client("sqs")
    name = f"test-inbound-{secrets.token_hex(4)}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    poller = SqsPoller(sqs, url, arn, stack.functions["InboundFunction"], wait_seconds=0, retry_after=0)
    yield sqs, url, dlq_url, poller
    for queue_url in (url, dlq_url):
        sqs.delete_queue(QueueUrl=queue_url)


def spooled(
    stack, rcpts: list[str], body: bytes | None = None, upload: bool = True
) -> tuple[Envelope, bytes]:
    queue_id = new_queue_id()
    when = now_utc()
    raw = body or f"Subject: {queue_id}\r\nFrom: a@remote.test\r\n\r\nhello\r\n".encode()
    envelope = Envelope(
        id=queue_id,
        mail_from="a@remote.test",
        rcpt_tos=rcpts,
        s3_key=spool_key(queue_id, when),
        size=len(raw),
        received_at=when.isoformat(),
    )
    if upload:
        upload_raw(stack, envelope, raw)
    return envelope, raw


def upload_raw(stack, envelope: Envelope, raw: bytes) -> None:
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=envelope.s3_key, Body=raw)


def drain(poller: SqsPoller, rounds: int = 3) -> None:
    for _ in range(rounds):
        poller.poll_once()


def depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def subjects(stack, owner: str) -> list[str]:
    return [m.summary["envelope"]["subject"] for m in inbox(stack, owner)]


def test_a_failing_record_is_retried_and_the_rest_stored_once(stack, new_user, queue) -> None:
    sqs, url, _dlq, poller = queue
    bob = new_user()
    good = [spooled(stack, [bob]) for _ in range(2)]
    late, late_raw = spooled(stack, [bob], upload=False)  # its body is not in S3 yet: delivery fails
    for envelope in [good[0][0], late, good[1][0]]:
        sqs.send_message(QueueUrl=url, MessageBody=envelope.to_json())
    drain(poller, rounds=2)
    assert sorted(subjects(stack, bob)) == sorted(e.id for e, _ in good)
    assert depth(sqs, url) == 1
    upload_raw(stack, late, late_raw)
    drain(poller)
    assert sorted(subjects(stack, bob)) == sorted([late.id] + [e.id for e, _ in good])
    assert depth(sqs, url) == 0


def test_a_poison_record_ends_in_the_dead_letter_queue(stack, new_user, queue) -> None:
    sqs, url, dlq, poller = queue
    bob = new_user()
    good, _ = spooled(stack, [bob])
    sqs.send_message(QueueUrl=url, MessageBody="this is not an envelope")
    sqs.send_message(QueueUrl=url, MessageBody=good.to_json())
    drain(poller, rounds=MAX_RECEIVES + 2)
    assert depth(sqs, url) == 0
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["this is not an envelope"]
    assert subjects(stack, bob) == [good.id]


def test_duplicate_delivery_makes_one_mailbox_entry(stack, new_user, queue) -> None:
    sqs, url, _dlq, poller = queue
    bob = new_user()
    envelope, _ = spooled(stack, [bob])
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=envelope.to_json())
    drain(poller)
    sqs.send_message(QueueUrl=url, MessageBody=envelope.to_json())
    drain(poller)
    assert subjects(stack, bob) == [envelope.id]
    # The repeats were answered by Powertools Idempotency from the stored result.
    table = aws.table(stack.environment["MAILPIPE_IDEMPOTENCY_TABLE"])
    records = [item for item in table.scan()["Items"] if envelope.id in item.get("data", "")]
    assert [record["status"] for record in records] == ["COMPLETED"]


def test_aliases_expand_to_every_target_once(stack, new_user, queue) -> None:
    sqs, url, _dlq, poller = queue
    bob, carol = new_user(), new_user()
    team = f"team-{secrets.token_hex(3)}@{DOMAIN}"
    stack.directory().add_alias(team, [bob, carol])
    envelope, raw = spooled(stack, [team, bob])
    sqs.send_message(QueueUrl=url, MessageBody=envelope.to_json())
    drain(poller)
    assert subjects(stack, bob) == [envelope.id]
    assert subjects(stack, carol) == [envelope.id]
    [stored] = inbox(stack, carol)
    assert stack.mail_store().read_body(stored) == raw


def test_every_user_has_the_default_mailboxes(stack, new_user, queue) -> None:
    sqs, url, _dlq, poller = queue
    dave = new_user()
    envelope, _ = spooled(stack, [dave])
    sqs.send_message(QueueUrl=url, MessageBody=envelope.to_json())
    drain(poller)
    mailboxes = {m.name: m.special_use for m in stack.mail_store().list_mailboxes(dave)}
    assert mailboxes == {
        "INBOX": None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
