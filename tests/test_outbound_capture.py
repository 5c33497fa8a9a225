"""The `capture:FOLDER` transport: mail that would leave is written to a folder, nothing is sent."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from queues import in_spool
from test_outbound_delivery import MESSAGE, queued, spooled

from mailpipe import aws
from mailpipe.outbound.delivery import OutboundConfig, OutboundDelivery
from mailpipe.outbound.queue import OutboundQueue, OutboundRecipient
from mailpipe.outbound.state import DELIVERED, QueueState
from mailpipe.outbound.transport_map import Route, TransportMap, TransportMapError, parse_route


def test_capture_route_notation() -> None:
    assert parse_route("capture:/var/tmp/outbox") == Route("capture", "/var/tmp/outbox", mx_lookup=False)
    assert str(parse_route("capture:/var/tmp/outbox")) == "capture:/var/tmp/outbox"
    with pytest.raises(TransportMapError, match="needs a folder"):
        parse_route("capture")


@pytest.fixture
def engine(stack, tmp_path: Path):
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    suffix = secrets.token_hex(4)
    queue_url = sqs.create_queue(QueueName=f"capture-{suffix}")["QueueUrl"]
    table_name = f"capture-state-{suffix}"
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    config = OutboundConfig(
        hostname="mail.example.test", transports=TransportMap.parse([f"*=capture:{tmp_path / 'outbox'}"])
    )
    yield OutboundDelivery(
        stack.spool(), QueueState(aws.table(table_name)), OutboundQueue(sqs, queue_url), config
    )
    sqs.delete_queue(QueueUrl=queue_url)
    dynamodb.delete_table(TableName=table_name)


def test_remote_mail_is_written_to_the_folder_per_domain(stack, new_user, engine, tmp_path: Path) -> None:
    alice = new_user()
    recipients = [OutboundRecipient(a) for a in ("friend@remote.test", "x@other.test", "y@remote.test")]
    message = queued(stack, alice, recipients)
    engine.process(message)
    outbox = tmp_path / "outbox"
    assert sorted(p.name for p in outbox.iterdir()) == [
        f"{message.envelope_id}.other.test.eml",
        f"{message.envelope_id}.remote.test.eml",
    ]
    written = (outbox / f"{message.envelope_id}.remote.test.eml").read_bytes()
    assert written == (
        f"Return-Path: <{alice}>\r\nX-Original-To: friend@remote.test, y@remote.test\r\n".encode() + MESSAGE
    )
    entries = engine.state.entries(message.envelope_id)
    assert {e.status for e in entries.values()} == {DELIVERED}
    assert entries["friend@remote.test"].last_reply.startswith("captured in ")
    assert not in_spool(stack, spooled(message))
