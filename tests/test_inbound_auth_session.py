"""Inbound authentication inside an SMTP session of the shared dev stack: DNS failures and broken
records give their RFC results and the mail still arrives; pct=; submission is never checked."""

from __future__ import annotations

import logging
import smtplib

import dkim
import pytest
from conftest import PASSWORD, inbox, wait_for, wait_for_inbox
from dns_zone import serving, silent
from mailauth_support import RSAKey, key_record

KEY = RSAKey()

ZONE = """
broken.test.          60 IN TXT "v=spf1 ip4:127.0.0.1 frobnicate -all"
_dmarc.broken.test.   60 IN TXT "v=DMARC1; p=reject; pct=lots"
sampled.test.         60 IN TXT "v=spf1 -all"
_dmarc.sampled.test.  60 IN TXT "v=DMARC1; p=reject; pct=0"
guarded.test.         60 IN TXT "v=spf1 -all"
_dmarc.guarded.test.  60 IN TXT "v=DMARC1; p=reject"
_dmarc.xn--bnk-qla.test. 60 IN TXT "v=DMARC1; p=reject"
flaky.test.           60 IN TXT "v=spf1 include:x.servfail.test -all"
_dmarc.flaky.test.    60 IN TXT "v=DMARC1; p=reject"
"""


@pytest.fixture(scope="module")
def dns_server():
    with serving(ZONE + key_record("big", "large.test", KEY), both=True) as (port, _zone):
        yield f"127.0.0.1:{port}"


@pytest.fixture
def gateway(stack, dns_server):
    built = stack.build_gateway(stack.spool(), dns_server=dns_server)
    stack.loop.run(built.start())
    yield built
    stack.loop.run(built.stop())


def message(sender: str, subject: str) -> bytes:
    return f"From: {sender}\r\nTo: bob\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


def send(port: int, sender: str, rcpt: str, subject: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0)) as client:
        client.ehlo("client.remote.test")
        client.mail(sender)
        client.rcpt(rcpt)
        return client.data(message(sender, subject))


def stored(stack, owner: str, mailbox: str = "INBOX") -> bytes:
    store = stack.mail_store()
    [found] = wait_for(lambda: store.get_mailbox(owner, mailbox) and store.list_messages(owner, mailbox)[1])
    return store.read_body(found)


def test_loopback_mail_without_records_is_none_and_accepted(stack, new_user) -> None:
    bob = new_user()
    assert send(stack.smtp_port, "alice@remote.test", bob, "plain")[0] == 250
    [message] = wait_for_inbox(stack, bob, 1)
    body = stack.mail_store().read_body(message)
    assert b"Authentication-Results: mail.example.test;\r\n\tspf=none smtp.mailfrom=alice@remote.test" in body
    assert b"\tdkim=none;\r\n\tdmarc=none header.from=remote.test;\r\n\tarc=none\r\n" in body


def test_servfail_gives_temperror_and_the_mail_arrives(stack, new_user, gateway) -> None:
    bob = new_user()
    assert send(gateway.port, "alice@x.servfail.test", bob, "servfail")[0] == 250
    body = stored(stack, bob)
    assert b"spf=temperror smtp.mailfrom=alice@x.servfail.test" in body and b"dmarc=temperror" in body


