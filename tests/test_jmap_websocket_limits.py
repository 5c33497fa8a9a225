"""The request size limit over JMAP's two ways in agrees: the session's maxSizeRequest is below the
WebSocket API's message limit (API Gateway's, which the local server applies too), so a request
a little too large gets the RFC's `limit` problem over the WebSocket, as over HTTP, and the socket
stays open; only a message over the transport's own limit closes it (1009), as on AWS. A response
over that limit, which API Gateway would not send, comes with its largest calls answered by
method errors (jmap/response_fit.py), as does one over HTTP too large for a Lambda response."""

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
from mailpipe.jmap.response_fit import HTTP_RESPONSE_LIMIT, fitted_json
from mailpipe.store import MailStore
from mailpipe_tools.local.jmap_http import MAX_RESPONSE, LocalHttpApi

WEBSOCKET = "urn:ietf:params:jmap:websocket"
MAIL = "urn:ietf:params:jmap:mail"
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


def test_a_response_over_the_websocket_limit_answers_its_largest_call_with_an_error(
    raw: Raw, user: str, store: MailStore
) -> None:
    store.ensure_mailboxes(user)
    body = "a long letter. " * (200_000 // 15)
    store.append_message(
        user,
        "INBOX",
        f"From: a@remote.test\r\nTo: {user}\r\nSubject: long\r\n\r\n{body}\r\n".encode(),
    )
    calls = [
        ["Core/echo", {"hello": True}, "e"],
        ["Email/query", {"accountId": raw.account}, "q"],
        [
            "Email/get",
            {
                "accountId": raw.account,
                "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["subject", "bodyValues", "textBody"],
                "fetchTextBodyValues": True,
            },
            "g",
        ],
    ]
    request = {"@type": "Request", "id": "long", "using": [CORE, MAIL], "methodCalls": calls}
    ws = connect(raw, user)
    try:
        ws.send(json.dumps(request))
        frame = ws.recv()
    finally:
        ws.close()
    assert len(frame.encode()) <= WEBSOCKET_MESSAGE_LIMIT
    answer = json.loads(frame)
    assert answer["@type"] == "Response" and answer["requestId"] == "long", answer
    echo_answer, query, get = answer["methodResponses"]
    assert echo_answer == ["Core/echo", {"hello": True}, "e"]
    assert query[0] == "Email/query" and len(query[1]["ids"]) == 1
    assert get[0] == "error" and get[1]["type"] == "requestTooLarge" and get[2] == "g", get
    # Over HTTP, where the limit is Lambda's, the same request is answered whole.
    status, response = raw.post({"using": [CORE, MAIL], "methodCalls": calls})
    assert status == 200
    (email,) = response["methodResponses"][2][1]["list"]
    assert body.strip() in next(iter(email["bodyValues"].values()))["value"]


def test_a_response_over_lambdas_limit_answers_its_largest_calls_with_errors(
    raw: Raw, user: str, store: MailStore
) -> None:
    """Twenty Email/gets of a 250 KB body: 5 MB of JSON, over 6 MB base64-encoded, which Lambda
    would not return (API Gateway's bare 500; the local server's alike) without the fit."""
    store.ensure_mailboxes(user)
    body = "0123456789" * 25_000
    store.append_message(
        user, "INBOX", f"From: a@remote.test\r\nTo: {user}\r\nSubject: big\r\n\r\n{body}\r\n".encode()
    )
    (email_id,) = raw.one("Email/query", {})["ids"]
    get = {
        "accountId": raw.account,
        "ids": [email_id],
        "properties": ["bodyValues"],
        "fetchAllBodyValues": True,
    }
    calls = [["Email/get", get, f"g{n}"] for n in range(20)]
    assert len(body) * len(calls) * 4 // 3 > MAX_RESPONSE
    status, _, data = raw.http(
        "POST",
        "/jmap/api",
        json.dumps({"using": [CORE, MAIL], "methodCalls": calls}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200 and len(data) <= HTTP_RESPONSE_LIMIT
    answers = json.loads(data)["methodResponses"]
    assert [a[2] for a in answers] == [c[2] for c in calls]
    errors = [a for a in answers if a[0] == "error"]
    kept = [a for a in answers if a[0] == "Email/get"]
    assert errors and kept and len(errors) + len(kept) == len(calls)
    assert {e[1]["type"] for e in errors} == {"requestTooLarge"}
    assert all(body in next(iter(a[1]["list"][0]["bodyValues"].values()))["value"] for a in kept)


def test_fitting_replaces_the_largest_calls_first_and_says_a_set_was_made() -> None:
    response = {
        "sessionState": "s",
        "methodResponses": [
            ["Email/set", {"created": {"k": {"id": "E1"}}, "pad": "x" * 600}, "s"],
            ["Mailbox/get", {"list": [], "pad": "y" * 300}, "m"],
            ["Core/echo", {}, "e"],
        ],
    }
    assert fitted_json(response, 2000, "WebSocket", "someone") == json.dumps(response, separators=(",", ":"))
    fitted = json.loads(fitted_json(response, 900, "WebSocket", "someone"))
    assert len(fitted_json(response, 900, "WebSocket", "someone")) <= 900
    (set_error, kept_get, kept_echo) = fitted["methodResponses"]
    assert set_error[0] == "error" and set_error[1]["type"] == "serverFail" and set_error[2] == "s"
    assert "the call was made" in set_error[1]["description"]
    assert kept_get == response["methodResponses"][1] and kept_echo == ["Core/echo", {}, "e"]
    assert fitted["sessionState"] == "s"
    fitted = json.loads(fitted_json(response, 500, "HTTP", "someone"))
    assert [call[0] for call in fitted["methodResponses"]] == ["error", "error", "Core/echo"]
    assert fitted["methodResponses"][1][1]["type"] == "requestTooLarge"
