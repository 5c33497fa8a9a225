"""Inbound authentication end to end: two dev stacks, a DNS server on loopback holding SPF, DKIM and
DMARC records, real SMTP from other loopback addresses (127.0.0.2 is not in crepes.fr's SPF)."""

from __future__ import annotations

import smtplib

import dkim
import pytest
from dns_zone import serving
from mailauth_support import RSAKey, key_record
from test_two_stacks import MESSAGE, PASSWORD, two_stacks, wait_for

KEY = RSAKey()
ZONE = (
    key_record("mail", "crepes.fr", KEY)
    + """
crepes.fr.         60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.crepes.fr.  60 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@crepes.fr"
bank.test.         60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.bank.test.  60 IN TXT "v=DMARC1; p=reject"
shop.test.         60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.shop.test.  60 IN TXT "v=DMARC1; p=quarantine"
"""
)
AUTHSERV_ID = b"mail.hamburger.edu"  # the receiving dev stack's hostname: mail.FIRST-DOMAIN


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory):
    with serving(ZONE, both=True) as (port, _zone):
        yield from two_stacks(tmp_path_factory.mktemp("auth-stacks"), f"127.0.0.1:{port}")


def signed(subject: str) -> bytes:
    """A message as crepes.fr's signer would send it (an independent signer: dkimpy's)."""
    message = MESSAGE.format(to="bob@hamburger.edu", subject=subject).encode()
    return (
        dkim.sign(message, b"mail", b"crepes.fr", KEY.private, include_headers=[b"from", b"to", b"subject"])
        + message
    )


def send_direct(port: int, source: str, mail_from: str, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as smtp:
        smtp.sendmail(mail_from, ["bob@hamburger.edu"], message)


def results_of(message: bytes) -> list[bytes]:
    head = message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"authentication-results:")]


def test_signed_mail_across_two_stacks_passes_spf_dkim_and_dmarc(stacks) -> None:
    crepes, hamburger = stacks
    message = signed("signed-across")
    with smtplib.SMTP("127.0.0.1", crepes.submission, timeout=30) as smtp:
        smtp.login("alice@crepes.fr", PASSWORD)
        smtp.sendmail("alice@crepes.fr", ["bob@hamburger.edu"], message)
    [received] = wait_for(lambda: hamburger.inbox("bob@hamburger.edu"), lambda m: b"signed-across" in m)
    assert received.endswith(message)  # only trace fields on top, the rest byte for byte
    [results] = results_of(received)
    assert results.startswith(b"Authentication-Results: " + AUTHSERV_ID + b";")
    assert b"spf=pass smtp.mailfrom=alice@crepes.fr" in results
    assert b"dkim=pass header.d=crepes.fr header.s=mail header.a=rsa-sha256" in results
    assert b"dmarc=pass" in results and b"header.from=crepes.fr" in results


def test_a_forged_from_of_a_reject_domain_is_refused(stacks) -> None:
    _, hamburger = stacks
    forged = MESSAGE.format(to="bob@hamburger.edu", subject="forged-reject").encode()
    forged = forged.replace(b"alice@crepes.fr", b"ceo@bank.test")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_direct(hamburger.smtp, "127.0.0.2", "ceo@bank.test", forged)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1")
    assert b"DMARC" in refused.value.smtp_error and b"bank.test" in refused.value.smtp_error
    # A DKIM signature of crepes.fr does not help a From: of bank.test.
    resigned = dkim.sign(forged, b"mail", b"crepes.fr", KEY.private, include_headers=[b"from"]) + forged
    with pytest.raises(smtplib.SMTPDataError) as again:
        send_direct(hamburger.smtp, "127.0.0.2", "alice@crepes.fr", resigned)
    assert again.value.smtp_code == 550


def test_a_forged_from_of_a_quarantine_domain_lands_in_junk(stacks) -> None:
    _, hamburger = stacks
    forged = MESSAGE.format(to="bob@hamburger.edu", subject="forged-quarantine").encode()
    send_direct(
        hamburger.smtp, "127.0.0.2", "news@shop.test", forged.replace(b"alice@crepes.fr", b"news@shop.test")
    )
    [junk] = wait_for(
        lambda: hamburger.inbox("bob@hamburger.edu", "Junk"), lambda m: b"forged-quarantine" in m
    )
    assert b"dmarc=fail" in results_of(junk)[0] and b"spf=fail" in results_of(junk)[0]
    assert not [m for m in hamburger.inbox("bob@hamburger.edu") if b"forged-quarantine" in m]


def test_a_forged_authentication_results_is_gone_from_the_stored_copy(stacks) -> None:
    _, hamburger = stacks
    forged_results = (
        b"Authentication-Results: " + AUTHSERV_ID + b"; dkim=pass header.d=bank.test; dmarc=pass\r\n"
        b"Authentication-Results: elsewhere.example; spf=pass smtp.mailfrom=x@elsewhere.example\r\n"
    )
    genuine = signed("forged-results")
    message = forged_results + genuine
    send_direct(hamburger.smtp, "127.0.0.1", "alice@crepes.fr", message)
    [received] = wait_for(lambda: hamburger.inbox("bob@hamburger.edu"), lambda m: b"forged-results" in m)
    results = results_of(received)
    assert len(results) == 2 and results[1].startswith(b"Authentication-Results: elsewhere.example;")
    assert b"header.d=bank.test" not in received
    assert received.endswith(genuine)  # the forgery gone, the rest byte for byte
    assert b"dkim=pass header.d=crepes.fr" in results[0] and b"dmarc=pass" in results[0]
