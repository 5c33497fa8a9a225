"""The outbound function's engine against a real SMTP sink, moto, and an injected clock.

Covers the whole 5-day schedule without waiting: temporary failures deferred and re-queued
with `not_before`, one delay warning after 4 hours, the bounce at the end, success and
NOTIFY handling, and `queue retry`/`delete`.
"""

from __future__ import annotations

import email
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from queues import in_spool
from smtp_sink import SmtpSink

from mailpipe import aws
from mailpipe.outbound.delivery import OutboundConfig, OutboundDelivery
from mailpipe.outbound.queue import OutboundMessage, OutboundQueue, OutboundRecipient
from mailpipe.outbound.smtp_client import DeliveryOptions
from mailpipe.outbound.state import DEFERRED, DELETED, DELIVERED, FAILED, QueueState
from mailpipe.outbound.transport_map import TransportMap
from mailpipe.spool import Envelope, new_queue_id, spool_key

MESSAGE = b"From: alice@example.test\r\nTo: friend@remote.test\r\nSubject: outbound\r\n\r\nhello\r\n"
START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def outbound(stack):
    """An engine on the stack's spool, a queue and state table of the test's own, and a sink."""
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    suffix = secrets.token_hex(4)
    queue_url = sqs.create_queue(QueueName=f"outbound-{suffix}")["QueueUrl"]
    table_name = f"outbound-state-{suffix}"
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    clock = Clock()
    with SmtpSink() as sink:
        config = OutboundConfig(
            hostname="mail.example.test",
            transports=TransportMap.from_text(
                f"remote.test=smtp:[127.0.0.1]:{sink.port},other.test=smtp:[127.0.0.1]:{sink.port}"
            ),
            options=DeliveryOptions(timeout=5, connect_timeout=5),
        )
        engine = OutboundDelivery(
            stack.spool(), QueueState(aws.table(table_name)), OutboundQueue(sqs, queue_url), config, clock
        )
        yield engine, sink, clock, queue_url
    sqs.delete_queue(QueueUrl=queue_url)
    dynamodb.delete_table(TableName=table_name)


def queued(
    stack, sender: str, recipients: list[OutboundRecipient], ret: str | None = None
) -> OutboundMessage:
    queue_id = new_queue_id()
    envelope = Envelope(queue_id, sender, (), spool_key(queue_id, START), len(MESSAGE), START.isoformat())
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=envelope.s3_key, Body=MESSAGE)
    return OutboundMessage(
        envelope_id=queue_id,
        s3_key=envelope.s3_key,
        mail_from=sender,
        auth_user=sender,
        received_at=START.isoformat(),
        size=len(MESSAGE),
        recipients=recipients,
        dsn_ret=ret,
    )


def requeued(queue_url: str) -> list[tuple[OutboundMessage, int]]:
    """What the engine put back on the queue, with the SQS delay it asked for."""
    sqs = aws.client("sqs")
    found = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            found.append((OutboundMessage.from_json(message["Body"]), 0))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def dsns(stack, sender: str, since: int, count: int = 1) -> list[email.message.Message]:
    """DSNs spooled for the sender, once the stack's pipeline stored them."""
    from conftest import wait_for

    def stored():
        store = stack.mail_store()
        if store.get_mailbox(sender, "INBOX") is None:
            return []
        messages = store.list_messages(sender, "INBOX")[1]
        return messages if len(messages) >= since + count else []

    messages = wait_for(stored, timeout=30)
    return [email.message_from_bytes(stack.mail_store().read_body(m)) for m in messages[since:]]


def test_delivered_first_time(stack, new_user, outbound) -> None:
    engine, sink, _, queue_url = outbound
    alice = new_user()
    message = queued(stack, alice, [OutboundRecipient("friend@remote.test")])
    engine.process(message)
    [transaction] = sink.transactions
    assert transaction.data == MESSAGE and transaction.mail_from == alice
    assert engine.state.entries(message.envelope_id)["friend@remote.test"].status == DELIVERED
    assert requeued(queue_url) == []
    assert not in_spool(stack, spooled(message))  # every recipient final: the spool is done with it
    engine.process(message)  # a duplicate SQS delivery sends nothing twice
    assert len(sink.transactions) == 1


def spooled(message: OutboundMessage) -> Envelope:
    return Envelope(
        message.envelope_id, message.mail_from, (), message.s3_key, message.size, START.isoformat()
    )


