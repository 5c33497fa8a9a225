"""DMARC (RFC 7489) policy discovery, alignment and pct= sampling; the header we write and strip."""

from __future__ import annotations

import asyncio
import logging

import pytest
from dns_zone import serving
from mailauth_support import lookup_at

from mailpipe.mailauth.dmarc import DMARCChecker, organizational_domain
from mailpipe.mailauth.headers import from_domains, header_fields, without_our_results
from mailpipe.mailauth.results import Report, header
from mailpipe.mailauth.spf import SPFResult

ZONE = """
_dmarc.reject.test.      60 IN TXT "v=DMARC1; p=reject; rua=mailto:d@reject.test"
_dmarc.strict.test.      60 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
_dmarc.quarantine.test.  60 IN TXT "v=DMARC1; p=quarantine"
_dmarc.sampled.test.     60 IN TXT "v=DMARC1; p=reject; pct=0"
_dmarc.sampledq.test.    60 IN TXT "v=DMARC1; p=quarantine; pct=0"
_dmarc.sub.test.         60 IN TXT "v=DMARC1; p=none; sp=reject"
_dmarc.notv.test.        60 IN TXT "p=reject; v=DMARC1"
_dmarc.broken.test.      60 IN TXT "v=DMARC1; p=reject; adkim=x"
_dmarc.garbled.test.     60 IN TXT "v=DMARC1; p reject"
_dmarc.badp.test.        60 IN TXT "v=DMARC1; p=bogus"
_dmarc.rua.test.         60 IN TXT "v=DMARC1; p=bogus; rua=mailto:x@rua.test"
_dmarc.two.test.         60 IN TXT "v=DMARC1; p=reject"
_dmarc.two.test.         60 IN TXT "v=DMARC1; p=none"
_dmarc.x.servfail.test.  60 IN TXT "v=DMARC1; p=reject"
"""


@pytest.fixture(scope="module")
def dns_port():
    with serving(ZONE) as (port, _zone):
        yield port


def dmarc(port: int, from_domain: str, spf=("none", ""), dkim=(), sample: int = 0):
    checker = DMARCChecker(lookup_at(port), sample=lambda: sample)
    return asyncio.run(checker.check(from_domain, spf, list(dkim)))


def test_organizational_domains_come_from_the_public_suffix_list() -> None:
    assert organizational_domain("mail.crepes.fr") == "crepes.fr"
    assert organizational_domain("a.b.bbc.co.uk") == "bbc.co.uk"
    assert organizational_domain("co.uk") == "co.uk"


def test_aligned_spf_or_dkim_passes(dns_port: int) -> None:
    assert dmarc(dns_port, "reject.test", spf=("pass", "bounces.reject.test")).result == "pass"
    assert dmarc(dns_port, "reject.test", dkim=[("pass", "mail.reject.test")]).result == "pass"
    # A pass for another organization does not count.
    assert (
        dmarc(dns_port, "reject.test", spf=("pass", "evil.test"), dkim=[("pass", "evil.test")]).result
        == "fail"
    )


def test_strict_alignment_wants_the_exact_domain(dns_port: int) -> None:
    assert dmarc(dns_port, "strict.test", dkim=[("pass", "mail.strict.test")]).result == "fail"
    assert dmarc(dns_port, "strict.test", dkim=[("pass", "strict.test")]).result == "pass"
    assert dmarc(dns_port, "strict.test", spf=("pass", "mail.strict.test")).result == "fail"


def test_policies_and_pct(dns_port: int) -> None:
    assert dmarc(dns_port, "reject.test").disposition == "reject"
    assert dmarc(dns_port, "quarantine.test").disposition == "quarantine"
    # pct=0: every message is outside the sample and gets the next policy down (6.6.4).
    assert dmarc(dns_port, "sampled.test", sample=0).disposition == "quarantine"
    assert dmarc(dns_port, "sampledq.test", sample=0).disposition == "none"
    assert dmarc(dns_port, "reject.test", sample=99).disposition == "reject"