def test_broken_records_give_permerror_and_the_mail_arrives(
    stack, new_user, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    bob = new_user()
    with caplog.at_level(logging.INFO, logger="mailpipe.mailauth"):
        assert send(gateway.port, "alice@broken.test", bob, "broken")[0] == 250
    body = stored(stack, bob)
    assert b"spf=permerror" in body and b"dmarc=permerror" in body
    logged = [r.getMessage() for r in caplog.records]
    assert any("SPF permerror for broken.test" in line and "frobnicate" in line for line in logged)
    assert any("DMARC permerror for broken.test" in line and "pct=" in line for line in logged)


def test_a_silent_resolver_gives_temperror_not_a_hung_session(stack, new_user) -> None:
    bob = new_user()
    with silent() as port:
        quiet = stack.build_gateway(stack.spool(), dns_server=f"127.0.0.1:{port}")
        stack.loop.run(quiet.start())
        try:
            assert send(quiet.port, "alice@slow.test", bob, "silent")[0] == 250
        finally:
            stack.loop.run(quiet.stop())
    body = stored(stack, bob)
    assert b"spf=temperror" in body and b"dmarc=temperror" in body


def test_pct_zero_turns_reject_into_junk(stack, new_user, gateway) -> None:
    bob = new_user()
    assert send(gateway.port, "news@sampled.test", bob, "sampled", source="127.0.0.3")[0] == 250
    body = stored(stack, bob, "Junk")
    assert b"dmarc=fail (p=reject sp=reject pct=0 dis=quarantine)" in body
    assert not inbox(stack, bob)


def test_reject_is_refused_in_the_session(stack, new_user, gateway) -> None:
    bob = new_user()
    code, text = send(gateway.port, "ceo@guarded.test", bob, "guarded", source="127.0.0.3")
    assert code == 550 and text.startswith(b"5.7.1 ")


def test_reject_pending_a_dns_failure_is_deferred_not_refused(stack, new_user, gateway) -> None:
    bob = new_user()
    code, text = send(gateway.port, "news@flaky.test", bob, "flaky", source="127.0.0.3")
    assert code == 451 and text.startswith(b"4.7.1 ") and b"flaky.test" in text


def test_a_second_from_address_does_not_carry_a_forgery_past_p_reject(stack, new_user, gateway) -> None:
    bob = new_user()
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=60, source_address=("127.0.0.3", 0)) as client:
        client.ehlo("client.remote.test")
        client.mail("someone@remote.test")
        client.rcpt(bob)
        forged = message("someone@remote.test", "two-froms").replace(
            b"From: someone@remote.test", b"From: ceo@guarded.test, someone@remote.test"
        )
        code, text = client.data(forged)
    assert code == 550 and b"guarded.test" in text


def test_an_internationalized_from_domain_is_looked_up_as_its_a_label(stack, new_user, gateway) -> None:
    bob = new_user()
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=60, source_address=("127.0.0.3", 0)) as client:
        client.ehlo("client.remote.test")
        client.mail("someone@remote.test", ["SMTPUTF8"])
        client.rcpt(bob)
        code, text = client.data("From: ceo@bänk.test\r\nSubject: idn\r\n\r\nPay.\r\n".encode())
    assert code == 550 and b"xn--bnk-qla.test" in text


def test_a_signed_message_near_the_size_limit_is_verified(stack, new_user, gateway) -> None:
    bob = new_user()
    head = b"From: news@large.test\r\nTo: bob\r\nSubject: large\r\n\r\n"
    body = (b"y" * 998 + b"\r\n") * 39_000  # 39 MB, under the 40 MB SIZE
    signed = dkim.sign(head + body, b"big", b"large.test", KEY.private, include_headers=[b"from", b"subject"])
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=120) as client:
        client.ehlo("client.remote.test")
        client.mail("news@large.test")
        client.rcpt(bob)
        code, _ = client.data(signed + head + body)
    assert code == 250
    store = stack.mail_store()
    [found] = wait_for(lambda: store.get_mailbox(bob, "INBOX") and store.list_messages(bob, "INBOX")[1], 120)
    stored_head = store.read_body(found)[:4096]
    assert b"dkim=pass header.d=large.test header.s=big" in stored_head


def test_authenticated_submission_is_not_checked(stack, new_user, gateway) -> None:
    # Our own user, logged in (submission checks From: against the login instead): no
    # Authentication-Results is added, only port 25 hears from the outside world.
    bob = new_user()
    with smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=30) as client:
        client.login(bob, PASSWORD)
        client.sendmail(bob, [bob], message(bob, "submitted"))
    body = stored(stack, bob)
    assert b"submitted" in body and b"Authentication-Results" not in body
