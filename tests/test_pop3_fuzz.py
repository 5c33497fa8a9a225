"""Hostile and broken input to live POP3 sessions: an answer to every line, no crash, no logged error."""

from __future__ import annotations

import logging
import random
import socket

import pytest
from conftest import PASSWORD
from logged_errors import Errors

from mailpipe.auth.throttle import AuthThrottle

BEFORE_LOGIN = [b"CAPA", b"USER nobody@example.test", b"PASS secret", b"AUTH", b"AUTH PLAIN", b"AUTH LOGIN"]
BEFORE_LOGIN += [
    b"AUTH PLAIN AGJvYgBwdw==",
    b"AUTH PLAIN =====",
    b"APOP bob 0123",
    b"STAT",
    b"RETR 1",
    b"NOOP",
]
AFTER_LOGIN = [b"STAT", b"LIST", b"LIST 1", b"LIST 99", b"UIDL", b"UIDL 2", b"RETR 1", b"RETR 0", b"TOP 1 0"]
AFTER_LOGIN += [
    b"TOP 2 3",
    b"TOP 1",
    b"DELE 2",
    b"DELE 2",
    b"RSET",
    b"NOOP",
    b"CAPA",
    b"USER x",
    b"AUTH PLAIN",
]
# Unicode digits: int() reads them, POP3 does not (SUPERSCRIPT TWO, ARABIC-INDIC ONE, FULLWIDTH NINE).
UNICODE_DIGITS = ["\u00b2", "\u0661", "\uff19"]
MULTILINE = {b"CAPA", b"RETR", b"TOP"}  # ... and LIST, UIDL and AUTH without an argument


def hostile_line(rng: random.Random, commands: list[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.2:  # binary junk, up to a line longer than POP3 allows (answered, then skipped)
        size = rng.choice([rng.randint(0, 60), rng.randint(1000, 2000)])
        return bytes(rng.randint(0, 255) for _ in range(size)).replace(b"\n", b" ")
    if roll < 0.35:
        verb = rng.choice([b"RETR", b"LIST", b"UIDL", b"DELE", b"TOP 1", b"TOP"])
        return verb + b" " + "".join(rng.choice([*UNICODE_DIGITS, "1"]) for _ in range(2)).encode()
    line = bytearray(rng.choice(commands))
    if line and rng.random() < 0.4:
        line[rng.randrange(len(line))] = rng.randint(32, 126)
    if rng.random() < 0.2:
        line = line.lower()
    return bytes(line)


def is_multiline(line: bytes, first: bytes) -> bool:
    """Whether the server's answer `first` to `line` goes on until a lone dot (RFC 1939 3)."""
    if not first.startswith(b"+OK"):
        return False
    verb, _, argument = line.partition(b" ")
    verb = verb.upper()
    return verb in MULTILINE or (verb in (b"LIST", b"UIDL", b"AUTH") and not argument.strip())


def converse(reader, sock: socket.socket, line: bytes) -> bytes:
    """Sends one line; reads its whole answer and returns its first line."""
    sock.sendall(line + b"\r\n")
    first = reader.readline()
    assert first.startswith((b"+OK", b"-ERR", b"+ ")), (line, first)
    if first.startswith(b"+ "):  # a SASL challenge: cancel it
        sock.sendall(b"*\r\n")
        assert reader.readline().startswith(b"-ERR"), line
    elif is_multiline(line, first):
        while reader.readline() not in (b".\r\n", b""):
            pass
    return first


@pytest.fixture
def pop3(stack):
    # Its own throttle, with room for the fuzzer's failed logins: the point here is the parser.
    server = stack.build_pop3(throttle=AuthThrottle(max_per_user=10**6, max_per_address=10**6))
    stack.loop.run(server.start())
    yield server
    stack.loop.run(server.stop())


def test_random_and_mangled_commands(stack, new_user, pop3) -> None:
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    for n in range(3):
        store.append(owner, "INBOX", b"Subject: fuzz %d\r\n\r\nbody\r\n.dot\r\n" % n)
    errors = Errors()
    logging.getLogger("mailpipe_gateway").addHandler(errors)
    rng = random.Random(20261205)
    try:
        for _ in range(12):
            with socket.create_connection(("127.0.0.1", pop3.port), timeout=30) as sock:
                reader = sock.makefile("rb")
                assert reader.readline().startswith(b"+OK")
                for _ in range(25):
                    converse(reader, sock, hostile_line(rng, BEFORE_LOGIN))
                converse(reader, sock, f"USER {owner}".encode())
                assert converse(reader, sock, f"PASS {PASSWORD}".encode()).startswith(b"+OK")
                for _ in range(25):
                    converse(reader, sock, hostile_line(rng, AFTER_LOGIN))
                converse(reader, sock, b"RSET")
                assert converse(reader, sock, b"QUIT").startswith(b"+OK")
                assert reader.readline() == b""  # closed once the maildrop is released
        with socket.create_connection(("127.0.0.1", pop3.port), timeout=30) as sock:
            assert sock.makefile("rb").readline().startswith(b"+OK")
    finally:
        logging.getLogger("mailpipe_gateway").removeHandler(errors)
    assert errors.records == []
