"""What an APPEND costs in AWS requests (issue 14): the S3 PUT and the one transaction, nothing else.

Counting the user's quota usage at every APPEND listed every mailbox (a dozen requests, most of
an APPEND's time); now it is counted again only near the limit or after a minute
(mailpipe/quota_cache.py). Requests are counted on the gateway's own clients, in the dev stack.
"""

from __future__ import annotations

import imaplib

import pytest
from conftest import PASSWORD

from mailpipe import aws


def message(n: int) -> bytes:
    return b"Subject: cost %d\r\nFrom: a@example.test\r\n\r\nbody\r\n" % n


def test_an_append_costs_the_put_and_one_transaction(stack, owner, gateway_requests) -> None:
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    try:
        client.login(owner, PASSWORD)
        assert client.append("INBOX", None, None, message(0))[0] == "OK"  # counts the quota once
        gateway_requests.clear()
        for n in range(1, 6):
            assert client.append("INBOX", "(\\Seen)", None, message(n))[0] == "OK"
        assert gateway_requests == {"s3.PutObject": 5, "dynamodb.TransactWriteItems": 5}
    finally:
        client.logout()


@pytest.mark.parametrize(("k", "transactions"), [(2, 1), (99, 1), (100, 2), (150, 2)])
def test_a_multiappend_costs_a_put_each_and_a_transaction_per_99(
    stack, owner, gateway_requests, k, transactions
) -> None:
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    try:
        client.login(owner, PASSWORD)
        assert client.append("INBOX", None, None, message(0))[0] == "OK"
        gateway_requests.clear()
        wire = b"a APPEND INBOX"
        for n in range(1, k + 1):
            wire += b" {%d+}\r\n" % len(message(n)) + message(n)
        client.send(wire + b"\r\n")
        assert client.readline().startswith(b"a OK [APPENDUID ")
        assert gateway_requests == {"s3.PutObject": k, "dynamodb.TransactWriteItems": transactions}
    finally:
        client.logout()


def test_an_append_sends_its_body_without_waiting_for_100_continue(stack, owner) -> None:
    """botocore asks for `100 Continue` before any PUT's body: a round trip more per APPEND. An
    APPEND's body is sent by mailpipe.s3_puts, which never asks; the client's other PUTs (the
    spool's) leave it out for bodies under aws.CONTINUE_FROM_BYTES, and only those."""
    s3 = stack.imap.context.store._s3
    bucket = stack.imap.context.store._bucket
    sent: list[tuple[str | None, str]] = []

    def record(request, **_kwargs: object) -> None:
        sent.append((request.headers.get("Expect"), request.url))

    s3.meta.events.register("before-send.s3.PutObject", record)
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    try:
        client.login(owner, PASSWORD)
        assert client.append("INBOX", None, None, message(1))[0] == "OK"
        assert sent == []  # not through botocore
        client.select("INBOX")
        typ, data = client.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK" and data[-2][1] == message(1)
        s3.put_object(Bucket=bucket, Key=f"continue/small/{owner}", Body=message(2))
        assert sent[-1][0] is None
        big = b"x" * (aws.CONTINUE_FROM_BYTES + 1)
        s3.put_object(Bucket=bucket, Key=f"continue/{owner}", Body=big)
        assert sent[-1][0] in ("100-continue", b"100-continue")
        got = s3.get_object(Bucket=bucket, Key=f"continue/{owner}")["Body"].read()
        assert got == big
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", record)
        client.logout()
