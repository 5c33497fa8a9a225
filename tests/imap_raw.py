"""A raw IMAP connection for tests that send what no client library would: bytes, as they are."""

from __future__ import annotations

import socket
import ssl


class RawIMAP:
    """A plain TCP connection to an IMAP port, read line by line; ``upgrade`` starts TLS on it."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout
        )
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def until(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the tagged answer to ``tag``; b"" ends it if the server hangs up."""
        lines = []
        while True:
            line = self.file.readline()
            lines.append(line)
            if not line or line.startswith(tag + b" "):
                return lines

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def login(self, user: str, password: str) -> None:
        answer = self.command(b"L", f'LOGIN {user} "{password}"'.encode())
        assert answer[-1].startswith(b"L OK"), answer

    def upgrade(self) -> None:
        """The TLS handshake, on a connection the server has just answered STARTTLS OK on."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> RawIMAP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
