"""Every message of the shared corpus, sent over SMTP, is stored byte for byte as received."""

from __future__ import annotations

import re
import smtplib

import pytest
from conftest import CORPUS, wait_for_inbox

CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []


def as_received(message: bytes) -> bytes:
    """What a server gets when smtplib sends `message`: smtplib dot-stuffs after any LF and ends
    the data with CRLF; the server undoes the stuffing only on CRLF lines (RFC 5321 4.5.2)."""
    wire = re.sub(rb"(?m)^\.", b"..", message)
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    lines = wire.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")
def test_every_corpus_message_is_stored_byte_exact(stack, new_user) -> None:
    owner = new_user()
    sent: dict[str, bytes] = {}
    client = smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60)
    client.ehlo("corpus.test")
    for path in CORPUS_FILES:
        message = path.read_bytes()
        client.mail("corpus@remote.test")
        assert client.rcpt(owner)[0] == 250
        code, reply = client.data(message)
        assert code == 250, (path, reply)
        queue_id = reply.decode().rsplit(" ", 1)[1]
        sent[queue_id] = as_received(message)
    client.quit()
    stored = wait_for_inbox(stack, owner, len(CORPUS_FILES), timeout=120)
    assert len(stored) == len(CORPUS_FILES)
    store = stack.mail_store()
    for message in stored:
        queue_id = message.delivery_id
        body = store.read_body(message)
        expected = sent[queue_id]
        assert body.endswith(expected), queue_id
        trace = re.escape(f"id {queue_id}\r\n\tfor <{owner}>; ".encode())
        prefix = (
            rb"Received: from corpus\.test \(\[127\.0\.0\.1\]\)\r\n"
            rb"\tby mail\.example\.test \(mailpipe\) with ESMTP "
        )
        assert re.fullmatch(prefix + trace + rb"[^\r\n]+\r\n", body[: len(body) - len(expected)]), queue_id
        assert message.size == len(body)


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 100, f"the shared corpus should be at {CORPUS}"
