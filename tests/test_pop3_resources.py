"""Memory of `mailpipe access-gateway` under many pre-login POP3 connections, each holding a full line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from test_gateway_command import free_port, wait_listening

from mailpipe_gateway.pop3.server import LINE_LIMIT
from mailpipe_gateway.tls import write_self_signed

CONNECTIONS = 200
# Generous: each connection may hold up to LINE_LIMIT octets plus asyncio's per-connection objects
# (a few KiB); 200 connections measured +1.2 MiB, and +11 MiB when lines could reach 64 KiB.
MAX_GROWTH = 8 * 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def round_trip(port: int) -> None:
    """A CAPA answered: the server's loop has got round to everything sent before it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        sock.sendall(b"CAPA\r\n")
        while reader.readline() not in (b".\r\n", b""):
            pass


def test_pre_login_connections_holding_a_full_line_stay_small(stack, tmp_path) -> None:
    cert, key = write_self_signed(tmp_path, "pop3.example.test")
    port = free_port()
    env = {
        **os.environ,
        **stack.environment,
        "MAILPIPE_ACCESS_HOST": "127.0.0.1",
        "MAILPIPE_POP3_PORT": str(port),
        **{f"MAILPIPE_{name}_PORT": "" for name in ("IMAP", "IMAPS", "POP3S")},
        "MAILPIPE_TLS_CERT_PEM": cert.read_text(),
        "MAILPIPE_TLS_KEY_PEM": key.read_text(),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mailpipe_tools.cli", "access-gateway"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    held: list[socket.socket] = []
    try:
        wait_listening(process, port)
        for _ in range(5):  # warm up: the first sessions import and allocate what all later ones share
            round_trip(port)
        before = rss(process.pid)
        longest = b"USER " + b"x" * (LINE_LIMIT - 6)  # one octet short of the limit, and no line end
        for _ in range(CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            held.append(sock)
            assert sock.makefile("rb").readline().startswith(b"+OK")
            sock.sendall(longest)
        round_trip(port)
        growth = rss(process.pid) - before
        print(f"RSS {before / 2**20:.1f} MiB, +{growth / 2**20:.1f} MiB for {CONNECTIONS} connections")
        assert growth < MAX_GROWTH
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        for sock in held:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
