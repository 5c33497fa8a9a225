"""An HTTPS server on loopback for MTA-STS tests: serves what a test sets, counts requests.

Its certificate (self-signed, for `hostname`) is in `cert_file`; a test trusts it by putting
that file in the CA bundle it gives the fetcher. `hang=True` accepts connections and never
answers (a policy host that stalls)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mailpipe_gateway.tls import server_context, write_self_signed


class PolicyServer:
    def __init__(self, directory: Path, hostname: str) -> None:
        self.cert_file, key_file = write_self_signed(directory, hostname)
        self.status = 200
        self.headers: dict[str, str] = {"Content-Type": "text/plain"}
        self.body = b""
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                self.send_response(server.status)
                for name, value in server.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        context = server_context(self.cert_file, key_file)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def serve(self, body: str | bytes) -> None:
        self.body = body.encode() if isinstance(body, str) else body

    def __enter__(self) -> PolicyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never says a word (no TLS handshake either)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def bundle(path: Path, *cert_files: Path) -> str:
    path.write_bytes(b"".join(Path(f).read_bytes() for f in cert_files))
    return str(path)


__all__ = ["PolicyServer", "bundle", "silent_listener", "ssl"]
