"""Random and mangled SMTP on port 25 and submission: a well-formed reply to every line, never an
internal error, nothing logged at ERROR; and many hostile connections at once stay bounded in memory."""

from __future__ import annotations

import base64
import logging
import random
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DOMAIN, PASSWORD
from logged_errors import Errors

SEED = 20261205
LINES = 2000

BASES = [
    b"EHLO fuzz.test",
    b"HELO fuzz.test",
    b"MAIL FROM:<a@remote.test>",
    b"MAIL FROM:<a@remote.test> SIZE=100 BODY=8BITMIME",
    b"MAIL FROM:<> RET=HDRS ENVID=x+2B1",
    b"MAIL FROM:<j\xc3\xb6@remote.test> SMTPUTF8",
    b"RCPT TO:<{user}>",
    b"RCPT TO:<{user}> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@y.test",
    b"RCPT TO:<nobody@" + DOMAIN.encode() + b">",
    b"RCPT TO:<victim@elsewhere.test>",
    b"RCPT TO:<postmaster>",
    b"VRFY {user}",
    b"EXPN list",
    b"HELP MAIL",
    b"NOOP",
    b"RSET",
    b"DATA",
    b"AUTH PLAIN",
    b"AUTH LOGIN",
    b"AUTH PLAIN {plain}",
    b"AUTH CRAM-MD5",
    b"BDAT 10 LAST",
    b"ETRN example.test",
]
# Commands a client may pipeline (RFC 2920): no DATA, AUTH, QUIT or STARTTLS inside a group.
PIPELINABLE = [base for base in BASES if not base.startswith((b"DATA", b"AUTH"))]

REPLY = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*)\r\n$", re.DOTALL)
ENHANCED = re.compile(rb"^([245])\.[0-9]{1,3}\.[0-9]{1,3} ")
# 220 (STARTTLS), 334 and 354 carry no enhanced code (RFC 2034 3), nor do EHLO/HELO's 250s.
WITHOUT_ENHANCED = (b"220", b"334", b"354")
CLOSING = (b"221", b"421")


@pytest.fixture
def logged_errors() -> Iterator[list[str]]:
    errors = Errors()
    loggers = [logging.getLogger(name) for name in ("mailpipe_gateway", "mail.log", "asyncio")]
    for logger in loggers:
        logger.addHandler(errors)
    try:
        yield errors.records
    finally:
        for logger in loggers:
            logger.removeHandler(errors)


class Fuzzer:
    def __init__(self, rng: random.Random, user: str) -> None:
        self.rng = rng
        self.user = user
        self.plain = base64.b64encode(f"\0{user}\0{PASSWORD}".encode())

    def line(self, bases: list[bytes]) -> bytes:
        roll = self.rng.random()
        if roll < 0.2:  # random bytes, NUL and 8-bit included (a bare LF would make two lines)
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 80))).replace(b"\n", b" ")
        if roll < 0.23:  # far over any command limit
            return self.rng.choice([b"MAIL FROM:<", b"RCPT TO:<", b"NOOP ", b""]) + b"x" * self.rng.choice(
                [600, 5_000, 70_000, 300_000]
            )
        line = bytearray(self.rng.choice(bases).replace(b"{user}", self.user.encode()))
        line = bytearray(bytes(line).replace(b"{plain}", self.plain))
        for _ in range(self.rng.choice([0, 0, 1, 2, 4])):
            at = self.rng.randrange(len(line) + 1)
            mutation = self.rng.random()
            if mutation < 0.4 and line:
                line[min(at, len(line) - 1)] = self.rng.choice([0, 1, 0x7F, 0xFF, 0xB2, *b'<>":@ =\\\r'])
            elif mutation < 0.7:
                line[at:at] = bytes([self.rng.randrange(256)]).replace(b"\n", b" ")
            else:
                del line[at : at + self.rng.randint(1, 8)]
        return bytes(line)


class Conversation:
    """One connection; reconnects (and logs in on submission) when the server closes it."""

    def __init__(self, port: int, submission: bool, user: str, rng: random.Random) -> None:
        self.port, self.submission, self.user, self.rng = port, submission, user, rng
        self.sock: socket.socket | None = None
        self.replies = 0

    def open(self) -> None:
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.reader = self.sock.makefile("rb")
        greeting = self.reader.readline()
        assert greeting.startswith(b"220 "), greeting
        if self.rng.random() < 0.7:
            self.exchange(b"EHLO fuzz.test")
            if self.submission and self.rng.random() < 0.7:
                # Fuzzed AUTH lines may have had the user throttled: then this is a 454.
                self.exchange(b"AUTH PLAIN " + base64.b64encode(f"\0{self.user}\0{PASSWORD}".encode()))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def reply(self, sent: bytes) -> bytes:
        """Read one reply to `sent`, checking every line of it; its last line ("" if closed)."""
        while True:
            try:
                line = self.reader.readline()
            except ConnectionResetError:  # closed after a 421 we had not read yet, and we wrote on
                return b""
            if not line:
                return b""
            match = REPLY.match(line)
            assert match, f"malformed reply {line!r} to {sent[:80]!r}"
            code, more, text = match.groups()
            assert not line.startswith(b"451 4.3.0 Internal"), f"internal error for {sent[:80]!r}"
            greeting_250 = sent[:4].upper() in (b"EHLO", b"HELO") and code == b"250"
            if code not in WITHOUT_ENHANCED and not greeting_250:
                enhanced = ENHANCED.match(text)
                assert enhanced and enhanced.group(1) == code[:1], f"no enhanced code: {line!r} {sent[:80]!r}"
            if more == b" ":
                self.replies += 1
                return line

    def send(self, data: bytes) -> bool:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False  # the server closed the session (its 421 came with an earlier reply)
        return True

    def exchange(self, line: bytes) -> bytes:
        if not self.send(line + b"\r\n"):
            return b""
        reply = self.reply(line)
        if reply.startswith(b"354"):  # DATA: some content, then the end
            body = b"".join(
                bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 100))).replace(b"\n", b" ")
                + b"\r\n"
                for _ in range(self.rng.randint(0, 5))
            )
            if not self.send(b"Subject: fuzz\r\n\r\n" + body + b".\r\n"):
                return b""
            reply = self.reply(b"<end of DATA>")
        return reply

    def burst(self, lines: list[bytes]) -> list[bytes]:
        if not self.send(b"".join(line + b"\r\n" for line in lines)):
            return []
        replies = []
        for line in lines:
            reply = self.reply(line)
            replies.append(reply)
            if not reply or reply[:3] in CLOSING:
                break
        return replies


