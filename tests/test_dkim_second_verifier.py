"""A second DKIM implementation agrees with dkimpy on what mailpipe signs: Perl's Mail::DKIM
(Debian's libmail-dkim-perl, installed by `make test`), asking the same DNS server on loopback.

Debian's Mail::DKIM (1.20230212) knows no Ed25519: it calls that signature "invalid (unsupported
algorithm)" and judges the message by the RSA one, which is what RFC 8463 expects of such a
verifier and why mailpipe signs with both."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from dns_zone import serving
from test_dkim_signing import message_from

from mailpipe import aws
from mailpipe.dkim_signing.signer import MessageSigner
from mailpipe.dkim_signing.store import KeyStore

SCRIPT = Path(__file__).with_name("dkim_verify.pl")


def mail_dkim(message: bytes, port: int) -> list[str]:
    perl = require_tool("perl")
    probe = subprocess.run([perl, "-MMail::DKIM", "-e", "1"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("missing tool: Mail::DKIM (libmail-dkim-perl)")
    done = subprocess.run([perl, str(SCRIPT), str(port)], input=message, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().splitlines()


def test_mail_dkim_verifies_both_signatures(stack) -> None:
    domain = f"perl-{secrets.token_hex(4)}.test"
    store = KeyStore(aws.client("secretsmanager"))
    keys = store.create(domain)
    signed = MessageSigner(store).sign(message_from(domain, "checked by another implementation"))
    zone = "".join(key.zone_line() + "\n" for key in keys)
    with serving(zone) as (port, _zone):
        lines = mail_dkim(signed, port)
        tampered = mail_dkim(signed.replace(b"Bonjour.", b"Bonsoir."), port)
    rsa = next(k for k in keys if k.algorithm == "rsa-sha256")
    ed25519 = next(k for k in keys if k.algorithm == "ed25519-sha256")
    assert sorted(lines) == [
        f"ed25519-sha256 {domain} {ed25519.selector} invalid (unsupported algorithm ed25519-sha256)",
        f"rsa-sha256 {domain} {rsa.selector} pass",
    ]
    assert f"rsa-sha256 {domain} {rsa.selector} fail (body has been altered)" in tampered
