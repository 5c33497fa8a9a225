"""Ports for the servers a test starts in another process (Dovecot, rspamd, `mailpipe dev`, the
gateway command...), which must be told a number before they bind.

A port the system chose (a bind to 0) and let go again is free for a moment only: another process's
bind to 0 or outgoing connection may take it before the server binds, and then the server cannot
start (seen with two suites running side by side, or pytest-xdist's workers). These ports come from
below the system's ephemeral range instead, which neither a bind to 0 nor a connection ever takes,
chosen at random (so that concurrent runs rarely try the same one) and checked free on loopback.
Servers a test runs in its own process still bind to 0 and read the port back.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
LOWEST = 10000
# Linux's default, for a system that does not say.
_EPHEMERAL_FIRST = 32768
_chooser = random.SystemRandom()  # not the `random` module's: a test may seed that one


def _ephemeral_first() -> int:
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_FIRST
    return first if first > LOWEST + 1000 else _EPHEMERAL_FIRST


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now and that the system hands out to no one."""
    highest = _ephemeral_first() - 1
    for _attempt in range(500):
        port = _chooser.randint(LOWEST, highest)
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        return port
    raise OSError(f"no free port on {HOST} between {LOWEST} and {highest}")


def free_ports(count: int) -> list[int]:
    """`count` different free ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
