"""Every message of the shared corpus, sent over SMTP, is stored byte for byte as received."""

from __future__ import annotations

import imaplib
import re
import secrets
import smtplib
import socket
from dataclasses import dataclass

import pytest
from conftest import CORPUS, DOMAIN, PASSWORD, wait_for_inbox

from mailpipe.mime.lines import crlf_lines

CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []


def as_received(message: bytes) -> bytes:
    """What a server gets when smtplib sends `message`: smtplib dot-stuffs after any LF and ends
    the data with CRLF; the server undoes the stuffing only on CRLF lines (RFC 5321 4.5.2)."""
    wire = re.sub(rb"(?m)^\.", b"..", message)
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    lines = wire.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@dataclass
class Delivered:
    owner: str
    sent: dict[str, bytes]  # queue id -> the message as the server received it


@pytest.fixture(scope="module")
def delivered(stack) -> Delivered:
    """The corpus, sent over SMTP once for the module to a user of its own: each test checks one way
    it comes back (the store, POP3, IMAP), and none changes it (POP3 deletes nothing, IMAP only
    reads), so three deliveries of the whole corpus would check nothing more."""
    owner = f"corpus-{secrets.token_hex(4)}@{DOMAIN}"
    stack.directory().add_user(owner, PASSWORD)
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
    wait_for_inbox(stack, owner, len(CORPUS_FILES), timeout=120)
    return Delivered(owner, sent)


@pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")
def test_every_corpus_message_is_stored_byte_exact(stack, delivered: Delivered) -> None:
    owner, sent = delivered.owner, delivered.sent
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
        # Below the trace, our Authentication-Results (the shared stack's DNS knows no names).
        results = rb"Authentication-Results: mail\.example\.test;(?:\r\n\t[^\r\n]+)+\r\n"
        assert re.fullmatch(prefix + trace + rb"[^\r\n]+\r\n" + results, body[: len(body) - len(expected)]), (
            queue_id
        )
        assert message.size == len(body)


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 100, f"the shared corpus should be at {CORPUS}"


def pop3_retr_all(port: int, user: str, count: int) -> list[bytes]:
    """RETR every message over a raw socket; returns each as sent on the wire, dot-unstuffed."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\n".encode())
        assert reader.readline().startswith(b"+OK") and reader.readline().startswith(b"+OK")
        messages = []
        for number in range(1, count + 1):
            sock.sendall(b"RETR %d\r\n" % number)
            assert reader.readline().startswith(b"+OK")
            lines = []
            while (line := reader.readline()) != b".\r\n":
                assert line.endswith(b"\r\n"), "every POP3 line ends in CRLF"
                lines.append(line[1:] if line.startswith(b".") else line)
            messages.append(b"".join(lines))
        sock.sendall(b"QUIT\r\n")
        return messages


@pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")
def test_every_corpus_message_comes_back_over_pop3(stack, delivered: Delivered) -> None:
    owner = delivered.owner
    stored = wait_for_inbox(stack, owner, len(CORPUS_FILES), timeout=120)
    retrieved = pop3_retr_all(stack.pop3_port, owner, len(stored))
    store = stack.mail_store()
    for message, wire in zip(stored, retrieved, strict=True):
        body = store.read_body(message)
        # POP3 is line-based: what comes back is the stored bytes with every line ending CRLF.
        assert wire == b"".join(line + b"\r\n" for line in crlf_lines(body)), message.delivery_id
        assert len(wire) == message.crlf_size or not body.endswith(b"\n")


@pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")
def test_every_corpus_message_comes_back_over_imap(stack, delivered: Delivered) -> None:
    owner = delivered.owner
    stored = wait_for_inbox(stack, owner, len(CORPUS_FILES), timeout=120)
    imap = imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=60)
    imap.login(owner, PASSWORD)
    imap.select("INBOX", readonly=True)
    store = stack.mail_store()
    for number, message in enumerate(stored, 1):
        _, data = imap.fetch(str(number), "(RFC822.SIZE BODY.PEEK[])")
        body = data[0][1]
        # IMAP sends the stored bytes with every line ending in CRLF, and says so in RFC822.SIZE.
        expected = re.sub(rb"(?<!\r)\n", b"\r\n", store.read_body(message))
        assert body == expected, message.delivery_id
        assert f"RFC822.SIZE {len(expected)} ".encode() in data[0][0]
    imap.logout()
