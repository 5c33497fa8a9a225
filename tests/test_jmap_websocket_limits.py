"""The request size limit over JMAP's two ways in agrees: the session's maxSizeRequest is below the
WebSocket API's message limit (API Gateway's, which the local server applies too), so a request
a little too large gets the RFC's `limit` problem over the WebSocket, as over HTTP, and the socket
stays open; only a message over the transport's own limit closes it (1009), as on AWS."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
import websocket
from conftest import PASSWORD
from jmap_support import CORE, Raw

from mailpipe.jmap.limits import WEBSOCKET_MESSAGE_LIMIT
from mailpipe_tools.local.jmap_http import LocalHttpApi

WEBSOCKET = "urn:ietf:params:jmap:websocket"
LIMIT = "urn:ietf:params:jmap:error:limit"


@pytest.fixture
def user(new_user: Callable[..., str]) -> str:
    return new_user()


@pytest.fixture
def raw(jmap_server: LocalHttpApi, user: str) -> Raw:
    return Raw(jmap_server.url, user, PASSWORD)


def connect(raw: Raw, user: str) -> websocket.WebSocket:
    """Signed in with a session token in the query, as the webmail does (docs/jmap.md)."""
    credentials = {"username": user, "password": PASSWORD}
    status, _, answer = raw.http(
        "POST", "/jmap/login", json.dumps(credentials).encode(), {"Content-Type": "application/json"}
    )
    assert status == 200, answer
    query = urllib.parse.urlencode({"access_token": json.loads(answer)["accessToken"]})
    url = raw.session()["capabilities"][WEBSOCKET]["url"]
    return websocket.create_connection(f"{url}?{query}", subprotocols=["jmap"], timeout=30)


def echo(request_id: str, padding: int) -> str:
    return json.dumps(
        {
            "@type": "Request",
            "id": request_id,
            "using": [CORE],
            "methodCalls": [["Core/echo", {"p": "x" * padding}, "c"]],
        }
    )


def test_an_oversize_request_is_answered_over_the_websocket_and_http(raw: Raw, user: str) -> None:
    limit = raw.session()["capabilities"][CORE]["maxSizeRequest"]
    # Room above the limit for a request that is too large but still arrives.
    assert limit + 4096 <= WEBSOCKET_MESSAGE_LIMIT
    ws = connect(raw, user)
    try:
        ws.send(echo("big", limit))  # over maxSizeRequest, under the WebSocket's limit
        error: dict[str, Any] = json.loads(ws.recv())
        assert error["@type"] == "RequestError" and error["type"] == LIMIT, error
        assert error["limit"] == "maxSizeRequest"
        fits = echo("fits", 0)
        ws.send(echo("fits", limit - len(fits)))  # exactly the limit: answered
        answer = json.loads(ws.recv())
        assert answer["@type"] == "Response" and answer["requestId"] == "fits", answer
    finally:
        ws.close()
    status, problem = raw.post({"using": [CORE], "methodCalls": [["Core/echo", {"p": "x" * limit}, "c"]]})
    assert (status, problem["type"], problem["limit"]) == (400, LIMIT, "maxSizeRequest")


def test_a_message_over_the_websocket_limit_closes_the_socket(raw: Raw, user: str) -> None:
    ws = connect(raw, user)
    try:
        ws.send(echo("huge", WEBSOCKET_MESSAGE_LIMIT))
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(data[:2], "big") == 1009
    finally:
        ws.close()
