"""SPF (RFC 7208) against a real DNS server on loopback: results, limits, broken records, DNS failures."""

from __future__ import annotations

import asyncio
import logging

import pytest
from dns_zone import serving, silent, txt_strings
from mailauth_support import lookup_at

from mailpipe.mailauth.spf import SPFChecker

ZONE = """
pass.test.        60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
fail.test.        60 IN TXT "v=spf1 ip4:192.0.2.1 -all"
soft.test.        60 IN TXT "v=spf1 ~all"
neutral.test.     60 IN TXT "v=spf1 ?all"
norecord.test.    60 IN TXT "some other text"
net.test.         60 IN TXT "v=spf1 ip4:127.0.0.0/29 ip6:2001:db8::/32 -all"
incl.test.        60 IN TXT "v=spf1 include:pass.test -all"
redir.test.       60 IN TXT "v=spf1 redirect=pass.test"
redirnone.test.   60 IN TXT "v=spf1 redirect=norecord.test"
a.test.           60 IN TXT "v=spf1 a -all"
a.test.           60 IN A 127.0.0.1
mx.test.          60 IN TXT "v=spf1 mx/24 -all"
mx.test.          60 IN MX 10 mail.mx.test.
mail.mx.test.     60 IN A 127.0.0.77
exists.test.      60 IN TXT "v=spf1 exists:%{i}._spf.%{d} -all"
127.0.0.1._spf.exists.test. 60 IN A 127.0.0.2
loop1.test.       60 IN TXT "v=spf1 include:loop2.test -all"
loop2.test.       60 IN TXT "v=spf1 include:loop1.test -all"
many.test. 60 IN TXT "v=spf1 a:a1.test a:a2.test a:a3.test a:a4.test a:a5.test a:a6.test include:more.test"
more.test.        60 IN TXT "v=spf1 a:a7.test a:a8.test a:a9.test a:a10.test a:a11.test -all"
a1.test. 60 IN A 192.0.2.1
a2.test. 60 IN A 192.0.2.1
a3.test. 60 IN A 192.0.2.1
a4.test. 60 IN A 192.0.2.1
a5.test. 60 IN A 192.0.2.1
a6.test. 60 IN A 192.0.2.1
a7.test. 60 IN A 192.0.2.1
a8.test. 60 IN A 192.0.2.1
a9.test. 60 IN A 192.0.2.1
a10.test. 60 IN A 192.0.2.1
a11.test. 60 IN A 192.0.2.1
void.test.        60 IN TXT "v=spf1 a:nx1.test a:nx2.test a:nx3.test ip4:127.0.0.1 -all"
broken.test.      60 IN TXT "v=spf1 ip4:127.0.0.1 frobnicate:x -all"
badip.test.       60 IN TXT "v=spf1 ip4:300.1.2.3 -all"
two.test.         60 IN TXT "v=spf1 -all"
two.test.         60 IN TXT "v=spf1 +all"
tempinc.test.     60 IN TXT "v=spf1 include:x.servfail.test -all"
"""

LONG = "v=spf1 " + " ".join(f"ip4:10.{i // 250}.{i % 250}.1" for i in range(700)) + " ip4:127.0.0.1 -all"
assert len(LONG) > 10_000
LONG_ZONE = ZONE + f"long.test. 60 IN TXT {txt_strings(LONG)}\n"


@pytest.fixture(scope="module")
def dns_port():
    with serving(LONG_ZONE, both=True) as (port, _zone):
        yield port


def check(port: int, domain: str, ip: str = "127.0.0.1", sender: str = "") -> str:
    checker = SPFChecker(lookup_at(port))
    return asyncio.run(checker.check(ip, domain, sender or f"alice@{domain}", "helo.test")).result


@pytest.mark.parametrize(
    ("domain", "ip", "expected"),
    [
        ("pass.test", "127.0.0.1", "pass"),
        ("pass.test", "127.0.0.2", "fail"),
        ("fail.test", "127.0.0.1", "fail"),
        ("soft.test", "127.0.0.1", "softfail"),
        ("neutral.test", "127.0.0.1", "neutral"),
        ("norecord.test", "127.0.0.1", "none"),
        ("nxdomain.test", "127.0.0.1", "none"),
        ("net.test", "127.0.0.5", "pass"),
        ("net.test", "127.0.0.9", "fail"),
        ("net.test", "2001:db8::25", "pass"),
        ("net.test", "::ffff:127.0.0.3", "pass"),
        ("incl.test", "127.0.0.1", "pass"),
        ("incl.test", "127.0.0.2", "fail"),
        ("redir.test", "127.0.0.1", "pass"),
        ("a.test", "127.0.0.1", "pass"),
        ("mx.test", "127.0.0.12", "pass"),
        ("mx.test", "127.0.1.12", "fail"),
        ("exists.test", "127.0.0.1", "pass"),
        ("exists.test", "127.0.0.2", "fail"),
        ("long.test", "127.0.0.1", "pass"),
        ("long.test", "127.0.0.2", "fail"),
    ],
)
def test_results(dns_port: int, domain: str, ip: str, expected: str) -> None:
    assert check(dns_port, domain, ip) == expected


@pytest.mark.parametrize(
    ("domain", "why"),
    [
        ("loop1.test", "DNS-querying terms"),  # include loops end at the 10-term limit
        ("many.test", "DNS-querying terms"),
        ("void.test", "void lookups"),
        ("broken.test", "unknown term"),
        ("badip.test", "bad ip4"),
        ("two.test", "2 SPF records"),
        ("redirnone.test", "no SPF record"),
    ],
)
def test_broken_records_and_limits_are_permerror(
    dns_port: int, domain: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mailpipe.mailauth.spf"):
        assert check(dns_port, domain) == "permerror"
    assert any(
        f"SPF permerror for {domain}" in r.getMessage() and why in r.getMessage() for r in caplog.records
    )


def test_servfail_is_temperror(dns_port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mailpipe.mailauth.spf"):
        assert check(dns_port, "a.servfail.test") == "temperror"
        assert check(dns_port, "tempinc.test") == "temperror"
    assert any("SERVFAIL" in r.getMessage() for r in caplog.records)


def test_a_silent_server_gives_temperror_not_a_hang() -> None:
    with silent() as port:
        checker = SPFChecker(lookup_at(port, lifetime=0.3))
        assert asyncio.run(checker.check("127.0.0.1", "slow.test", "a@slow.test", "h")).result == "temperror"


def test_the_overall_time_limit_gives_temperror() -> None:
    # Each lookup may take the resolver's whole lifetime; the evaluation as a whole may not.
    with silent() as port:
        checker = SPFChecker(lookup_at(port, lifetime=30), time_limit=0.2)
        result = asyncio.run(checker.check("127.0.0.1", "slow.test", "a@slow.test", "h"))
    assert result.result == "temperror" and "no answer within" in result.reason


@pytest.mark.parametrize("domain", ["", "localhost", "bad..test", "[127.0.0.1]", "x" * 300 + ".test"])
def test_no_valid_domain_is_none(dns_port: int, domain: str) -> None:
    assert check(dns_port, domain, sender="a@b") == "none"


def test_a_bad_client_address_is_none(dns_port: int) -> None:
    assert check(dns_port, "pass.test", ip="unknown") == "none"
