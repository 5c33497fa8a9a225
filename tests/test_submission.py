"""Submission on the gateway: AUTH, sending as one's own addresses only, relaying for users, DSN params."""

from __future__ import annotations

import base64
import json
import logging
import smtplib
import ssl

import pytest
from conftest import DOMAIN, PASSWORD, wait_for, wait_for_inbox

from mailpipe import aws
from mailpipe.outbound.queue import OutboundMessage, OutboundRecipient
from mailpipe.outbound.state import QueueState
from mailpipe.spool import Envelope, EnvelopeRecipient

MESSAGE = "From: {sender}\r\nTo: friend@elsewhere.test\r\nSubject: out\r\n\r\nbody\r\n"


@pytest.fixture
def spooled(stack):
    """Envelopes the submission listener spools, read from a queue of the test's own."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="submission-test")["QueueUrl"]
    spool = stack.spool()
    spool.queue_url = url
    gateway = stack.build_submission(spool)
    stack.loop.run(gateway.start())

    def envelopes() -> list[tuple[Envelope, bytes]]:
        found = []
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            envelope = Envelope.from_json(message["Body"])
            found.append((envelope, spool.read(envelope)))
        return found

    yield gateway, envelopes
    stack.loop.run(gateway.stop())
    sqs.delete_queue(QueueUrl=url)


def client(port: int) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    smtp.ehlo("laptop.test")
    return smtp


def test_auth_is_required_and_mail_relays(stack, new_user, spooled) -> None:
    gateway, envelopes = spooled
    alice = new_user()
    smtp = client(gateway.port)
    assert smtp.has_extn("auth") and smtp.has_extn("dsn")
    code, text = smtp.mail(alice)
    assert (code, text[:6]) == (530, b"5.7.0 ")
    smtp.login(alice, PASSWORD)
    smtp.sendmail(
        alice, ["friend@elsewhere.test", f"nobody-known@{DOMAIN}"][:1], MESSAGE.format(sender=alice)
    )
    smtp.quit()
    [(envelope, raw)] = envelopes()
    assert envelope.auth_user == alice and envelope.rcpt_tos == ["friend@elsewhere.test"]
    assert b"with ESMTPA id" in raw  # authenticated, no TLS (loopback in dev)
    assert b"\r\nDate: " in raw and b"\r\nMessage-ID: <" in raw  # added, as they were missing


def test_login_logs_no_deprecation(stack, new_user, spooled, caplog) -> None:
    """aiosmtpd 1.4 logged "Session.login_data is deprecated" at every login (issue 13)."""
    gateway, _ = spooled
    alice = new_user()
    with caplog.at_level(logging.DEBUG), client(gateway.port) as smtp:
        smtp.login(alice, PASSWORD)
        smtp.noop()
    assert [r.getMessage() for r in caplog.records if "login_data" in r.getMessage()] == []


def test_unknown_local_recipients_are_still_refused(stack, new_user, spooled) -> None:
    gateway, _ = spooled
    alice = new_user()
    smtp = client(gateway.port)
    smtp.login(alice, PASSWORD)
    smtp.mail(alice)
    code, text = smtp.rcpt(f"nobody-here@{DOMAIN}")
    assert (code, text[:6]) == (550, b"5.1.1 ")
    smtp.quit()


def test_sending_as_someone_else_is_refused(stack, new_user, spooled) -> None:
    gateway, envelopes = spooled
    alice, bob = new_user(), new_user()
    smtp = client(gateway.port)
    smtp.login(alice, PASSWORD)
    code, text = smtp.mail(bob)
    assert (code, text[:6]) == (553, b"5.7.1 ")
    assert smtp.mail("")[0] == 553
    smtp.rset()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail(alice, ["friend@elsewhere.test"], MESSAGE.format(sender=bob))
    assert refused.value.smtp_code == 553
    smtp.quit()
    assert envelopes() == []


def test_aliases_and_subaddresses_are_owned(stack, new_user, spooled) -> None:
    gateway, envelopes = spooled
    alice = new_user()
    sales = f"sales-{alice.split('@')[0]}@{DOMAIN}"
    stack.directory().add_alias(sales, [alice])
    local = alice.split("@")[0]
    smtp = client(gateway.port)
    smtp.login(alice, PASSWORD)
    smtp.sendmail(sales, ["friend@elsewhere.test"], MESSAGE.format(sender=f"Sales <{sales}>"))
    smtp.sendmail(f"{local}+news@{DOMAIN}", ["friend@elsewhere.test"], MESSAGE.format(sender=alice))
    smtp.quit()
    assert len(envelopes()) == 2


def test_dsn_parameters_are_kept_as_sent(stack, new_user, spooled) -> None:
    gateway, envelopes = spooled
    alice = new_user()
    smtp = client(gateway.port)
    smtp.login(alice, PASSWORD)
    smtp.sendmail(
        alice,
        ["Friend@Elsewhere.test"],
        MESSAGE.format(sender=alice),
        mail_options=["RET=HDRS", "ENVID=QQ314159+2Bx"],
        rcpt_options=["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;Friend@Elsewhere.test"],
    )
    code, text = smtp.mail(alice, ["RET=SOMETIMES"])
    assert (code, text[:6]) == (501, b"5.5.4 ")
    smtp.quit()
    [(envelope, _)] = envelopes()
    assert (envelope.dsn_ret, envelope.dsn_envid) == ("HDRS", "QQ314159+2Bx")
    assert envelope.recipients == (
        EnvelopeRecipient("Friend@Elsewhere.test", ("FAILURE", "DELAY"), "rfc822;Friend@Elsewhere.test"),
    )
    assert json.loads(envelope.to_json())["rcpt_dsn"] == [
        {"notify": ["FAILURE", "DELAY"], "orcpt": "rfc822;Friend@Elsewhere.test"}
    ]


def test_wrong_passwords_are_throttled(stack, new_user, spooled) -> None:
    gateway, _ = spooled
    alice = new_user()

    def plain(password: str) -> str:
        return "PLAIN " + base64.b64encode(f"\0{alice}\0{password}".encode()).decode()

    for _ in range(5):
        smtp = client(gateway.port)
        code, text = smtp.docmd("AUTH", plain("wrong"))
        assert (code, text[:6]) == (535, b"5.7.8 ")
        smtp.quit()
    smtp = client(gateway.port)
    code, text = smtp.docmd("AUTH", plain(PASSWORD))
    assert (code, text[:6]) == (454, b"4.7.0 ")
    smtp.quit()


def test_no_auth_before_tls_off_loopback(stack, new_user) -> None:
    alice = new_user()
    gateway = stack.build_submission(stack.spool(), plaintext_loopback=False)
    stack.loop.run(gateway.start())
    try:
        smtp = client(gateway.port)
        assert not smtp.has_extn("auth") and smtp.has_extn("starttls")
        assert smtp.docmd("AUTH", "PLAIN AGJvYgBwdw==")[0] == 538
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        smtp.starttls(context=context)
        smtp.ehlo("laptop.test")
        assert smtp.has_extn("auth")
        smtp.login(alice, PASSWORD)
        smtp.quit()
    finally:
        stack.loop.run(gateway.stop())


def test_implicit_tls_port(stack, new_user) -> None:
    alice = new_user()
    gateway = stack.build_submission(stack.spool(), implicit_tls=True, plaintext_loopback=False)
    stack.loop.run(gateway.start())
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        smtp = smtplib.SMTP_SSL("127.0.0.1", gateway.port, context=context, timeout=30)
        smtp.ehlo("laptop.test")
        assert smtp.has_extn("auth") and not smtp.has_extn("starttls")
        smtp.login(alice, PASSWORD)
        smtp.quit()
    finally:
        stack.loop.run(gateway.stop())


def test_remote_recipients_go_to_the_outbound_queue_and_local_ones_to_mailboxes(stack, new_user) -> None:
    alice, bob = new_user(), new_user()
    smtp = client(stack.submission_port)
    smtp.login(alice, PASSWORD)
    smtp.sendmail(
        alice,
        ["friend@elsewhere.test", bob],
        MESSAGE.format(sender=alice),
        rcpt_options=["NOTIFY=FAILURE"],
    )
    smtp.quit()
    [stored] = wait_for_inbox(stack, bob, 1)
    # The stack's outbound function takes it from the queue; its state shows what it was given.
    state = QueueState(aws.table(stack.environment["MAILPIPE_OUTBOUND_TABLE"]))
    entries = wait_for(lambda: state.entries(stored.delivery_id))
    [entry] = entries.values()
    assert entry.recipient == "friend@elsewhere.test" and entry.status == "deferred"
    assert "127.0.0.1" in entry.last_reply  # the test transport: nothing listens there
    outbound = OutboundMessage.from_json(entry.message)
    assert outbound.auth_user == alice and outbound.mail_from == alice
    assert outbound.recipients == [OutboundRecipient("friend@elsewhere.test", ["FAILURE"], None)]
    assert (
        stack.spool()
        .read(Envelope(outbound.envelope_id, "", (), outbound.s3_key, 0, ""))
        .endswith(MESSAGE.format(sender=alice).encode())
    )
