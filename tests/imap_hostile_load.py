"""Hostile pre-login connections for resource checks (tests/test_imap_resources.py, bench/hostile_imap.py).

``hold_largest_literal`` is the most a stranger may make the server keep: a LOGIN whose first
literal is the largest allowed and complete (the server's second continuation request proves it
has read it) and whose second, as large, never ends. ``push_huge_literal`` is the report's
attack, a 40 MiB LITERAL+ that used to be buffered; it must be answered with BYE and closed.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from mailpipe_gateway.imap.reader import PREAUTH_MAX_LITERAL


def hold_largest_literal(port: int, timeout: float = 60) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    reader = sock.makefile("rb")
    if not reader.readline().startswith(b"* OK"):
        raise AssertionError("no greeting")
    size = PREAUTH_MAX_LITERAL
    sock.sendall(b"a LOGIN {%d}\r\n" % size)
    if not reader.readline().startswith(b"+"):
        raise AssertionError("the largest allowed literal was refused")
    sock.sendall(b"u" * size + b" {%d}\r\n" % size)
    if not reader.readline().startswith(b"+"):
        raise AssertionError("the second literal was refused")
    sock.sendall(b"p" * (size - 1))
    reader.close()  # the socket stays open, holding the command
    return sock


def push_huge_literal(port: int, pushed: int = 1024 * 1024, timeout: float = 60) -> list[bytes]:
    """What the server answered to ``a LOGIN {41943040+}`` and ``pushed`` octets of it, up to its close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        # The server may close before it all went: what it said is still read below.
        with contextlib.suppress(OSError):
            sock.sendall(b"a LOGIN {41943040+}\r\n" + b"x" * pushed)
        answers = []
        try:
            while line := reader.readline():
                answers.append(line)
        except ConnectionResetError:
            pass
        return answers


def rss_bytes(pid: int | str = "self") -> int:
    """VmRSS of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for {pid}")
