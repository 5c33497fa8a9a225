"""The seed's scenario for real: alice@crepes.fr writes to bob@hamburger.edu, two mailpipe stacks apart."""

from __future__ import annotations

import email
import imaplib
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from dns_zone import serving
from ports import free_ports

PASSWORD = "two-stacks"
MESSAGE = (
    "From: Alice <alice@crepes.fr>\r\nTo: Bob <{to}>\r\nSubject: {subject}\r\n"
    "Date: Fri, 27 Nov 2026 18:00:00 +0100\r\nMessage-ID: <{subject}@crepes.fr>\r\n\r\nBonjour Bob.\r\n"
)


class Stack:
    def __init__(
        self, directory: Path, domain: str, user: str, transports: list[str] = (), *, resolver: str
    ) -> None:
        self.smtp, self.submission, self.imap, self.pop3, self.aws, self.http = free_ports(6)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
        ports = {
            "--smtp-port": self.smtp,
            "--submission-port": self.submission,
            "--imap-port": self.imap,
            "--pop3-port": self.pop3,
            "--aws-port": self.aws,
            "--http-port": self.http,
        }
        command = [sys.executable, "-m", "mailpipe_tools.cli", "dev", "--domain", domain, "--user"]
        command += [f"{user}:{PASSWORD}", "--template", str(REPO_ROOT / "template.yaml")]
        for option, port in ports.items():
            command += [option, str(port)]
        for transport in transports:
            command += ["--transport", transport]
        command += ["--resolver", resolver]  # never real DNS: SPF, DKIM and DMARC ask this server
        directory.mkdir()
        self.process = subprocess.Popen(
            command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            lines.append(line)
            if not line or line.strip() == "mailpipe dev ready":
                break
        assert lines[-1].strip() == "mailpipe dev ready", "".join(lines)

    def inbox(self, user: str, mailbox: str = "INBOX") -> list[bytes]:
        client = imaplib.IMAP4("127.0.0.1", self.imap, timeout=30)
        client.login(user, PASSWORD)
        if client.select(mailbox, readonly=True)[0] != "OK":
            client.logout()
            return []
        _, data = client.search(None, "ALL")
        messages = [client.fetch(n, "(BODY.PEEK[])")[1][0][1] for n in data[0].split()]
        client.logout()
        return messages

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def two_stacks(root: Path, resolver: str):
    """hamburger.edu, and crepes.fr whose mail for hamburger.edu goes straight to its port 25."""
    hamburger = Stack(root / "hamburger", "hamburger.edu", "bob@hamburger.edu", resolver=resolver)
    try:
        crepes = Stack(
            root / "crepes",
            "crepes.fr",
            "alice@crepes.fr",
            [f"hamburger.edu=smtp:[127.0.0.1]:{hamburger.smtp}"],
            resolver=resolver,
        )
    except BaseException:
        hamburger.stop()
        raise
    try:
        yield crepes, hamburger
    finally:
        crepes.stop()
        hamburger.stop()


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory):
    with serving("") as (port, _zone):
        yield from two_stacks(tmp_path_factory.mktemp("two-stacks"), f"127.0.0.1:{port}")


def submit(stack: Stack, to: str, subject: str) -> bytes:
    message = MESSAGE.format(to=to, subject=subject).encode()
    with smtplib.SMTP("127.0.0.1", stack.submission, timeout=30) as smtp:
        smtp.login("alice@crepes.fr", PASSWORD)
        smtp.sendmail("alice@crepes.fr", [to], message)
    return message


def wait_for(fetch, predicate, timeout: float = 60) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        messages = fetch()
        found = [m for m in messages if predicate(m)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_alice_writes_to_bob_across_two_stacks(stacks) -> None:
    crepes, hamburger = stacks
    sent = submit(crepes, "bob@hamburger.edu", "hello-across")
    [received] = wait_for(lambda: hamburger.inbox("bob@hamburger.edu"), lambda m: b"hello-across" in m)
    # Byte-exact but for the trace headers the two hops put on top.
    assert received.endswith(sent)
    traces = received[: -len(sent)]
    assert traces.count(b"Received: ") == 2 and b"by mail.crepes.fr (mailpipe) with ESMTPA" in traces


def test_a_misspelled_recipient_bounces_to_alice(stacks) -> None:
    crepes, _ = stacks
    submit(crepes, "bobb@hamburger.edu", "misspelled")
    [bounce] = wait_for(lambda: crepes.inbox("alice@crepes.fr"), lambda m: b"delivery-status" in m)
    report = email.message_from_bytes(bounce)
    assert report.get_content_type() == "multipart/report"
    assert report["From"].lower().startswith("mailer-daemon@") or "MAILER-DAEMON" in report["From"]
    status = report.get_payload()[1].as_string()
    assert "Final-Recipient: rfc822; bobb@hamburger.edu" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    assert "misspelled" in bounce.decode("utf-8", "replace")
