"""The gateway's recipient check: its cache, and what the client hears when the directory is down."""

from __future__ import annotations

import asyncio
import smtplib

from faults import CuttableProxy

from mailpipe import aws
from mailpipe.directory import Verdict
from mailpipe_gateway.recipient_check import DirectoryUnavailable, RecipientChecker, lambda_lookup


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_refusals_are_cached_briefly_and_deliverable_answers_never(stack) -> None:
    directory = stack.directory()
    asked: list[str] = []

    def lookup(address: str) -> dict:
        asked.append(address)
        return {"verdict": directory.lookup(address).verdict.value}

    clock = Clock()
    checker = RecipientChecker(lookup, negative_ttl=15, clock=clock)
    check = lambda address: asyncio.run(checker.check(address))  # noqa: E731
    assert check("bob@example.test") is Verdict.DELIVERABLE
    assert check("BOB@example.test") is Verdict.DELIVERABLE
    assert check("ghost@example.test") is Verdict.UNKNOWN_USER
    assert check("ghost@example.test") is Verdict.UNKNOWN_USER
    assert asked == ["bob@example.test", "BOB@example.test", "ghost@example.test"]
    clock.now = 16  # the refusal has expired
    check("ghost@example.test")
    assert asked[-1] == "ghost@example.test" and len(asked) == 4


def test_disabling_or_deleting_a_user_refuses_the_next_rcpt(stack, new_user) -> None:
    """Through the dev stack's gateway, whose checker has just said 250 for the same user."""
    directory = stack.directory()
    ann, carl = new_user(), new_user()
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as client:
        client.ehlo("client.test")
        client.mail("sender@remote.test")
        assert client.rcpt(ann)[0] == 250
        assert client.rcpt(carl)[0] == 250
        directory.set_disabled(ann, True)
        directory.delete_user(carl)
        code, text = client.rcpt(ann)
        assert (code, text[:5]) == (550, b"5.2.1"), text
        code, text = client.rcpt(carl)
        assert (code, text[:5]) == (550, b"5.1.1"), text


def test_failures_are_not_cached(stack) -> None:
    calls = 0

    def lookup(address: str) -> dict:
        nonlocal calls
        calls += 1
        raise ConnectionError("directory down")

    checker = RecipientChecker(lookup)
    for _ in range(2):
        try:
            asyncio.run(checker.check("bob@example.test"))
        except DirectoryUnavailable as exc:
            assert "directory down" in str(exc)
    assert calls == 2


def gateway_with_lookup(stack, lookup):
    from mailpipe_gateway.smtp.app import build_smtp_gateway
    from mailpipe_gateway.smtp.settings import GatewaySettings

    return build_smtp_gateway(GatewaySettings(port=0, hostname="mail.example.test"), stack.spool(), lookup)


def test_directory_unreachable_gives_451(stack) -> None:
    proxy = CuttableProxy(stack.moto.port)
    proxy.up = False
    # The AWS transport, as the gateway uses it on ECS, with the Lambda endpoint unreachable.
    gateway = gateway_with_lookup(stack, lambda_lookup(aws.client("lambda", proxy.endpoint), "validate"))
    stack.loop.run(gateway.start())
    try:
        client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=60)
        client.ehlo("client.test")
        client.mail("alice@remote.test")
        code, text = client.rcpt("bob@example.test")
        assert (code, text[:6]) == (451, b"4.3.0 ")
        client.quit()
    finally:
        stack.loop.run(gateway.stop())
        proxy.close()


def test_a_failing_validation_function_gives_451(stack) -> None:
    # moto answers the invoke of a function that does not exist with an error, as Lambda would.
    gateway = gateway_with_lookup(stack, lambda_lookup(aws.client("lambda"), "no-such-function"))
    stack.loop.run(gateway.start())
    try:
        client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=60)
        client.ehlo("client.test")
        client.mail("alice@remote.test")
        assert client.rcpt("bob@example.test")[0] == 451
        client.quit()
    finally:
        stack.loop.run(gateway.stop())