def test_five_days_of_retries_then_a_bounce(stack, new_user, outbound) -> None:
    engine, sink, clock, queue_url = outbound
    alice = new_user()
    sink.recipients["friend@remote.test"] = "451 4.2.0 mailbox busy"
    message = queued(stack, alice, [OutboundRecipient("friend@remote.test")])
    attempts, warnings_seen, inbox_before = 0, 0, 0
    while True:
        engine.process(message)
        attempts += 1
        entry = engine.state.entries(message.envelope_id)["friend@remote.test"]
        if entry.status == FAILED:
            break
        assert entry.status == DEFERRED and attempts < 60
        assert in_spool(stack, spooled(message))  # a deferred recipient still needs the message
        assert delayed(queue_url) >= 1, "the retry waits on the queue with an SQS delay"
        due = datetime.fromisoformat(entry.next_attempt)
        # What SQS hands back: the same recipients, not before `due`. Early, it only goes back.
        message = replace(message, not_before=entry.next_attempt)
        engine.process(message)
        assert engine.state.entries(message.envelope_id)["friend@remote.test"].attempts == attempts
        clock.now = due
        if entry.warned and not warnings_seen:
            warnings_seen = 1
            [warning] = dsns(stack, alice, inbox_before)
            inbox_before += 1
            assert warning.get_content_type() == "multipart/report"
            status = warning.get_payload()[1].as_string()
            assert "Action: delayed" in status and "Will-Retry-Until:" in status
            assert clock.now - START >= timedelta(hours=4)
    assert clock.now - START == timedelta(days=5)
    assert 30 <= attempts <= 40 and warnings_seen == 1
    [bounce] = dsns(stack, alice, inbox_before)
    status = bounce.get_payload()[1].as_string()
    assert "Action: failed" in status and "Status: 4.2.0" in status
    assert "451 4.2.0 mailbox busy" in status
    assert len(sink.transactions) == 0
    assert not in_spool(stack, spooled(message))  # bounced with its copy: the spool is done with it


def delayed(queue_url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def test_permanent_failure_bounces_at_once_but_not_with_notify_never(stack, new_user, outbound) -> None:
    engine, sink, _, queue_url = outbound
    alice = new_user()
    sink.recipients["gone@remote.test"] = "550 5.1.1 no such user"
    sink.recipients["quiet@remote.test"] = "550 5.1.1 no such user"
    message = queued(
        stack,
        alice,
        [
            OutboundRecipient("gone@remote.test", None, "rfc822;Gone+2B41@remote.test"),
            OutboundRecipient("quiet@remote.test", ["NEVER"]),
            OutboundRecipient("friend@remote.test", ["SUCCESS", "FAILURE"]),
        ],
        ret="FULL",
    )
    engine.process(message)
    states = {r: e.status for r, e in engine.state.entries(message.envelope_id).items()}
    assert states == {
        "gone@remote.test": FAILED,
        "quiet@remote.test": FAILED,
        "friend@remote.test": DELIVERED,
    }
    reports = dsns(stack, alice, 0, count=2)
    assert len(reports) == 2  # one failure DSN (gone only), one success DSN (friend): quiet asked for none
    statuses = sorted(report.get_payload()[1].as_string() for report in reports)
    failure = next(s for s in statuses if "Action: failed" in s)
    assert "gone@remote.test" in failure and "quiet@remote.test" not in failure
    assert "Original-Recipient: rfc822; Gone+41@remote.test" in failure  # ORCPT is xtext: decoded
    assert any("Action: relayed" in s and "friend@remote.test" in s for s in statuses)
    assert requeued(queue_url) == []


def test_each_result_goes_to_its_own_recipient_whatever_the_domain_order(stack, new_user, outbound) -> None:
    """Recipients are sent per domain; their results must come back to the right recipient."""
    engine, sink, _, _ = outbound
    sink.recipients["gone@other.test"] = "550 5.1.1 no such user"
    message = queued(
        stack,
        new_user(),
        [
            OutboundRecipient("ann@remote.test"),
            OutboundRecipient("gone@other.test"),
            OutboundRecipient("carl@remote.test"),
        ],
    )
    engine.process(message)
    states = {r: e.status for r, e in engine.state.entries(message.envelope_id).items()}
    assert states == {"ann@remote.test": DELIVERED, "gone@other.test": FAILED, "carl@remote.test": DELIVERED}
    assert "no such user" in engine.state.entries(message.envelope_id)["gone@other.test"].last_reply


def test_no_bounce_for_a_null_sender(stack, outbound) -> None:
    engine, sink, _, _ = outbound
    sink.recipients["gone@remote.test"] = "550 5.1.1 no such user"
    message = queued(stack, "", [OutboundRecipient("gone@remote.test")])
    engine.process(message)
    assert engine.state.entries(message.envelope_id)["gone@remote.test"].status == FAILED


def test_queue_retry_and_delete(stack, new_user, outbound) -> None:
    engine, sink, _, queue_url = outbound
    alice = new_user()
    sink.recipients["friend@remote.test"] = "451 4.2.0 busy"
    message = queued(stack, alice, [OutboundRecipient("friend@remote.test")])
    engine.process(message)
    assert [e.envelope_id for e in engine.state.pending()].count(message.envelope_id) == 1
    del sink.recipients["friend@remote.test"]
    assert engine.retry_now(message.envelope_id) == 1
    [(again, _)] = requeued(queue_url)  # due now: no SQS delay
    assert again.not_before is None
    engine.process(again)
    assert engine.state.entries(message.envelope_id)["friend@remote.test"].status == DELIVERED
    other = queued(stack, alice, [OutboundRecipient("friend@remote.test")])
    sink.recipients["friend@remote.test"] = "451 4.2.0 busy"
    engine.process(other)
    assert engine.state.delete(other.envelope_id) == 1
    engine.process(other)  # a queued copy finds the recipient deleted and does nothing
    assert len(sink.transactions) == 1  # only the retried message ever got through
    assert engine.state.entries(other.envelope_id)["friend@remote.test"].status == DELETED
