"""A line-level IMAP client for wire tests: exactly the bytes a test gives, responses as sent."""

from __future__ import annotations

import re
import socket


class Client:
    """A line-level IMAP client: sends exactly the bytes a test gives, reads responses as sent."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def response_line(self) -> bytes:
        """One response line, its literals inlined (so a LIST name in a literal stays on its line)."""
        line = self.file.readline()
        assert line, "connection closed"
        while (found := re.search(rb"~?\{(\d+)\}\r\n$", line)) is not None:
            line += self.file.read(int(found.group(1))) + self.file.readline()
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, tag: str, data: bytes) -> list[bytes]:
        """Sends ``tag data`` CRLF; every response line up to and including the tagged one."""
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> list[bytes]:
        lines = []
        while True:
            lines.append(self.response_line())
            if lines[-1].startswith(tag.encode() + b" "):
                return lines

    def ok(self, tag: str, data: bytes) -> list[bytes]:
        lines = self.command(tag, data)
        assert lines[-1].startswith(f"{tag} OK".encode()), lines
        return lines

    def continuation(self) -> None:
        line = self.file.readline()
        assert line.startswith(b"+"), line


def login(port: int, user: str, password: str) -> Client:
    client = Client(port)
    client.ok("l", b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
    return client
