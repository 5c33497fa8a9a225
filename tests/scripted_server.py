"""A loopback HTTP server that answers each request from a script, for the tests of the
hand-signed AWS requests (test_s3_gets, test_s3_puts, test_dynamo_transactions): what they do
when the server closes kept connections, answers an error, or corrupts a body."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable

import boto3

from mailpipe import aws


class ScriptedServer:
    """Reads each request with its body and answers it with `answer(request_number)` (raw
    bytes), then closes the connection if `close_after` says so. Stopped by the test."""

    def __init__(self, answer: Callable[[int], bytes], close_after: Callable[[int], bool]) -> None:
        self._answer, self._close_after = answer, close_after
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.requests: list[tuple[bytes, bytes]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer_on, args=(connection,), daemon=True).start()

    def _answer_on(self, connection: socket.socket) -> None:
        with connection:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                size = int(length[1]) if length else 0
                if re.search(rb"(?im)^expect:\s*100-continue", head):
                    connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                while len(buffered) < size:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                body, buffered = buffered[:size], buffered[size:]
                with self._lock:
                    self.requests.append((head, body))
                    number = len(self.requests)
                connection.sendall(self._answer(number))
                if self._close_after(number):
                    return

    def lean(self) -> list[tuple[bytes, bytes]]:
        """The requests made by hand, not by botocore."""
        return [(head, body) for head, body in self.requests if b"User-Agent: Boto3" not in head]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept: close alone does not
        self._listener.close()
        self._thread.join(5)


def s3_client_of(port: int) -> object:
    return boto3.session.Session().client(
        "s3",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=aws._CONFIG,
    )
