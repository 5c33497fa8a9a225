"""`mailpipe dev` as a user watches it: remote mail lands in the outbox, and the log has a line per
SMTP session, per failed login and per outbound attempt."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from dev_process import DevProcess
from dns_zone import serving

BOB = ("bob@example.test", "bob-password")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    with serving("") as (port, _zone):
        process = DevProcess(tmp_path, f"127.0.0.1:{port}")
        yield process
        process.kill()


def test_remote_mail_is_captured_and_every_step_is_logged(dev: DevProcess, tmp_path: Path) -> None:
    dev.start()
    with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=60) as client:
        client.ehlo("client.remote.test")
        client.mail("alice@remote.test")
        assert client.rcpt("nobody@example.test")[0] == 550
        assert client.rcpt(BOB[0])[0] == 250
        code, reply = client.data(b"Subject: in\r\n\r\nhello\r\n")
        assert code == 250
    queue_id = reply.decode().rsplit(" ", 1)[1]
    with smtplib.SMTP("127.0.0.1", dev.ports["submission"], timeout=60) as client:
        client.ehlo("laptop.example.test")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(BOB[0], "wrong")
    message = b"From: bob@example.test\r\nTo: friend@remote.test\r\nSubject: out\r\n\r\nnot sent\r\n"
    with smtplib.SMTP("127.0.0.1", dev.ports["submission"], timeout=60) as client:
        client.login(*BOB)
        client.sendmail(BOB[0], ["friend@remote.test"], message)
    outbox = tmp_path / ".mailpipe" / "outbox"
    [captured] = wait_for(lambda: list(outbox.glob("*.remote.test.eml")) if outbox.is_dir() else [], 60)
    written = captured.read_bytes()
    assert written.startswith(b"Return-Path: <bob@example.test>\r\nX-Original-To: friend@remote.test\r\n")
    assert written.endswith(message)
    log = dev.stop()

    assert re.search(
        r"smtp session client=127\.0\.0\.1 helo=client\.remote\.test tls=no auth=- "
        r"mail_from=<alice@remote\.test> rcpts=bob@example\.test queued=1 rejected=1 "
        rf'result="250 2\.0\.0 Ok: queued as {queue_id}"',
        log,
    ), log
    assert re.search(
        r"smtp session client=127\.0\.0\.1 helo=laptop\.example\.test .*queued=0 rejected=\d", log
    )
    assert re.search(rf"auth failed: client=127\.0\.0\.1 .*user={re.escape(BOB[0])}", log), log
    assert re.search(
        r"outbound delivered id=\S+ rcpt=friend@remote\.test relay=capture attempt=1 "
        rf'reply="250 2\.0\.0 captured in {re.escape(str(captured.resolve()))}"',
        log,
    ), log
