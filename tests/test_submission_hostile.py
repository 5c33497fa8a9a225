"""Submission against a user who tries to pass as someone else, or to break the AUTH exchange."""

from __future__ import annotations

import base64
import os
import smtplib

import pytest
import test_smtp_hostile
import test_submission
from conftest import PASSWORD
from test_submission import client

# Fixtures of those modules, used here too.
spooled = test_submission.spooled
logged_errors = test_smtp_hostile.logged_errors

BODY = "To: friend@elsewhere.test\r\nSubject: out\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        'From: "Eve (CEO) <{eve}>" <{alice}>',
        "From: =?utf-8?q?{eve_q}?= <{alice}>",
        "From: =?utf-8?b?{eve_b}?= <{alice}>",
        "From: {alice} ({eve})",
        'From: "{eve_spaced}" <{alice}>',
        "From: {alice}\r\nSender: {eve}",
        "From: {alice}\r\nResent-From: {eve}",
        "From: {alice}\r\nResent-Sender: Eve <{eve}>",
        "From: {alice}\r\nResent-From: =?utf-8?q?{eve_q}?= <{alice}>",
        "From: =?no-such-charset?q?x?= <{alice}>",
        "From: " + "(" * 5000 + "{alice}",
        "Subject: no From at all",
    ],
)
def test_sender_fields_that_show_someone_else_are_refused(
    stack, new_user, spooled, logged_errors, headers: str
) -> None:
    gateway, envelopes = spooled
    alice, eve = new_user(), new_user()
    local, domain = eve.split("@")
    filled = headers.format(
        alice=alice,
        eve=eve,
        eve_q=eve.replace("@", "=40").replace(".", "=2E"),
        eve_b=base64.b64encode(f"The CEO {eve}".encode()).decode(),
        eve_spaced=f"{local} @ {domain}",
    )
    smtp = client(gateway.port)
    smtp.login(alice, PASSWORD)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail(alice, ["friend@elsewhere.test"], filled + "\r\n" + BODY)
    assert refused.value.smtp_code == 553 and refused.value.smtp_error.startswith(b"5.7.1 ")
    smtp.quit()
    assert envelopes() == []
    assert logged_errors == []


def test_own_addresses_may_appear_anywhere_in_the_sender_fields(stack, new_user, spooled) -> None:
    gateway, envelopes = spooled
    alice = new_user()
    sales = f"sales-{alice.split('@')[0]}@example.test"
    stack.directory().add_alias(sales, [alice])
    smtp = client(gateway.port)
    smtp.login(alice, PASSWORD)
    for headers in (
        f'From: "{alice}" <{alice}>',
        f"From: Sales <{sales}>\r\nSender: {alice}",
        f"From: {alice}\r\nResent-From: =?utf-8?q?Alice_=C3=A9?= <{alice}>\r\nResent-Sender: {sales}",
        f"From: Alice @ Work <{alice}>",
    ):
        smtp.sendmail(alice, ["friend@elsewhere.test"], headers + "\r\n" + BODY)
    smtp.quit()
    found: list = []
    while len(found) < 4 and (batch := envelopes()):
        found += batch
    assert len(found) == 4


def test_generated_message_ids_are_random(stack, new_user, spooled) -> None:
    gateway, envelopes = spooled
    alice = new_user()
    smtp = client(gateway.port)
    smtp.login(alice, PASSWORD)
    smtp.sendmail(alice, ["friend@elsewhere.test"], f"From: {alice}\r\n" + BODY)
    smtp.quit()
    [(_, raw)] = envelopes()
    message_id = next(line for line in raw.split(b"\r\n") if line.startswith(b"Message-ID: "))
    # make_msgid() wrote <time.pid.random@domain>: the gateway's process id for all to read.
    assert f".{os.getpid()}.".encode() not in message_id
    assert message_id.endswith(b"@example.test>")


def test_an_overlong_auth_response_is_refused_and_the_session_goes_on(
    stack, new_user, spooled, logged_errors
) -> None:
    gateway, _ = spooled
    alice = new_user()
    smtp = client(gateway.port)
    assert smtp.docmd("AUTH", "PLAIN")[0] == 334
    smtp.send(b"QUFB" * 50_000 + b"\r\n")  # 200 KB: over RFC 4954's 12,288 octets
    code, text = smtp.getreply()
    assert (code, text[:6]) == (500, b"5.5.6 ")
    assert smtp.noop()[0] == 250, "what followed the challenge was not read as commands"
    smtp.login(alice, PASSWORD)
    smtp.quit()
    assert logged_errors == []
