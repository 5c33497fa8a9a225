"""What mailpipe's hand-signed AWS requests (s3_gets.py, s3_puts.py, dynamo_transactions.py) share:
a kept-alive connection per thread, tried again once if the server had closed it, and the reading
of an answer's head."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import NamedTuple, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT = 3.0  # as mailpipe.aws's clients
READ_TIMEOUT = 20.0
MAX_HEADER_BYTES = 64 * 1024  # an answer's header beyond this is not AWS's


class Reachable(Protocol):
    scheme: str
    hostname: str
    port: int


class KeptConnections:
    """One connection per thread to one host:port (TLS when `tls` is given)."""

    def __init__(self, hostname: str, port: int, tls: ssl.SSLContext | None) -> None:
        self._hostname, self._port, self._tls = hostname, port, tls
        self._local = threading.local()

    @classmethod
    def to(cls, endpoint: Reachable | None) -> KeptConnections | None:
        """Connections to `endpoint` (TLS for https, with botocore's CA bundle); None for None."""
        if endpoint is None:
            return None
        return cls(endpoint.hostname, endpoint.port, tls_context() if endpoint.scheme == "https" else None)

    def get(self) -> tuple[socket.socket, bool]:
        """This thread's connection, and whether it served a request before (the server may have
        closed it since)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        connection = socket.create_connection((self._hostname, self._port), timeout=CONNECT_TIMEOUT)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            connection = self._tls.wrap_socket(connection, server_hostname=self._hostname)
        connection.settimeout(READ_TIMEOUT)
        self._local.connection = connection
        return connection, False

    def drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def exchange(
        self, request: bytes, read: Callable[[socket.socket], tuple[T, bool]], what: str
    ) -> T | None:
        """Sends `request` on this thread's connection and reads the answer with `read`, which
        gives what it read and whether the connection may serve another request; None if no
        answer came (the connection failed twice, or once when new, or timed out)."""
        for attempt in (1, 2):
            reused = False
            try:
                connection, reused = self.get()
                connection.sendall(request)
                answer, keep_alive = read(connection)
            except (OSError, ValueError) as exc:
                self.drop()
                if reused and attempt == 1 and not isinstance(exc, TimeoutError):
                    continue  # a kept connection the server had closed meanwhile: once more, anew
                log.info("%s failed (%s): asking botocore", what, exc)
                return None
            if not keep_alive:
                self.drop()
            return answer
        return None

    def send(self, request: bytes, what: str) -> int | None:
        """The status of the answer to `request` (None: no answer came). The connection is kept
        only after a 200 read whole."""
        return self.exchange(request, status_of_answer, what)


def tls_context() -> ssl.SSLContext:
    from botocore.httpsession import get_cert_path

    return ssl.create_default_context(cafile=get_cert_path(True))


class Head(NamedTuple):
    version: bytes
    status: int
    headers: dict[bytes, bytes]  # lower-case names
    rest: bytearray  # what came after the header: the body's first bytes

    def keep_alive(self) -> bool:
        """Whether the connection may serve another request, once this answer's body is read."""
        return self.version == b"HTTP/1.1" and self.headers.get(b"connection", b"").lower() != b"close"

    def content_length(self) -> int | None:
        """The body's announced length, unless it is chunked or not given."""
        length = self.headers.get(b"content-length", b"")
        return int(length) if length.isdigit() and b"transfer-encoding" not in self.headers else None


def read_head(connection: socket.socket) -> Head:
    """Reads an answer's status line and header. Raises OSError, or ValueError for what is not HTTP.

    Not http.client: its header parsing (the email package's) costs as much as the signing."""
    buffered = bytearray()
    while (end := buffered.find(b"\r\n\r\n")) < 0:
        if len(buffered) > MAX_HEADER_BYTES:
            raise ValueError("response header too large")
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed before a response")
        buffered += chunk
    lines = bytes(buffered[:end]).split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:60]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return Head(version, int(rest[:3]), headers, buffered[end + 4 :])


def status_of_answer(connection: socket.socket) -> tuple[int, bool]:
    """Reads one answer: its status and whether the connection may serve another request (only
    after a 200 whose body was read whole). Raises OSError, or ValueError for what is not HTTP."""
    head = read_head(connection)
    length = head.content_length()
    if head.status != 200 or length is None or length > MAX_HEADER_BYTES:
        return head.status, False  # what follows is not read, so the connection is not kept
    remaining = length - len(head.rest)
    if remaining < 0:
        raise ValueError("more bytes than Content-Length")
    while remaining > 0:
        chunk = connection.recv(remaining)
        if not chunk:
            raise ConnectionResetError("closed within the body")
        remaining -= len(chunk)
    return head.status, head.keep_alive()
