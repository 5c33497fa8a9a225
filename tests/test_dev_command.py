"""`mailpipe dev` as a user runs it: ready line, a first message sent with swaks, clean Ctrl-C."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO_ROOT, require_tool
from dns_zone import serving
from ports import free_port
from rspamd import GTUBE_REJECT, Rspamd, rspamd_fixture  # noqa: F401 (the fixture "rspamd")


@pytest.fixture
def dev_args() -> list[str]:
    """Options of `mailpipe dev` besides the ports (a test class may override this)."""
    return []


@pytest.fixture
def dns_server():
    # The stack checks SPF, DKIM and DMARC of what swaks sends: never against real DNS.
    with serving("") as (port, _zone):
        yield f"127.0.0.1:{port}"


@pytest.fixture
def dev_stack(tmp_path: Path, dev_args: list[str], dns_server: str):
    smtp_port, pop3_port, imap_port, aws_port, submission_port, http_port = (free_port() for _ in range(6))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailpipe_tools.cli",
            "dev",
            "--smtp-port",
            str(smtp_port),
            "--pop3-port",
            str(pop3_port),
            "--imap-port",
            str(imap_port),
            "--submission-port",
            str(submission_port),
            "--aws-port",
            str(aws_port),
            "--http-port",
            str(http_port),
            "--template",
            str(REPO_ROOT / "template.yaml"),
            "--resolver",
            dns_server,
            *dev_args,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip() == "mailpipe dev ready":
            break
    else:
        process.kill()
    assert lines and lines[-1].strip() == "mailpipe dev ready", "".join(lines)
    yield process, smtp_port, "".join(lines), tmp_path
    if process.poll() is None:
        process.kill()
        process.wait()


def test_dev_prints_endpoints_and_demo_user_then_ready(dev_stack) -> None:
    _process, smtp_port, output, cwd = dev_stack
    assert f"smtp://127.0.0.1:{smtp_port}" in output
    assert re.search(r"^SMTP AUTH smtp://127\.0\.0\.1:\d+  \(submission", output, re.M), output
    outbox = (cwd / ".mailpipe" / "outbox").resolve()
    assert f"outbound  *=capture:{outbox}  (nothing leaves this machine" in output
    assert "example.test" in output
    assert "bob@example.test  password bob-password" in output


def test_dev_serves_jmap_on_the_http_port(dev_stack) -> None:
    """`--http-port`: the JMAP function behind the local HTTP API, its URL in the banner."""
    _process, _smtp_port, output, _cwd = dev_stack
    match = re.search(r"^JMAP      (http://127\.0\.0\.1:\d+)/\.well-known/jmap", output, re.M)
    assert match, output
    credentials = base64.b64encode(b"bob@example.test:bob-password").decode()
    request = urllib.request.Request(
        match.group(1) + "/.well-known/jmap", headers={"Authorization": f"Basic {credentials}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        session = json.load(response)
    assert session["username"] == "bob@example.test"
    assert session["apiUrl"] == match.group(1) + "/jmap/api"


def test_first_message_with_swaks_then_ctrl_c(dev_stack) -> None:
    swaks = require_tool("swaks")
    process, smtp_port, _, cwd = dev_stack
    sent = subprocess.run(
        [
            swaks,
            "--server",
            f"127.0.0.1:{smtp_port}",
            "--to",
            "bob@example.test",
            "--from",
            "alice@crepes.fr",
            "--header",
            "Subject: first message",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "250 2.0.0 Ok: queued as" in sent.stdout
    env = {**os.environ}
    for line in (cwd / ".mailpipe" / "dev.env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value

    def listing() -> str:
        return subprocess.run(
            [sys.executable, "-m", "mailpipe_tools.cli", "mailbox", "list", "bob@example.test", "INBOX"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        ).stdout

    deadline = time.monotonic() + 30
    while "first message" not in listing() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "first message" in listing()

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert process.stdout is not None
    log = process.stdout.read()
    # The gateway's own log lines reach the dev log (Powertools once filtered every "mailpipe*" logger).
    assert "mailpipe_gateway.smtp.handler: queued" in log, log
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", smtp_port)) != 0, "the gateway must be gone"


class TestWithRspamd:
    @pytest.fixture
    def dev_args(self, rspamd: Rspamd) -> list[str]:
        return ["--rspamd", rspamd.url]

    def test_rspamd_option_turns_the_filter_on(self, dev_stack, rspamd: Rspamd) -> None:
        _process, smtp_port, output, _ = dev_stack
        assert f"rspamd    {rspamd.url}" in output
        message = "From: alice@remote.test\r\nSubject: spam\r\n\r\n" + GTUBE_REJECT + "\r\n"
        client = smtplib.SMTP("127.0.0.1", smtp_port, timeout=60)
        client.ehlo("client.remote.test")
        client.mail("alice@remote.test")
        assert client.rcpt("bob@example.test")[0] == 250
        code, text = client.data(message.encode())
        client.quit()
        assert (code, text[:6]) == (550, b"5.7.1 ")


class TestHostname:
    @pytest.fixture
    def dev_args(self) -> list[str]:
        return ["--domain", "crepes.test", "--domain", "example.test"]

    def test_the_server_is_named_after_the_first_domain(self, dev_stack) -> None:
        _process, smtp_port, output, _ = dev_stack
        assert "hostname  mail.crepes.test" in output
        client = smtplib.SMTP("127.0.0.1", smtp_port, timeout=60)
        assert client.ehlo("client.remote.test")[1].startswith(b"mail.crepes.test")
        client.starttls()  # the certificate is the server's name's
        certificate = ssl.DER_cert_to_PEM_cert(client.sock.getpeercert(binary_form=True))
        client.quit()
        assert "mail.crepes.test" in _certificate_names(certificate)


class TestHostnameOption:
    @pytest.fixture
    def dev_args(self) -> list[str]:
        return ["--domain", "crepes.test", "--hostname", "mx.crepes.test"]

    def test_hostname_chooses_the_name(self, dev_stack) -> None:
        _process, smtp_port, output, _ = dev_stack
        assert "hostname  mx.crepes.test" in output
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=60) as client:
            assert client.ehlo("client.remote.test")[1].startswith(b"mx.crepes.test")


def _certificate_names(pem: str) -> str:
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(pem.encode())
    return " ".join(
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    )
