"""Other DKIM implementations agree with dkimpy on what mailpipe signs: Perl's Mail::DKIM (Debian's
libmail-dkim-perl, installed by `make test`) and rspamd (Debian's, which checks Ed25519 too), both
asking a DNS server on loopback.

Debian's Mail::DKIM (1.20230212) knows no Ed25519: it calls that signature "invalid (unsupported
algorithm)" and judges the message by the RSA one, which is what RFC 8463 expects of such a
verifier and why mailpipe signs with both."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import require_tool, wait_for
from dns_zone import serving
from dnslib import RR
from ports import free_port
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


# --- rspamd, which knows Ed25519 -----------------------------------------------------------------

RSPAMD_WAIT_SECONDS = 120  # a cold start compiles its regular expressions (about 20 s here)


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory):
    """Debian's rspamd on loopback, its DNS lookups sent to a DNS server of the test's own.

    Yields (check, zone): `check(message)` is rspamd's /checkv2 JSON; records added to
    `zone.records` are answered from then on.
    """
    binary = require_tool("rspamd")
    directory = tmp_path_factory.mktemp("rspamd")
    with serving("") as (dns_port, zone):
        ports = [free_port() for _ in range(3)]
        override = directory / "override.d"
        override.mkdir()
        (override / "options.inc").write_text(f'dns {{ nameserver = ["127.0.0.1:{dns_port}"]; }}\n')
        for name, port in zip(("worker-normal", "worker-controller", "worker-proxy"), ports, strict=True):
            (override / f"{name}.inc").write_text(f'bind_socket = "127.0.0.1:{port}";\n')
        (override / "logging.inc").write_text('level = "error";\n')
        as_root = ["-i", "-u", "root", "-g", "root"] if os.geteuid() == 0 else []
        variables = [f"--var={name}={directory}" for name in ("LOCAL_CONFDIR", "RUNDIR", "DBDIR", "LOGDIR")]
        process = subprocess.Popen(
            # As root, rspamd must be told to stay root (-i: "insecure"); otherwise it runs as us.
            [binary, "-f", *as_root, "-c", "/etc/rspamd/rspamd.conf", *variables],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{ports[0]}"
        try:
            wait_for(lambda: _answers(f"{url}/ping") or process.poll() is not None, RSPAMD_WAIT_SECONDS, 0.5)
            assert process.poll() is None, f"rspamd exited with {process.returncode}; see {directory}"

            def check(message: bytes) -> dict:
                request = urllib.request.Request(f"{url}/checkv2", data=message, method="POST")
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.loads(response.read())

            yield check, zone
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_rspamd_verifies_both_signatures_ed25519_included(stack, rspamd) -> None:
    check, zone = rspamd
    domain = f"rspamd-{secrets.token_hex(4)}.test"
    store = KeyStore(aws.client("secretsmanager"))
    for algorithm in ("rsa", "ed25519"):
        # One domain per algorithm: rspamd's verdict is per domain, so each signature is judged alone.
        keys = store.create(f"{algorithm}.{domain}", algorithm=algorithm)
        for rr in RR.fromZone("".join(key.zone_line() + "\n" for key in keys)):
            zone.records.setdefault(str(rr.rname).lower(), []).append(rr)
        signed = MessageSigner(store).sign(message_from(f"{algorithm}.{domain}", "checked by rspamd"))
        symbols = check(signed)["symbols"]
        assert "R_DKIM_ALLOW" in symbols, symbols
        assert symbols["R_DKIM_ALLOW"]["options"] == [f"{algorithm}.{domain}:s={keys[0].selector}"]
        tampered = check(signed.replace(b"Bonjour.", b"Bonsoir."))["symbols"]
        assert "R_DKIM_REJECT" in tampered and "R_DKIM_ALLOW" not in tampered, tampered
