"""API Gateway's WebSocket API, locally: upgrades on the local HTTP server become $connect,
$default and $disconnect events for the function, and the @connections management API
(POST/DELETE /@connections/{id}) lets the relay post to a connection as on AWS.

wsproto does the framing: it is sans-I/O, so it runs inside the threaded HTTP server's request
handler, on the socket the upgrade came in on, with no event loop or server of its own.

Bounds as API Gateway's: a message of at most 128 KB (larger: closed with 1009; the session's
maxSizeRequest is below it, mailpipe/jmap/limits.py; a larger reply from the function is not
sent, a larger @connections POST is a 413), a connection
idle for 10 minutes is closed, and one thread per connection (the HTTP server's). The management
API takes no signature check: the server binds to loopback, for local use only.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from mailpipe.jmap.limits import WEBSOCKET_MESSAGE_LIMIT

log = logging.getLogger(__name__)

MAX_MESSAGE = WEBSOCKET_MESSAGE_LIMIT
IDLE_SECONDS = 600
CONNECTIONS_PATH = "/@connections/"

Invoke = Callable[[dict[str, Any]], tuple[int, dict[str, str], bytes]]


def websocket_event(
    route: str,
    connection_id: str,
    host: str,
    source_ip: str,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """The event API Gateway's WebSocket API gives a Lambda proxy integration."""
    now = time.time()
    kind = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": kind,
            "connectionId": connection_id,
            "domainName": host,
            "stage": "local",
            "apiId": "local",
            "requestId": uuid.uuid4().hex,
            "messageDirection": "IN",
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": source_ip},
        },
        "isBase64Encoded": False,
    }
    if headers is not None:
        event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = body
    return event


class _Connection:
    def __init__(self, sock: socket.socket, ws: WSConnection) -> None:
        self.sock = sock
        self.ws = ws
        self.lock = threading.Lock()  # the management API sends from other threads

    def send(self, event: Any) -> None:
        with self.lock:
            self.sock.sendall(self.ws.send(event))


class LocalWebSockets:
    """The open connections of one local server, by connection id."""

    def __init__(self) -> None:
        self._connections: dict[str, _Connection] = {}
        self._lock = threading.Lock()

    def serve(
        self,
        sock: socket.socket,
        request_bytes: bytes,
        target: str,
        host: str,
        source_ip: str,
        invoke: Invoke,
    ) -> None:
        """Runs one connection, from the upgrade request (already read) to its close."""
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(request_bytes)
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
        if request is None:
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.extra_headers}
        if request.subprotocols:
            headers["Sec-WebSocket-Protocol"] = ", ".join(request.subprotocols)
        query = dict(parse_qsl(urlsplit(target).query))
        connection_id = secrets.token_urlsafe(12)
        status, answer, _ = invoke(
            websocket_event("$connect", connection_id, host, source_ip, headers, query)
        )
        if status != 200:
            sock.sendall(ws.send(RejectConnection(status_code=status)))
            return
        offered = {k.lower(): v for k, v in answer.items()}.get("sec-websocket-protocol")
        sock.sendall(
            ws.send(AcceptConnection(subprotocol=offered if offered in request.subprotocols else None))
        )
        connection = _Connection(sock, ws)
        with self._lock:
            self._connections[connection_id] = connection
        try:
            self._receive(connection, connection_id, host, source_ip, invoke)
        finally:
            with self._lock:
                self._connections.pop(connection_id, None)
            invoke(websocket_event("$disconnect", connection_id, host, source_ip))

    def _receive(
        self, connection: _Connection, connection_id: str, host: str, source_ip: str, invoke: Invoke
    ) -> None:
        sock = connection.sock
        sock.settimeout(IDLE_SECONDS)
        parts: list[str] = []
        size = 0
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, OSError):
                return
            try:
                connection.ws.receive_data(data or None)
                for event in connection.ws.events():
                    if isinstance(event, CloseConnection):
                        connection.send(event.response())
                        return
                    if isinstance(event, Ping):
                        connection.send(event.response())
                    elif isinstance(event, Message):
                        text = (
                            event.data
                            if isinstance(event, TextMessage)
                            else bytes(event.data).decode("utf-8", "replace")
                        )
                        size += len(text.encode("utf-8"))  # API Gateway counts bytes
                        if size > MAX_MESSAGE:
                            log.info(
                                "websocket %s: message over %d bytes, closed", connection_id, MAX_MESSAGE
                            )
                            connection.send(CloseConnection(code=1009, reason="message too big"))
                            return
                        parts.append(text)
                        if event.message_finished:
                            body, parts, size = "".join(parts), [], 0
                            _status, _, reply = invoke(
                                websocket_event("$default", connection_id, host, source_ip, body=body)
                            )
                            if len(reply) > MAX_MESSAGE:
                                # API Gateway's quota holds both ways; what it then does is not
                                # documented: here the reply is dropped, and only the log knows.
                                log.warning(
                                    "websocket %s: reply of %d bytes over %d, not sent",
                                    connection_id,
                                    len(reply),
                                    MAX_MESSAGE,
                                )
                            elif reply:
                                connection.send(TextMessage(data=reply.decode("utf-8", "replace")))
            except (LocalProtocolError, RemoteProtocolError, OSError) as exc:
                log.info("websocket %s: %s", connection_id, exc)
                return
            if not data:
                return

    def manage(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The @connections API: POST sends `body` to the connection, DELETE closes it."""
        connection_id = unquote(path[len(CONNECTIONS_PATH) :])
        with self._lock:
            connection = self._connections.get(connection_id)
        if connection is None:
            # As API Gateway answers for a closed connection; boto3 raises GoneException.
            return (
                410,
                {"Content-Type": "application/json", "x-amzn-ErrorType": "GoneException"},
                b'{"message":"gone"}',
            )
        if method == "POST" and len(body) > MAX_MESSAGE:
            # PostToConnection's answer to a message over the quota (boto3: PayloadTooLargeException).
            return (
                413,
                {"Content-Type": "application/json", "x-amzn-ErrorType": "PayloadTooLargeException"},
                b'{"message":"payload too large"}',
            )
        try:
            if method == "POST":
                connection.send(TextMessage(data=body.decode("utf-8", "replace")))
            elif method == "DELETE":
                connection.send(CloseConnection(code=1000))
            else:
                return 405, {"Content-Type": "application/json"}, b'{"message":"method not allowed"}'
        except (LocalProtocolError, OSError):
            return (
                410,
                {"Content-Type": "application/json", "x-amzn-ErrorType": "GoneException"},
                b'{"message":"gone"}',
            )
        return 200, {"Content-Type": "application/json"}, b""

    def is_management(self, path: str) -> bool:
        return unquote(path).startswith(CONNECTIONS_PATH)

    def close_all(self) -> None:
        """Ends every connection (the server stops): their threads see the socket close."""
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
