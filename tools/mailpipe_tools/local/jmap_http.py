"""A local HTTP server that hands each request to the JMAP Lambda handler as API Gateway's HTTP API
would (a payload format 2.0 event), and answers with what the handler returns.

It also takes WebSocket upgrades as API Gateway's WebSocket API would, and serves that API's
@connections management endpoint (websocket_api.py). Used by the tests and `mailpipe dev
--http-port`: it knows nothing of JMAP, only how API Gateway turns HTTP into an event and a result
back into HTTP, so whatever the function serves (session, API, downloads, WebSocket; later
uploads, the webmail) is served here the same way.
Binds to loopback by default; plain HTTP, so for local use only.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mailpipe_tools.local.functions import LocalLambdaContext
from mailpipe_tools.local.webmail_files import WEBMAIL_DIR, WebmailFiles
from mailpipe_tools.local.websocket_api import LocalWebSockets

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

# API Gateway's own limit on a request's payload: larger ones never reach the function.
MAX_PAYLOAD = 10 * 1024 * 1024
# Lambda's limit on a synchronous invocation's response (the JSON the handler returns, a binary
# body base64-encoded in it): a larger one fails the invocation, and API Gateway answers 500.
MAX_RESPONSE = 6 * 1024 * 1024
# A client that stops sending mid-request is dropped after this (API Gateway times out at 30 s).
SOCKET_TIMEOUT = 30
# A session token in a URL (the WebSocket's access_token parameter, RFC 8887 gives a browser no
# other way): never written to a log line.
_TOKEN_PARAMETER = re.compile(r"(access_token=)[^&\s\"]*", re.IGNORECASE)


def redacted(text: str) -> str:
    """`text` (a request line, a path) with any access_token parameter's value hidden."""
    return _TOKEN_PARAMETER.sub(r"\1(hidden)", text)


def http_api_event(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, host: str, source_ip: str
) -> dict[str, Any]:
    """The event API Gateway's HTTP API (payload format 2.0) gives a Lambda integration."""
    parts = urlsplit(target)
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    merged["x-forwarded-proto"] = "http"  # what API Gateway sets, here the truth: plain HTTP
    merged["x-forwarded-for"] = source_ip
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": merged,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    return event


def response_parts(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of what a handler returned, read as API Gateway reads it."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload 2.0 takes anything else as a 200 with the value as a JSON body.
        return 200, {"Content-Type": "application/json"}, json.dumps(result).encode()
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    return int(result["statusCode"]), headers, data


class LocalHttpApi:
    """An HTTP server on `host:port` (0: any free port) feeding `handler`; start() and stop()."""

    def __init__(
        self,
        handler: Handler,
        function_name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        webmail: WebmailFiles | None = None,
    ) -> None:
        self._handler = handler
        self._function_name = function_name
        # The webmail's static files at / (CloudFront + S3 on AWS), when the repository has them.
        self._webmail = webmail if webmail is not None or not WEBMAIL_DIR.is_dir() else WebmailFiles()
        self._server = ThreadingHTTPServer((host, port), self._request_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.websockets = LocalWebSockets()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="jmap-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.websockets.close_all()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def invoke(self, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        try:
            result = self._handler(event, LocalLambdaContext(self._function_name))
        except Exception:
            # What API Gateway answers when the function fails.
            log.exception("%s failed", self._function_name)
            return 500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}'
        size = len(json.dumps(result, default=str))
        if size > MAX_RESPONSE:
            log.error("%s: response of %d bytes is over Lambda's %d", self._function_name, size, MAX_RESPONSE)
            return 500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}'
        return response_parts(result)

    def _request_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = SOCKET_TIMEOUT

            def _serve(self) -> None:
                if self.command == "GET" and self.headers.get("Upgrade", "").lower() == "websocket":
                    self._websocket()
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_PAYLOAD:
                    self._send(
                        413, {"Content-Type": "application/json"}, b'{"message":"Request Entity Too Large"}'
                    )
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                if api.websockets.is_management(self.path):
                    self._send(*api.websockets.manage(self.command, unquote(path), body))
                    return
                if api._webmail is not None and api._webmail.wants(path):
                    self._send(*api._webmail.answer(self.command, path))
                    return
                host = self.headers.get("Host") or f"127.0.0.1:{api.port}"
                event = http_api_event(
                    self.command, self.path, list(self.headers.items()), body, host, self.client_address[0]
                )
                self._send(*api.invoke(event))

            def _websocket(self) -> None:
                """API Gateway's WebSocket API on the same port (websocket_api.py)."""
                lines = [self.requestline, *(f"{k}: {v}" for k, v in self.headers.items())]
                request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
                host = self.headers.get("Host") or f"127.0.0.1:{api.port}"
                api.websockets.serve(
                    self.connection, request, self.path, host, self.client_address[0], api.invoke
                )
                self.close_connection = True

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                # The request line names the URL, query and all: no token goes to the log.
                log.debug("jmap http: %s", redacted(format % args))

        return Request
