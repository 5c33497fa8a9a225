"""Helpers for the tests that drive real mail clients (curl, mbsync, offlineimap, fetchmail)."""

from __future__ import annotations

import imaplib
import os
import poplib
import random
import re
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CORPUS

from mailpipe.store import MailStore, StoredMessage

# A handful of corpus messages that exercise what clients tend to get wrong.
CORPUS_SAMPLE = (
    "plain_emails/basic_email.eml",  # CRLF line ends
    "plain_emails/basic_email_lf.eml",  # bare LF line ends
    "attachment_emails/attachment_pdf_non_ascii_lf.eml",  # bare LF and 8-bit bytes, base64 part
    "multi_charset/japanese_shift_jis.eml",  # 8-bit Shift_JIS body
    "rfc6532/utf8_headers.eml",  # raw UTF-8 in the header
    "attachment_emails/attachment_message_rfc822.eml",  # a message inside a message
    "plain_emails/raw_email_trailing_dot.eml",  # no line end after the last line, which is "3."
    "multipart_report_emails/report_422.eml",  # a line starting with dots (POP3 dot-stuffing)
)

BIG_SIZE = 1_000_000


@dataclass(frozen=True)
class Sample:
    name: str
    raw: bytes


def corpus_sample() -> list[Sample]:
    """The sample messages from ../shared/corpus, and a generated one of about 1 MB."""
    missing = [name for name in CORPUS_SAMPLE if not (CORPUS / name).is_file()]
    if missing:
        pytest.skip(f"missing corpus messages under {CORPUS}: {missing}")
    samples = [Sample(name, (CORPUS / name).read_bytes()) for name in CORPUS_SAMPLE]
    return [*samples, Sample("generated/big.eml", big_message())]


def big_message(size: int = BIG_SIZE) -> bytes:
    """A plain text message of `size` bytes or a little more, with CRLF line ends and dotted lines."""
    rng = random.Random(3)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 .,-"
    lines = [
        b"From: Big Sender <big@remote.test>",
        b"To: someone@example.test",
        b"Subject: a large message",
        b"Date: Fri, 27 Nov 2026 10:00:00 +0000",
        b"Message-ID: <big@remote.test>",
        b"",
    ]
    total = sum(len(line) + 2 for line in lines)
    while total < size:
        line = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 76)))
        if rng.random() < 0.01:
            line = b"." + line  # POP3 must dot-stuff these
        lines.append(line)
        total += len(line) + 2
    return b"\r\n".join(lines) + b"\r\n"


def as_imap_sends(raw: bytes) -> bytes:
    """A stored message as IMAP (and POP3) transmit it: every bare LF as CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


def as_lf(raw: bytes) -> bytes:
    """What a client that keeps mail with Unix line ends writes: every CRLF as LF."""
    return as_imap_sends(raw).replace(b"\r\n", b"\n")


def stored(store: MailStore, owner: str, mailbox: str = "INBOX") -> dict[int, tuple[StoredMessage, bytes]]:
    """The mailbox's messages by UID, each with its body as the store holds it."""
    _, messages = store.list_messages(owner, mailbox)
    return {m.uid: (m, store.read_body(m)) for m in messages}


def run(command: list[str], *, timeout: float = 120, env: dict[str, str] | None = None, **kwargs):
    """Run a client; fail with its output when it does not exit 0."""
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{command[0]} did not finish in {timeout}s\n--- stdout\n"
            + (exc.stdout or b"").decode(errors="replace")[-4000:]
            + "\n--- stderr\n"
            + (exc.stderr or b"").decode(errors="replace")[-4000:]
        )
    assert result.returncode == 0, (
        f"{command[0]} exited {result.returncode}\n--- stdout\n"
        + result.stdout.decode(errors="replace")[-4000:]
        + "\n--- stderr\n"
        + result.stderr.decode(errors="replace")[-4000:]
    )
    return result


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def imap_certificate(port: int) -> str:
    """The PEM certificate the IMAP server presents after STARTTLS (each listener has its own)."""
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        client.starttls(_insecure())
        return ssl.DER_cert_to_PEM_cert(client.sock.getpeercert(binary_form=True))
    finally:
        client.logout()


def pop3_certificate(port: int) -> str:
    """The PEM certificate the POP3 server presents after STLS."""
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        client.stls(_insecure())
        return ssl.DER_cert_to_PEM_cert(client.sock.getpeercert(binary_form=True))
    finally:
        client.quit()


# -- Maildir ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaildirMessage:
    path: Path
    flags: str  # the letters after ":2," (maildir info), sorted

    @property
    def raw(self) -> bytes:
        return self.path.read_bytes()


def maildir_messages(folder: Path) -> list[MaildirMessage]:
    """Every message in a Maildir folder (new/ and cur/), with its flag letters."""
    found = []
    for sub in ("new", "cur"):
        directory = folder / sub
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            _, _, info = path.name.partition(":2,")
            found.append(MaildirMessage(path, "".join(sorted(info))))
    return found


def maildir_set_flags(message: MaildirMessage, flags: str) -> Path:
    """Give a Maildir message new flag letters, as a mail reader does: rename it into cur/."""
    base = message.path.name.partition(":")[0]
    target = message.path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(flags))}"
    message.path.rename(target)
    return target


# Maildir flag letters and the IMAP flags they stand for.
MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


def imap_flags_as_maildir(flags: tuple[str, ...] | list[str]) -> str:
    letters = {letter for letter, flag in MAILDIR_FLAGS.items() if flag in flags}
    return "".join(sorted(letters))
