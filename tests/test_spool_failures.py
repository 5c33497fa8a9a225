"""DATA is answered 250 only once S3 and SQS both have the message: S3 or SQS down gives 451."""

from __future__ import annotations

import smtplib
import time

import pytest
from conftest import inbox, wait_for_inbox
from faults import CuttableProxy

from mailpipe import aws

MESSAGE = b"From: alice@remote.test\r\nSubject: spool test\r\n\r\nbody\r\n"


@pytest.fixture
def gateway_with(stack):
    """A second gateway, wired like the stack's, whose S3 or SQS traffic goes through a cuttable proxy."""
    started = []

    def make(service: str):
        proxy = CuttableProxy(stack.moto.port)
        endpoints = {"s3_endpoint": None, "sqs_endpoint": None, f"{service}_endpoint": proxy.endpoint}
        gateway = stack.build_gateway(stack.spool(**endpoints))
        stack.loop.run(gateway.start())
        started.append((gateway, proxy))
        return gateway, proxy

    yield make
    for gateway, proxy in started:
        stack.loop.run(gateway.stop())
        proxy.close()


def queued_messages(stack) -> int:
    attrs = aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.resources.inbound_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.mark.parametrize("service", ["s3", "sqs"])
def test_storage_down_during_data_gives_451_and_stores_nothing(
    stack, new_user, gateway_with, service
) -> None:
    bob = new_user()
    gateway, proxy = gateway_with(service)
    proxy.up = False
    client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=60)
    client.ehlo("client.test")
    client.mail("alice@remote.test")
    assert client.rcpt(bob)[0] == 250
    code, text = client.data(MESSAGE)
    assert (code, text[:6]) == (451, b"4.3.0 ")
    # The client keeps its copy and retries later; once storage is back that works.
    proxy.up = True
    client.rset()
    client.sendmail("alice@remote.test", [bob], MESSAGE)
    client.quit()
    stored = wait_for_inbox(stack, bob, 1)
    time.sleep(2)  # a second copy, had the failed attempt leaked one, would arrive by now
    assert len(inbox(stack, bob)) == len(stored) == 1


def test_nothing_reaches_the_queue_when_s3_fails(stack, new_user, gateway_with) -> None:
    bob = new_user()
    gateway, proxy = gateway_with("s3")
    proxy.up = False
    before = queued_messages(stack)
    client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=60)
    client.ehlo("client.test")
    with pytest.raises(smtplib.SMTPDataError):
        client.sendmail("alice@remote.test", [bob], MESSAGE)
    client.quit()
    assert queued_messages(stack) <= before
