"""The whole path, as deployed pieces run it: `mailpipe dkim keygen` against a dev stack, a message
submitted on its submission port, the inbound and outbound functions, and the SMTP sink the
stack's transport points at receiving it with two DKIM signatures that verify (dkimpy, with the
keys' records served by a DNS server on loopback)."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys

import pytest
from conftest import wait_for
from dkim_dns import verified_signatures
from dns_zone import serving
from smtp_sink import SmtpSink
from test_two_stacks import PASSWORD, Stack

DOMAIN = "crepes.fr"
MESSAGE = (
    b"From: Alice <alice@crepes.fr>\r\nTo: Friend <friend@remote.test>\r\nSubject: signed on the way out\r\n"
    b"Date: Sat, 05 Dec 2026 12:00:00 +0100\r\nMessage-ID: <signed-e2e@crepes.fr>\r\n\r\nBonjour.\r\n"
)


@pytest.fixture(scope="module")
def signing_stack(tmp_path_factory: pytest.TempPathFactory):
    # The stack's own lookups (inbound checks, MX) go to an empty loopback zone, never real DNS.
    with SmtpSink() as sink, serving("") as (dns_port, _zone):
        stack = Stack(
            tmp_path_factory.mktemp("dkim-e2e") / "crepes",
            DOMAIN,
            f"alice@{DOMAIN}",
            [f"*=smtp:[127.0.0.1]:{sink.port}"],
            resolver=f"127.0.0.1:{dns_port}",
        )
        try:
            yield stack, sink
        finally:
            stack.stop()


def mailpipe(stack: Stack, *argv: str) -> str:
    """The `mailpipe` command pointed at the stack's moto, as `source .mailpipe/dev.env` would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
    env.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{stack.aws}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "mailpipe_tools.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_submitted_mail_arrives_with_two_signatures_that_verify(signing_stack) -> None:
    stack, sink = signing_stack
    printed = mailpipe(stack, "dkim", "keygen", DOMAIN)
    zone = "".join(line + "\n" for line in printed.splitlines() if " IN TXT " in line)
    assert zone.count("_domainkey") == 2
    with smtplib.SMTP("127.0.0.1", stack.submission, timeout=30) as smtp:
        smtp.login(f"alice@{DOMAIN}", PASSWORD)
        smtp.sendmail(f"alice@{DOMAIN}", ["friend@remote.test"], MESSAGE)
    wait_for(lambda: sink.transactions, timeout=60)
    [transaction] = sink.transactions
    assert transaction.data.endswith(MESSAGE)
    with serving(zone) as (port, _zone):
        results = verified_signatures(transaction.data, port)
    assert len(results) == 2 and all(ok and d == DOMAIN.encode() for d, _s, ok in results), results
    header = transaction.data.split(b"\r\n\r\n", 1)[0]
    assert b"a=ed25519-sha256" in header and b"a=rsa-sha256" in header
