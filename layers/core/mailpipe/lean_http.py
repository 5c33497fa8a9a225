"""What mailpipe's hand-signed AWS requests (s3_gets.py, s3_puts.py, dynamo_transactions.py) share:
a kept-alive connection per thread, and the reading of an answer whose only news is its status."""

from __future__ import annotations

import logging
import socket
import ssl
import threading

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0  # as mailpipe.aws's clients
READ_TIMEOUT = 20.0
MAX_HEADER_BYTES = 64 * 1024  # an answer's header beyond this is not AWS's


class KeptConnections:
    """One connection per thread to one host:port (TLS when `tls` is given)."""

    def __init__(self, hostname: str, port: int, tls: ssl.SSLContext | None) -> None:
        self._hostname, self._port, self._tls = hostname, port, tls
        self._local = threading.local()

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

    def send(self, request: bytes, what: str) -> int | None:
        """Sends `request` on this thread's connection and reads the answer: its status, or None if
        no answer came (the connection failed twice, or once when new, or timed out). The
        connection is kept only after a 200 read whole."""
        for attempt in (1, 2):
            reused = False
            try:
                connection, reused = self.get()
                connection.sendall(request)
                status, keep_alive = status_of_answer(connection)
            except (OSError, ValueError) as exc:
                self.drop()
                if reused and attempt == 1 and not isinstance(exc, TimeoutError):
                    continue  # a kept connection the server had closed meanwhile: once more, anew
                log.info("%s failed (%s): asking botocore", what, exc)
                return None
            if not keep_alive:
                self.drop()
            return status
        return None


def tls_context() -> ssl.SSLContext:
    from botocore.httpsession import get_cert_path

    return ssl.create_default_context(cafile=get_cert_path(True))


def status_of_answer(connection: socket.socket) -> tuple[int, bool]:
    """Reads one answer: its status and whether the connection may serve another request (only
    after a 200 whose body was read whole). Raises OSError, or ValueError for what is not HTTP.

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
    status = int(rest[:3])
    if status != 200:
        return status, False
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get(b"content-length", b"")
    if not length.isdigit() or b"transfer-encoding" in headers or int(length) > MAX_HEADER_BYTES:
        return status, False  # done; what follows is not read, so the connection is not kept
    remaining = int(length) - (len(buffered) - end - 4)
    if remaining < 0:
        raise ValueError("more bytes than Content-Length")
    while remaining > 0:
        chunk = connection.recv(remaining)
        if not chunk:
            raise ConnectionResetError("closed within the body")
        remaining -= len(chunk)
    keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
    return status, keep_alive