def ended(reply: bytes) -> bool:
    """True when the server has ended the session with this reply (or silently)."""
    return not reply or reply[:3] in CLOSING or reply.startswith(b"502 5.5.1 Too many unrecognized")


@pytest.fixture
def gateways(stack) -> Iterator[tuple[int, int]]:
    """Port 25 and submission of the test's own: fuzzed logins must not throttle other tests."""
    inbound = stack.build_gateway(stack.spool())
    submission = stack.build_submission(stack.spool())
    for gateway in (inbound, submission):
        stack.loop.run(gateway.start())
    yield inbound.port, submission.port
    for gateway in (inbound, submission):
        stack.loop.run(gateway.stop())


def test_fuzzed_sessions_always_get_well_formed_replies(new_user, gateways, logged_errors) -> None:
    rng = random.Random(SEED)
    user = new_user()
    fuzzer = Fuzzer(rng, user)
    conversations = [
        Conversation(gateways[0], False, user, rng),
        Conversation(gateways[1], True, user, rng),
    ]
    for conversation in conversations:
        conversation.open()
    sent = 0
    while sent < LINES:
        conversation = rng.choice(conversations)
        if rng.random() < 0.15:
            group = [fuzzer.line(PIPELINABLE) for _ in range(rng.randint(2, 12))]
            replies = conversation.burst(group)
            sent += len(group)
            last = replies[-1] if replies else b""
            if len(replies) < len(group) or ended(last):
                # Fewer replies only when the server ended the session, saying so (or had said so).
                assert ended(last) or not replies or replies[-1][:1] in (b"4", b"5"), group
                conversation.open()
            continue
        line = fuzzer.line(BASES) if rng.random() < 0.97 else b"QUIT"
        reply = conversation.exchange(line)
        sent += 1
        if ended(reply):
            conversation.open()
    for conversation in conversations:
        assert conversation.exchange(b"NOOP")[:3] in (b"250", b"530"), "still serving"
        conversation.close()
    assert sum(c.replies for c in conversations) >= LINES * 0.9
    assert logged_errors == []


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_many_hostile_connections_stay_bounded_in_memory(stack, new_user, logged_errors) -> None:
    """200 connections at once, half in DATA and half in the command phase, each sending 2 MiB
    without a line end. The gateway runs in this process: its peak RSS is ours."""
    bob = new_user()
    gateway = stack.build_gateway(stack.spool(), data_memory=16 * 1024 * 1024)
    stack.loop.run(gateway.start())
    try:
        grown = hostile_connections(gateway.port, bob, 200)
    finally:
        stack.loop.run(gateway.stop())
    # 16 MiB of message data at most, and stream buffers of at most ~100 KiB a connection.
    assert grown < 80 * 1024 * 1024, f"200 hostile connections grew the gateway by {grown / 2**20:.0f} MB"
    assert logged_errors == []


def hostile_connections(port: int, recipient: str, count: int) -> int:
    """How much the peak RSS grows while `count` connections send 2 MiB each without a line end."""
    connections = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        if n % 2:
            envelope = f"MAIL FROM:<a@remote.test>\r\nRCPT TO:<{recipient}>\r\n"
            sock.sendall(b"EHLO h.test\r\n" + envelope.encode() + b"DATA\r\n")
            reply = b""
            while not reply.startswith(b"354"):
                reply = reader.readline()
                assert reply, "closed before DATA"
        connections.append((sock, reader))
    chunk = b"z" * (64 * 1024)
    before = rss()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident size
    for _ in range(32):  # 2 MiB each, taken a piece at a time from every one
        for sock, _ in connections:
            sock.sendall(chunk)
    for sock, _ in connections:
        sock.sendall(b"\r\n.\r\n")
    for sock, reader in connections:
        # Line too long (in DATA or as a command), or no room left in the data budget.
        assert reader.readline()[:9] in (b"500 5.5.2", b"452 4.3.1")
        sock.close()
    return peak_rss() - before
