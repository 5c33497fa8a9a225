"""JMAP over WebSocket (RFC 8887), as API Gateway's WebSocket API hands it to a function.

- `$connect`: the handshake must offer the `jmap` subprotocol and sign in. Browsers cannot set
  an Authorization header on a WebSocket, so a session token may come as the query parameter
  `access_token` (`wss://HOST/?access_token=T`); an Authorization header (Basic or Bearer) is
  taken too, for other clients. The connection is then stored with its owner and the key of its
  token (jmap/push.py); each frame checks that token again, so a logout or a password change
  ends the connection's use as it ends the token's over HTTP.
- `$default`: each text frame is a JMAP object: `Request` (answered by a `Response` with the same
  `requestId`, through the same dispatch as POST /jmap/api; one over the WebSocket API's 128 KB
  has its largest method responses replaced by errors, jmap/response_fit.py), `WebSocketPushEnable` and
  `WebSocketPushDisable`. Anything else is a `RequestError` frame; nothing closes the socket.
- `$disconnect`: the connection is forgotten.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from mailpipe.auth.tokens import token_key
from mailpipe.jmap import api
from mailpipe.jmap.auth import JmapAuth, Throttled
from mailpipe.jmap.context import Context
from mailpipe.jmap.errors import RequestError
from mailpipe.jmap.limits import WEBSOCKET_MESSAGE_LIMIT, Limits
from mailpipe.jmap.push import PUSH_TYPES, PushConnections
from mailpipe.jmap.response_fit import fitted_json
from mailpipe.store import MailboxSnapshots, MailStore

log = logging.getLogger(__name__)

SUBPROTOCOL = "jmap"
# RFC 8887 4.3.3: a problem (RFC 7807) for a frame refused; here because the session is over.
_SIGNED_OUT = {
    "@type": "RequestError",
    "type": "about:blank",
    "status": 401,
    "detail": "the session token no longer holds: sign in again",
}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: str | None = None  # a frame for the client ($default), if any


class JmapWebSocket:
    def __init__(
        self,
        auth: JmapAuth,
        connections: PushConnections,
        store: MailStore,
        limits: Limits,
        snapshots: MailboxSnapshots | None = None,
    ) -> None:
        self._auth = auth
        self._connections = connections
        self._store = store
        self._limits = limits
        self._snapshots = snapshots

    def connect(
        self, connection_id: str, headers: dict[str, str], query: dict[str, str], client: str
    ) -> Reply:
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        if SUBPROTOCOL not in offered:
            log.info("jmap websocket from %s refused: no jmap subprotocol", client or "-")
            return Reply(400, {})
        header = headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        # The token the connection signs in with, if any: its key is kept with the connection, so
        # that a token revoked later (logout, passwd, disable) stops the socket too (message()).
        token = query.get("access_token", "") or (credentials.strip() if scheme.lower() == "bearer" else "")
        try:
            owner = self._auth.token(token) if token else self._auth.authorization(header, client)
        except Throttled:
            return Reply(429, {})
        if owner is None:
            log.info("jmap websocket from %s refused: not signed in", client or "-")
            return Reply(401, {})
        self._connections.opened(connection_id, owner, token_key(token) if token else None)
        return Reply(200, {"Sec-WebSocket-Protocol": SUBPROTOCOL})

    def disconnect(self, connection_id: str) -> Reply:
        self._connections.closed(connection_id)
        return Reply(200, {})

    def message(self, connection_id: str, body: bytes) -> Reply:
        signed_in = self._connections.signed_in(connection_id)
        if signed_in is None:
            return Reply(
                200, {}, _error(RequestError("notRequest", "this connection is not signed in"), None)
            )
        owner, key = signed_in
        if key is not None and self._auth.token_by_key(key) != owner:
            # Signed out, password changed, disabled or expired since $connect: the connection is
            # forgotten (no more pushes) and told; a browser cannot be asked to close it from here.
            log.info("jmap websocket %s of %s: its session token no longer holds", connection_id, owner)
            self._connections.closed(connection_id, owner)
            return Reply(200, {}, _frame(_SIGNED_OUT))
        request_id: Any = None
        try:
            if len(body) > self._limits.max_size_request:
                raise RequestError("limit", "the message is too large", limit="maxSizeRequest")
            try:
                message = json.loads(body)
            except (ValueError, RecursionError):
                raise RequestError("notJSON", "the message is not JSON") from None
            if not isinstance(message, dict):
                raise RequestError("notRequest", "the message is not a JMAP object")
            request_id = message.get("id")
            kind = message.get("@type")
            if kind == "Request":
                return Reply(200, {}, self._request(owner, message, request_id))
            if kind == "WebSocketPushEnable":
                types = message.get("dataTypes")
                if types is not None and not (
                    isinstance(types, list) and all(isinstance(t, str) for t in types)
                ):
                    raise RequestError("notRequest", "dataTypes must be null or a list of type names")
                self._connections.enable(
                    connection_id, owner, None if types is None else [t for t in types if t in PUSH_TYPES]
                )
                return Reply(200, {})
            if kind == "WebSocketPushDisable":
                self._connections.disable(connection_id, owner)
                return Reply(200, {})
            raise RequestError(
                "notRequest", "@type must be Request, WebSocketPushEnable or WebSocketPushDisable"
            )
        except RequestError as error:
            log.info("jmap websocket message from %s refused: %s (%s)", owner, error.kind, error.detail[:200])
            return Reply(200, {}, _error(error, request_id))

    def _request(self, owner: str, message: dict[str, Any], request_id: Any) -> str:
        request = {k: v for k, v in message.items() if k not in ("@type", "id")}
        context = Context(owner, self._store, self._limits, snapshots=self._snapshots)
        response = api.process(json.dumps(request).encode(), context)
        response = {"@type": "Response", **response}
        if isinstance(request_id, str):
            response["requestId"] = request_id
        # API Gateway sends no larger frame, and tells no one: the calls that would not fit are
        # answered with method errors instead (jmap/response_fit.py).
        return fitted_json(response, WEBSOCKET_MESSAGE_LIMIT, "WebSocket", owner)


def _frame(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _error(error: RequestError, request_id: Any) -> str:
    problem = {"@type": "RequestError", **error.problem()}
    if isinstance(request_id, str):
        problem["requestId"] = request_id
    return _frame(problem)
