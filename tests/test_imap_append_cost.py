"""What an APPEND costs in AWS requests (issue 14): the S3 PUT and the one transaction, nothing else.

Counting the user's quota usage at every APPEND listed every mailbox (a dozen requests, most of
an APPEND's time); now it is counted again only near the limit or after a minute
(mailpipe/quota_cache.py). Requests are counted on the gateway's own clients, in the dev stack.
"""

from __future__ import annotations

import imaplib

from conftest import PASSWORD


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


def test_a_multiappend_costs_a_put_each_and_a_transaction_per_99(stack, owner, gateway_requests) -> None:
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    try:
        client.login(owner, PASSWORD)
        assert client.append("INBOX", None, None, message(0))[0] == "OK"
        gateway_requests.clear()
        wire = b"a APPEND INBOX"
        for n in range(1, 151):
            wire += b" {%d+}\r\n" % len(message(n)) + message(n)
        client.send(wire + b"\r\n")
        assert client.readline().startswith(b"a OK [APPENDUID ")
        assert gateway_requests == {"s3.PutObject": 150, "dynamodb.TransactWriteItems": 2}
    finally:
        client.logout()
