"""DKIM (RFC 6376, RFC 8463) and ARC (RFC 8617) verification of messages signed by an independent
signer (dkimpy's signing side, driven here as another MTA would), keys on a loopback DNS server."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor

import dkim
import pytest
from conftest import require_tool
from dns_zone import serving
from mailauth_support import Ed25519Key, RSAKey, key_record, resolver_at

from mailpipe.mailauth import arc, dkim_verify
from mailpipe.mailauth.authenticate import Authenticator
from mailpipe.mailauth.results import Report

MESSAGE = (
    b"From: Alice <alice@crepes.fr>\r\n"
    b"To: Bob <bob@hamburger.edu>\r\n"
    b"Subject: Bonjour\r\n"
    b"Date: Fri, 27 Nov 2026 18:00:00 +0100\r\n"
    b"Message-ID: <dkim-test@crepes.fr>\r\n"
    b"\r\n"
    b"Bonjour Bob.\r\n"
)

RSA = RSAKey()
ED = Ed25519Key()

ZONE = (
    key_record("rsa", "crepes.fr", RSA)
    + key_record("ed", "crepes.fr", ED)
    + key_record("arc", "relay.test", RSA)
    + key_record("odk", "crepes.fr", RSA)
    + 'broken._domainkey.crepes.fr. 60 IN TXT "v=DKIM1; k=rsa; p=bm90IGEga2V5"\n'
    + 'garbage._domainkey.crepes.fr. 60 IN TXT "this is not a key record at all"\n'
    + 'crepes.fr. 60 IN TXT "v=spf1 -all"\n'
    + '_dmarc.crepes.fr. 60 IN TXT "v=DMARC1; p=reject"\n'
)


@pytest.fixture(scope="module")
def dns_port():
    with serving(ZONE, both=True) as (port, _zone):
        yield port


def sign(
    message: bytes, selector: str, key: RSAKey | Ed25519Key, domain: str = "crepes.fr", **options
) -> bytes:
    signature = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.private,
        signature_algorithm=key.algorithm,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        **options,
    )
    return signature + message


def authenticate(port: int, message: bytes, ip: str = "192.0.2.9") -> Report:
    authenticator = Authenticator(resolver_at(port))
    return asyncio.run(
        authenticator.check(message, client_ip=ip, helo="relay.test", mail_from="alice@crepes.fr")
    )


def dkim_results(port: int, message: bytes) -> list[str]:
    return [r.result for r in authenticate(port, message).dkim]


@pytest.mark.parametrize(
    "canonicalize", [(b"relaxed", b"simple"), (b"simple", b"simple"), (b"relaxed", b"relaxed")]
)
def test_rsa_signatures_verify_in_each_canonicalization(dns_port: int, canonicalize) -> None:
    report = authenticate(dns_port, sign(MESSAGE, "rsa", RSA, canonicalize=canonicalize))
    [result] = report.dkim
    assert (result.result, result.domain, result.selector, result.algorithm) == (
        "pass",
        "crepes.fr",
        "rsa",
        "rsa-sha256",
    )
    # SPF fails (-all) but the aligned DKIM pass carries DMARC.
    assert report.spf_mailfrom.result == "fail" and report.dmarc.result == "pass"


def test_a_message_signed_by_opendkim_verifies(dns_port: int, tmp_path) -> None:
    # A second, independent implementation (OpenDKIM's C library, as Postfix sites run it) signs.
    signer = require_tool("opendkim-testmsg")
    key = tmp_path / "odk.private"
    key.write_bytes(RSA.private)
    signed = subprocess.run(
        [signer, "-C", "-d", "crepes.fr", "-s", "odk", "-k", str(key), "-t", str(tmp_path)],
        input=MESSAGE,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert signed.startswith(b"DKIM-Signature:") and signed.endswith(MESSAGE)
    [result] = authenticate(dns_port, signed).dkim
    assert (result.result, result.selector) == ("pass", "odk")
    changed = authenticate(dns_port, signed.replace(b"Subject: Bonjour", b"Subject: Bonsoir")).dkim
    assert [r.result for r in changed] == ["fail"]


def test_ed25519_and_rsa_signatures_both_verify(dns_port: int) -> None:
    signed = sign(sign(MESSAGE, "rsa", RSA), "ed", ED)
    report = authenticate(dns_port, signed)
    assert [(r.result, r.algorithm) for r in report.dkim] == [
        ("pass", "ed25519-sha256"),
        ("pass", "rsa-sha256"),
    ]


def test_relaxed_canonicalization_survives_rewrapped_headers(dns_port: int) -> None:
    signed = sign(MESSAGE, "rsa", RSA, canonicalize=(b"relaxed", b"relaxed"))
    rewrapped = signed.replace(b"Subject: Bonjour", b"Subject:   Bonjour  ").replace(
        b"Bob.\r\n", b"Bob. \r\n"
    )
    assert dkim_results(dns_port, rewrapped) == ["pass"]
    assert dkim_results(dns_port, signed.replace(b"Subject: Bonjour", b"Subject:  Bonjour")) == ["pass"]


def test_l_tag_allows_text_appended_to_the_body(dns_port: int) -> None:
    signed = sign(MESSAGE, "rsa", RSA, length=True)
    assert dkim_results(dns_port, signed + b"-- \r\nAdded by a mailing list\r\n") == ["pass"]
    unlimited = sign(MESSAGE, "rsa", RSA)
    assert dkim_results(dns_port, unlimited + b"Added by a mailing list\r\n") == ["fail"]


def test_a_header_changed_after_signing_fails(dns_port: int) -> None:
    signed = sign(MESSAGE, "rsa", RSA)
    assert dkim_results(dns_port, signed.replace(b"Subject: Bonjour", b"Subject: Pay this invoice")) == [
        "fail"
    ]
    report = authenticate(dns_port, signed.replace(b"Subject: Bonjour", b"Subject: Pay this invoice"))
    assert report.dmarc.result == "fail" and report.dmarc.disposition == "reject"


def test_one_good_signature_of_two_is_enough_for_dmarc(dns_port: int) -> None:
    signed = sign(MESSAGE, "rsa", RSA)
    doubly = sign(signed.replace(b"Bonjour Bob.", b"Bonjour Bob!"), "ed", ED)  # only ed covers the new body
    report = authenticate(dns_port, doubly)
    assert [r.result for r in report.dkim] == ["pass", "fail"] and report.dmarc.result == "pass"


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("missing", "permerror"),  # NXDOMAIN: no key
        ("broken", "permerror"),  # a p= that is no RSA key
        ("garbage", "permerror"),  # not a tag list
        ("ed", "permerror"),  # an Ed25519 key for an RSA signature
    ],
)
def test_bad_key_records_are_permerror(
    dns_port: int, selector: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    signed = sign(MESSAGE, "rsa", RSA).replace(b"s=rsa;", f"s={selector};".encode())
    with caplog.at_level(logging.INFO, logger="mailpipe.mailauth.dkim_verify"):
        assert dkim_results(dns_port, signed) == [expected]
    assert any(f"DKIM {expected} for d=crepes.fr s={selector}" in r.getMessage() for r in caplog.records)


def test_a_key_behind_servfail_is_temperror(dns_port: int) -> None:
    signed = sign(MESSAGE, "rsa", RSA, domain="crepes.servfail.test")
    assert dkim_results(dns_port, signed) == ["temperror"]


def test_a_signature_missing_tags_is_neutral(dns_port: int) -> None:
    broken = b"DKIM-Signature: v=1; a=rsa-sha256; d=crepes.fr; s=rsa; h=from; b=AAAA\r\n" + MESSAGE
    assert dkim_results(dns_port, broken) == ["neutral"]
    nonsense = b"DKIM-Signature: this is ; not = = a tag list\r\n" + MESSAGE
    assert dkim_results(dns_port, nonsense) == ["neutral"]


def test_a_signature_on_a_message_dkimpy_cannot_parse_is_neutral(dns_port: int) -> None:
    signed = sign(MESSAGE, "rsa", RSA)
    mangled = signed.replace(b"Subject: Bonjour\r\n", b"Subject: Bonjour\r\nthis line is no header\r\n")
    report = authenticate(dns_port, mangled)
    assert [r.result for r in report.dkim] == ["neutral"] and report.arc.result == "none"


def test_a_header_block_past_the_limit_is_not_handed_to_dkimpy(dns_port: int) -> None:
    # dkimpy is quadratic in a field's folded lines: 3.5 MB of them would hold a thread for 18 s.
    to = ",\r\n ".join(f"r{n:06d}@x{n % 997}.test" for n in range(100_000))
    signature = sign(MESSAGE, "rsa", RSA)[: -len(MESSAGE)]  # signing the big one would be as slow
    report = authenticate(dns_port, signature + f"To: {to}\r\n".encode() + MESSAGE)
    assert [r.result for r in report.dkim] == ["policy"] and "header block over" in report.dkim[0].reason
    assert report.dmarc.from_domain == "crepes.fr"  # the From: after the big field is still read


def test_unsigned_mail_is_dkim_none(dns_port: int) -> None:
    assert authenticate(dns_port, MESSAGE).dkim == []


def arc_seal(message: bytes, instance_results: bytes) -> bytes:
    with_results = b"Authentication-Results: relay.test; " + instance_results + b"\r\n" + message
    headers = dkim.arc_sign(with_results, b"arc", b"relay.test", RSA.private, b"relay.test")
    return b"".join(headers) + with_results


def test_an_arc_chain_verifies(dns_port: int) -> None:
    sealed = arc_seal(sign(MESSAGE, "rsa", RSA), b"dkim=pass header.d=crepes.fr")
    report = authenticate(dns_port, sealed)
    assert report.arc.result == "pass" and report.arc.instances == 1


def test_an_arc_chain_over_a_changed_message_fails(dns_port: int) -> None:
    sealed = arc_seal(MESSAGE, b"dkim=none")
    report = authenticate(dns_port, sealed.replace(b"Bonjour Bob.", b"Send money."))
    assert report.arc.result == "fail"


def test_a_chain_longer_than_the_limit_fails_unverified(dns_port: int) -> None:
    sealed = arc_seal(MESSAGE, b"dkim=none")
    for hop in range(arc.MAX_SETS):
        sealed = arc_seal(sealed, f"arc=pass hop={hop}".encode())
    report = authenticate(dns_port, sealed)
    assert report.arc.result == "fail" and "more than" in report.arc.reason


def test_signatures_past_the_limit_are_policy(dns_port: int) -> None:
    signed = MESSAGE
    for _ in range(dkim_verify.MAX_SIGNATURES + 1):
        signed = sign(signed, "ed", ED)
    assert [r.result for r in authenticate(dns_port, signed).dkim] == [
        "pass"
    ] * dkim_verify.MAX_SIGNATURES + ["policy"]


def test_no_arc_headers_is_arc_none(dns_port: int) -> None:
    assert authenticate(dns_port, MESSAGE).arc.result == "none"


def test_a_huge_body_is_hashed_off_the_event_loop(dns_port: int) -> None:
    body = (b"x" * 998 + b"\r\n") * 40_000  # 40 MB
    signed = sign(MESSAGE + body, "rsa", RSA)

    async def run() -> tuple[list[str], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        with ThreadPoolExecutor(1) as executor:
            authenticator = Authenticator(resolver_at(dns_port), executor)
            task = asyncio.create_task(ticker())
            report = await authenticator.check(
                signed, client_ip="192.0.2.9", helo="relay.test", mail_from="alice@crepes.fr"
            )
            done.set()
            await task
        return [r.result for r in report.dkim], ticks

    results, ticks = asyncio.run(run())
    assert results == ["pass"]
    # The loop went on running other tasks while the body was hashed: a blocked loop ticks once.
    assert ticks > 100
