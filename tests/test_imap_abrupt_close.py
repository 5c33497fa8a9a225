"""Clients that go away abruptly: LOGOUT and close at once, or close mid-literal, mid-IDLE,
mid-COMPRESS, with a FIN or a reset. The session ends with at most an INFO line, never a trace."""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import zlib

import pytest
from conftest import PASSWORD, wait_for


class Records(logging.Handler):
    """Every record at INFO and above, anywhere in the process."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def send_and_vanish(port: int, data: bytes, *, reset: bool) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert sock.recv(4096).startswith(b"* OK")
    sock.sendall(data)
    if reset:  # close with RST instead of FIN: the server's next write or read fails
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def send_over_tls_and_vanish(port: int, data: bytes, *, reset: bool) -> None:
    """As send_and_vanish, after STARTTLS: the server reads and writes through TLS."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"* OK")
    sock.sendall(b"s STARTTLS\r\n")
    assert reader.readline().startswith(b"s OK")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_socket(sock, server_hostname="localhost")
    tls.sendall(data)
    if reset:
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tls.close()  # without close_notify (no unwrap): the TLS stream just stops


def deflated(data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    return deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)


@pytest.fixture
def owner(stack, new_user) -> str:
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    store.append(owner, "INBOX", b"Subject: here\r\n\r\nbody\r\n")
    return owner


def test_clients_that_vanish_leave_no_trace_in_the_log(stack, owner) -> None:
    login = b'l LOGIN %s "%s"\r\n' % (owner.encode(), PASSWORD.encode())
    cases = [
        b"a LOGOUT\r\n",
        login + b"a LOGOUT\r\n",
        login + b"s SELECT INBOX\r\na LOGOUT\r\n",
        login + b"s SELECT INBOX\r\nf FETCH 1:* (FLAGS BODY[])\r\n",
        login + b"a APPEND INBOX {100}\r\nhalf of it",  # mid-literal, synchronizing
        login + b"a APPEND INBOX {100+}\r\nhalf of it",  # and non-synchronizing
        login + b"s SELECT INBOX\r\ni IDLE\r\n",  # mid-IDLE
        login + b"c COMPRESS DEFLATE\r\n",  # right after COMPRESS
        login + b"c COMPRESS DEFLATE\r\n" + deflated(b"n NOOP\r\na LOGOUT\r\n"),
        login + b"c COMPRESS DEFLATE\r\n" + deflated(b"s SELECT INBOX\r\ni IDLE\r\n"),
    ]
    imap = stack.build_imap()  # its own, so its sessions are exactly this test's
    stack.loop.run(imap.start())
    records = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(min(level, logging.INFO))
    try:
        for _ in range(2):
            for case in cases:
                for reset in (True, False):
                    send_and_vanish(imap.port, case, reset=reset)
                    wait_for(lambda: imap.limiter.open_sessions == 0)
                    send_over_tls_and_vanish(imap.port, case, reset=reset)
                    wait_for(lambda: imap.limiter.open_sessions == 0)
        with socket.create_connection(("127.0.0.1", imap.port), timeout=10) as sock:
            assert sock.makefile("rb").readline().startswith(b"* OK")
    finally:
        root.removeHandler(records)
        root.setLevel(level)
        stack.loop.run(imap.stop())
    ours = [r for r in records.records if r.name.startswith("mailpipe_gateway") or r.name == "asyncio"]
    traces = [f"{r.name}: {r.getMessage()}" for r in ours if r.exc_info or r.levelno >= logging.WARNING]
    assert traces == []