def test_an_aligned_check_that_failed_for_now_makes_dmarc_temperror(dns_port: int) -> None:
    result = dmarc(dns_port, "reject.test", spf=("temperror", "reject.test"))
    assert (result.result, result.disposition) == ("temperror", "reject")
    result = dmarc(dns_port, "reject.test", dkim=[("fail", "reject.test"), ("temperror", "mail.reject.test")])
    assert result.result == "temperror"
    # A temporary failure for another organization could not have produced an aligned pass.
    assert dmarc(dns_port, "reject.test", spf=("temperror", "evil.test")).result == "fail"


def test_subdomains_get_sp_from_the_organizational_domain(dns_port: int) -> None:
    result = dmarc(dns_port, "news.sub.test")
    assert result.result == "fail" and result.policy.domain == "sub.test" and result.disposition == "reject"
    assert dmarc(dns_port, "sub.test").disposition == "none"


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("notv.test", "none"),  # v= not first: not a DMARC record (6.6.3)
        ("broken.test", "permerror"),  # adkim=x
        ("garbled.test", "permerror"),  # not a tag list
        ("badp.test", "permerror"),  # no valid p=
        ("two.test", "none"),  # two records: as if none
        ("nothing.test", "none"),
        ("x.servfail.test", "temperror"),
    ],
)
def test_broken_records_and_dns_failures(
    dns_port: int, domain: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mailpipe.mailauth.dmarc"):
        result = dmarc(dns_port, domain)
    assert (result.result, result.disposition) == (expected, "none")
    if expected != "none":
        assert any(f"DMARC {expected} for {domain}" in r.getMessage() for r in caplog.records)


def test_a_record_with_rua_but_no_valid_p_is_p_none(dns_port: int) -> None:
    result = dmarc(dns_port, "rua.test")
    assert result.result == "fail" and result.policy.p == "none" and result.disposition == "none"


MESSAGE = (
    b"Authentication-Results: mx.hamburger.edu; dkim=pass header.d=bank.test\r\n"
    b"Received: from a\r\n\tby b; Fri, 27 Nov 2026 18:00:00 +0100\r\n"
    b"Authentication-Results: (forged) MX.Hamburger.EDU (comment);\r\n\tdmarc=pass\r\n"
    b"Authentication-Results: other.example; spf=pass smtp.mailfrom=x@y\r\n"
    b'From: "Bank, Inc." <ceo@Bank.TEST>\r\n'
    b"Subject: hi\r\n"
    b"\r\n"
    b"Authentication-Results: mx.hamburger.edu; in the body, untouched\r\n"
)


def test_forged_results_claiming_our_id_are_removed_and_nothing_else_changes() -> None:
    cleaned, removed = without_our_results(MESSAGE, "mx.hamburger.edu")
    assert removed == 2
    assert cleaned == (
        b"Received: from a\r\n\tby b; Fri, 27 Nov 2026 18:00:00 +0100\r\n"
        b"Authentication-Results: other.example; spf=pass smtp.mailfrom=x@y\r\n"
        b'From: "Bank, Inc." <ceo@Bank.TEST>\r\n'
        b"Subject: hi\r\n"
        b"\r\n"
        b"Authentication-Results: mx.hamburger.edu; in the body, untouched\r\n"
    )
    assert b"other.example" in cleaned and b"in the body, untouched" in cleaned
    assert without_our_results(MESSAGE, "someone.else") == (MESSAGE, 0)


def test_from_domains_are_read_from_the_header_block() -> None:
    fields, _ = header_fields(MESSAGE)
    assert from_domains(fields) == ["bank.test"]


def test_the_header_reports_every_result_with_safe_values() -> None:
    report = Report(
        spf_mailfrom=SPFResult("pass", "crepes.fr"),
        mail_from='we"ird name@crepes.fr',
        spf_helo=SPFResult("none", "helo.test"),
        helo="helo.test",
    )
    text = header("mx.hamburger.edu", report).decode()
    assert text.startswith("Authentication-Results: mx.hamburger.edu;\r\n\tspf=pass smtp.mailfrom=")
    assert 'smtp.mailfrom="we\\"ird name@crepes.fr"' in text
    assert "dkim=none" in text and text.endswith("\r\n") and text.count("\n") == text.count("\r\n")
